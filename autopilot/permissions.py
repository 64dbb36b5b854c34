"""One permission helper for every door: web views, API, CLI, MCP.

Roles rank viewer < operator < owner. Superusers act as owners everywhere. A user without a
membership sees nothing of a project (a 404, not a 403, so project names don't leak).
"""

from __future__ import annotations

from django.db.models import QuerySet

from autopilot.errors import NotFound, PermissionDenied
from autopilot.models import ROLE_RANK, Project, ProjectMembership, Role


def role_of(user, project: Project) -> str | None:
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return Role.OWNER
    membership = getattr(project, "_membership_cache", {}).get(user.pk)
    if membership is None:
        membership = (
            ProjectMembership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
        )
    return membership


def has_role(user, project: Project, minimum: str = Role.VIEWER) -> bool:
    role = role_of(user, project)
    return role is not None and ROLE_RANK[Role(role)] >= ROLE_RANK[Role(minimum)]


def require_role(user, project: Project, minimum: str = Role.VIEWER) -> None:
    role = role_of(user, project)
    if role is None:
        raise NotFound(f"Project '{project.pk}' was not found.")
    if ROLE_RANK[Role(role)] < ROLE_RANK[Role(minimum)]:
        raise PermissionDenied(
            f"This needs the {minimum} role on project '{project.name}'; you are {role}."
        )


def visible_projects(user) -> QuerySet[Project]:
    if user is None or not user.is_authenticated or not user.is_active:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def project_for(user, project_id, minimum: str = Role.VIEWER) -> Project:
    """The project `project_id` if `user` has at least `minimum` on it: NotFound for a project the
    user cannot see (or that doesn't exist), PermissionDenied for a role too low."""
    project = visible_projects(user).filter(pk=project_id).first()
    if project is None:
        raise NotFound(f"Project '{project_id}' was not found.")
    require_role(user, project, minimum)
    return project
