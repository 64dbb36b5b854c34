"""Web-page flavour of the permission helper: domain errors become Django's 404 / 403 responses."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404

from autopilot.errors import NotFound, PermissionDenied
from autopilot.models import Project, Role
from autopilot.permissions import project_for, require_role


def require_role_or_404(user, project: Project, minimum: str = Role.VIEWER) -> None:
    try:
        require_role(user, project, minimum)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.message) from exc


def project_or_404(request, pk: int, minimum: str = Role.VIEWER) -> Project:
    try:
        return project_for(request.user, pk, minimum)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except PermissionDenied as exc:
        raise DjangoPermissionDenied(exc.message) from exc
