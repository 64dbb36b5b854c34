"""One permission helper for every door: web views, API, CLI, MCP.

Roles rank viewer < operator < owner. Superusers act as owners everywhere. A user without a
membership sees nothing of a project (a 404, not a 403, so project names don't leak).

Trust model (DESIGN.md §4). Whoever can make the server execute something holds a privilege:
- "site trust" is a site-level right, not a project role: superusers, staff, and users granted the
  `autopilot.register_repository` permission (in the admin) have it. Registering a repository
  (creating a project) needs it, and so does changing anything that executes or decides where work
  happens (FIELD_ROLES values TRUSTED): such a change needs the owner role AND site trust.
- Who may change which project field is the data in FIELD_ROLES; `require_change` enforces it and
  is called by the project services, so every door (API, pages, CLI, admin) gets the same rules.
- `actor=None` is the server's own account (internal jobs, the CLI on a fresh install with no
  users): it may do everything. A user acting anywhere — `--user X` on the CLI included — gets
  exactly that user's rights.
"""

from __future__ import annotations

from django.db.models import QuerySet

from autopilot.errors import ApplicationError, NotFound, PermissionDenied
from autopilot.models import ROLE_RANK, Project, ProjectMembership, Role

TRUSTED = "trusted"  # pseudo-role: owner of the project + site trust
REGISTER_PERMISSION = "autopilot.register_repository"

# Who may change which project field (the minimum role). Viewers change nothing.
FIELD_ROLES: dict[str, str] = {
    # Steering the autopilot day to day.
    "paused": Role.OPERATOR,
    "active_phase": Role.OPERATOR,
    # The project's settings, spending and membership.
    "name": Role.OWNER,
    "description": Role.OWNER,
    "base_branch": Role.OWNER,
    "autonomy_mode": Role.OWNER,
    "max_parallel_runs": Role.OWNER,
    "default_run_budget_usd": Role.OWNER,
    "daily_budget_usd": Role.OWNER,
    "max_attempts": Role.OWNER,
    "auto_complete_on_tests": Role.OWNER,
    "plan_order_policy": Role.OWNER,
    "model_matrix": Role.OWNER,
    "context_budget_tokens": Role.OWNER,
    "members": Role.OWNER,
    "integration_branch": Role.OWNER,
    "merge_strategy": Role.OWNER,
    "review_required": Role.OWNER,
    "conflict_policy": Role.OWNER,
    "push_task_branches": Role.OWNER,
    # What executes on the server, and where: owner + site trust.
    "repo_path": TRUSTED,
    "subdirectory": TRUSTED,
    "setup_script": TRUSTED,
    "test_command": TRUSTED,
    "command_allowlist": TRUSTED,
    "allow_shell": TRUSTED,
    "setup_network": TRUSTED,
    "integration_test_command": TRUSTED,
    "integration_remote": TRUSTED,
}
# Whole-project actions: creating one needs site trust (checked by `require_register`); deleting one
# needs the owner role.
DELETE_ROLE = Role.OWNER
NEEDS_TEXT = {
    Role.VIEWER: "the viewer role",
    Role.OPERATOR: "the operator role",
    Role.OWNER: "the owner role",
    TRUSTED: "the owner role and the right to register repositories (staff, superuser or the "
    f"'{REGISTER_PERMISSION}' permission)",
}


def _active(user) -> bool:
    return user is not None and user.is_authenticated and user.is_active


def has_site_trust(user) -> bool:
    """May `user` register repositories and change what executes? (`None` is the server itself.)"""
    if user is None:
        return True
    if not _active(user):
        return False
    return user.is_superuser or user.is_staff or user.has_perm(REGISTER_PERMISSION)


def may_share_repository(user) -> bool:
    """Only staff (or the server itself) may put two projects on one repository."""
    return user is None or (_active(user) and (user.is_superuser or user.is_staff))


def may_register_anywhere(user) -> bool:
    """Superusers (and the server itself) are not confined to AUTOPILOT_REPO_ROOTS."""
    return user is None or (_active(user) and user.is_superuser)


def require_register(user) -> None:
    if not has_site_trust(user):
        raise PermissionDenied(
            "Registering a repository needs the right to register repositories (staff, superuser or the "
            f"'{REGISTER_PERMISSION}' permission).",
            extra={"needs": "site_trust"},
        )


def field_role(field: str) -> str:
    try:
        return FIELD_ROLES[field]
    except KeyError:
        raise ApplicationError(f"Unknown project field '{field}'.") from None


def _meets(user, role: str | None, needed: str) -> bool:
    if role is None:
        return False
    if needed == TRUSTED:
        return role == Role.OWNER and has_site_trust(user)
    return ROLE_RANK[Role(role)] >= ROLE_RANK[Role(needed)]


def refused_fields(user, project: Project, fields) -> dict[str, str]:
    """{field: role needed} for each of `fields` that `user` may not change on `project`."""
    if user is None:
        return {}
    role = role_of(user, project)
    needs = {field: field_role(field) for field in fields}
    return {field: needed for field, needed in needs.items() if not _meets(user, role, needed)}


def can_change(user, project: Project, fields) -> bool:
    return not refused_fields(user, project, fields)


def require_change(user, project: Project, fields) -> None:
    """NotFound if `user` cannot see `project`; PermissionDenied naming the first refused field and the
    role it needs. `user=None` is the server itself."""
    refused = refused_fields(user, project, sorted(fields))
    if not refused:
        return
    role = role_of(user, project)
    if role is None:
        raise NotFound(f"Project '{project.pk}' was not found.")
    field, needed = next(iter(refused.items()))
    if role == Role.OWNER and needed == TRUSTED:
        role = "an owner without that right"
    others = f" (also refused: {', '.join(list(refused)[1:])})" if len(refused) > 1 else ""
    raise PermissionDenied(
        f"Changing {field} on project '{project.name}' needs {NEEDS_TEXT[needed]}; you are {role}.{others}",
        extra={"refused": {name: str(needed) for name, needed in refused.items()}},
    )


def require_delete(user, project: Project) -> None:
    if user is not None:
        require_role(user, project, DELETE_ROLE)


def role_of(user, project: Project) -> str | None:
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return Role.OWNER
    membership = getattr(project, "_membership_cache", {}).get(user.pk)
    if membership is None:
        membership = (
            ProjectMembership.objects.filter(project=project, user=user)
            .values_list("role", flat=True)
            .first()
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
        raise PermissionDenied(f"This needs the {minimum} role on project '{project.name}'; you are {role}.")


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


def header_controls(user, project: Project) -> dict[str, bool]:
    """Which autopilot controls a page shows `user` (the services enforce the same FIELD_ROLES)."""
    return {
        "can_operate": has_role(user, project, Role.OPERATOR),
        "can_pause": can_change(user, project, ["paused"]),
        "can_set_mode": can_change(user, project, ["autonomy_mode", "max_parallel_runs"]),
    }
