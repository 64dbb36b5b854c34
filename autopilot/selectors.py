"""Reads for the core app: projects a user can see (with their role), members, the event log."""

from __future__ import annotations

from django.db.models import CharField, OuterRef, QuerySet, Subquery, Value

from autopilot.errors import NotFound
from autopilot.models import Event, Project, ProjectMembership, Role
from autopilot.permissions import visible_projects


def project_list(*, user) -> QuerySet[Project]:
    """Projects `user` can see, each annotated with `my_role` (superusers are owners everywhere)."""
    queryset = visible_projects(user).select_related("active_phase")
    if getattr(user, "is_superuser", False):
        return queryset.annotate(my_role=Value(Role.OWNER.value, output_field=CharField()))
    role = ProjectMembership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    return queryset.annotate(my_role=Subquery(role, output_field=CharField()))


def project_get_visible(*, user, identifier: int | str) -> Project:
    """A project by id, slug or name that `user` can see; otherwise NotFound (never a hint it exists)."""
    text = str(identifier)
    queryset = project_list(user=user)
    project = queryset.filter(pk=int(text)).first() if text.isdigit() else None
    project = project or queryset.filter(slug=text).first() or queryset.filter(name=text).first()
    if project is None:
        raise NotFound(f"No project '{identifier}' you can see (give its id, slug or name).")
    return project


def membership_list(*, project: Project) -> QuerySet[ProjectMembership]:
    return ProjectMembership.objects.filter(project=project).select_related("user").order_by("user__username")


def event_list(
    *, user, project: Project | None = None, after: int | None = None, kind: str | None = None
) -> QuerySet[Event]:
    """Events of projects `user` can see, oldest first. Project-less events (user and project
    creation/deletion) are for superusers only. `kind` ending in "." matches a prefix ("task.")."""
    queryset = Event.objects.select_related("actor").order_by("id")
    if project is not None:
        queryset = queryset.filter(project=project)
    elif not getattr(user, "is_superuser", False):
        queryset = queryset.filter(project__in=visible_projects(user).values("pk"))
    if after is not None:
        queryset = queryset.filter(id__gt=after)
    if kind:
        queryset = (
            queryset.filter(kind__startswith=kind) if kind.endswith(".") else queryset.filter(kind=kind)
        )
    return queryset
