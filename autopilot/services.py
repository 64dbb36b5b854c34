"""Writes for projects, membership and autonomy settings. Every door calls these."""

from __future__ import annotations

import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from autopilot.errors import ApplicationError, NotFound, PermissionDenied
from autopilot.events import record_event
from autopilot.models import AutonomyMode, Project, ProjectMembership, Role
from autopilot.permissions import (
    may_register_anywhere,
    may_share_repository,
    require_change,
    require_delete,
    require_register,
)
from autopilot.seams import backend_names, project_changed

AUTONOMY_FIELDS = (
    "autonomy_mode",
    "paused",
    "active_phase",
    "max_parallel_runs",
    "default_run_budget_usd",
    "daily_budget_usd",
    "max_attempts",
    "auto_complete_on_tests",
    "plan_order_policy",
    "model_matrix",
    "context_budget_tokens",
)
KNOWN_ROLES = ("manager", "code", "test", "docs")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)


def validate_repository(repo_path: str, base_branch: str, subdirectory: str = "") -> Path:
    """A project's repository must be a local git repository with the base branch."""
    path = Path(repo_path).expanduser()
    if not path.is_absolute():
        raise ApplicationError(f"repo_path must be an absolute path, got '{repo_path}'.")
    path = path.resolve()
    if not path.is_dir():
        raise ApplicationError(f"repo_path '{path}' does not exist or is not a directory.")
    top = _git(path, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ApplicationError(f"repo_path '{path}' is not a git repository.")
    if _git(path, "rev-parse", "--verify", "--quiet", f"refs/heads/{base_branch}").returncode != 0:
        raise ApplicationError(f"The repository at '{path}' has no branch '{base_branch}'.")
    if subdirectory:
        sub = (path / subdirectory).resolve()
        if not sub.is_relative_to(path) or not sub.is_dir():
            raise ApplicationError(f"subdirectory '{subdirectory}' is not a directory inside '{path}'.")
    return path


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _server_directories() -> list[tuple[str, Path]]:
    """Directories no project may live in: the server's own data, every run's worktree."""
    dirs = [
        ("the data directory", Path(settings.DATA_DIR)),
        ("the worktree root", Path(settings.AUTOPILOT_WORKTREE_ROOT)),
        ("the artifact root", Path(settings.AUTOPILOT_ARTIFACT_ROOT)),
    ]
    return [(label, path.expanduser().resolve()) for label, path in dirs]


def check_repository(
    *,
    actor,
    repo_path: str,
    base_branch: str,
    subdirectory: str = "",
    project: Project | None = None,
    allow_shared_repo: bool = False,
) -> Path:
    """Where a repository may be registered (DESIGN.md §4, trust model). Returns the resolved path.

    - Under one of AUTOPILOT_REPO_ROOTS, unless `actor` is a superuser or the server itself (None).
    - Never inside the data directory, the worktree root or the artifact root (symlinks followed) for a
      user; the server's own account (None) may keep one it made there (the demo).
    - The top level of a git repository with `base_branch` (a monorepo part is `subdirectory`).
    - Never a git worktree of another project's repository (every run's worktree is one).
    - One project per repository, unless `allow_shared_repo`, which only staff may pass.
    Location rules are checked before the path is looked at, so nobody probes the disk through them.
    """
    if allow_shared_repo and not may_share_repository(actor):
        raise PermissionDenied("Only staff may put two projects on one repository (allow_shared_repo).")
    text = str(repo_path or "")
    raw = Path(text).expanduser()
    if not raw.is_absolute():
        raise ApplicationError(f"repo_path must be an absolute path, got '{text}'.")
    path = raw.resolve()
    work_dir = (path / subdirectory.strip("/")).resolve() if subdirectory else path
    if not may_register_anywhere(actor):
        roots = list(settings.AUTOPILOT_REPO_ROOTS)
        if not roots:
            raise PermissionDenied(
                "No repository roots are configured (AUTOPILOT_REPO_ROOTS): only a superuser may register "
                "a repository."
            )
        if not any(_inside(path, root) and _inside(work_dir, root) for root in roots):
            raise PermissionDenied(
                f"repo_path '{text}' is not under a repository root; allowed roots: "
                f"{', '.join(str(root) for root in roots)} (AUTOPILOT_REPO_ROOTS)."
            )
    # The server's own account (actor None: the demo, a local shell) may keep a repository it made in its
    # data directory; no user may point the server at its own files.
    for label, forbidden in _server_directories() if actor is not None else ():
        if _inside(path, forbidden) or _inside(work_dir, forbidden):
            raise ApplicationError(f"repo_path '{text}' is inside {label}; a project cannot live there.")
    path = validate_repository(str(path), base_branch, subdirectory)
    top = Path(_git(path, "rev-parse", "--show-toplevel").stdout.strip()).resolve()
    if top != path:
        raise ApplicationError(
            f"repo_path '{path}' is inside the repository '{top}': register '{top}' and set subdirectory."
        )
    common = _git(path, "rev-parse", "--path-format=absolute", "--git-common-dir").stdout.strip()
    common_dir = Path(common).resolve() if common else path / ".git"
    others = Project.objects.exclude(pk=getattr(project, "pk", None)).values_list("repo_path", flat=True)
    for other in others:
        other_path = Path(other).expanduser().resolve()
        if common_dir != path / ".git" and common_dir == (other_path / ".git").resolve():
            raise ApplicationError(f"repo_path '{path}' is a git worktree of another project's repository.")
        if other_path == path and not allow_shared_repo:
            raise ApplicationError(
                f"Another project already uses the repository at '{path}' (staff may allow sharing it)."
            )
    return path


def _validate_model_matrix(matrix: Any) -> dict:
    if not isinstance(matrix, dict):
        raise ApplicationError("model_matrix must be an object mapping a role to {agent, model}.")
    for role, entry in matrix.items():
        if role not in KNOWN_ROLES:
            raise ApplicationError(
                f"model_matrix: unknown role '{role}'; roles are {', '.join(KNOWN_ROLES)}."
            )
        if not isinstance(entry, dict) or set(entry) - {"agent", "model"}:
            raise ApplicationError(f"model_matrix['{role}'] must be an object with 'agent' and/or 'model'.")
        agent = entry.get("agent")
        known = backend_names()
        if agent and agent not in known:
            raise ApplicationError(
                f"model_matrix['{role}']: unknown agent backend '{agent}'; choose from {', '.join(known)}."
            )
    return matrix


def _apply_changes(obj, changes: dict[str, Any]) -> dict[str, Any]:
    """Set each changed attribute on `obj`; returns {field: old value} for what really changed."""
    before = {}
    for key, value in changes.items():
        old = getattr(obj, key)
        if old != value:
            before[key] = old
            setattr(obj, key, value)
    return before


def _full_clean_or_raise(obj) -> None:
    try:
        obj.full_clean()
    except ValidationError as exc:
        parts = []
        for field, messages in exc.message_dict.items():
            label = "" if field == "__all__" else f"{field}: "
            parts.append(label + " ".join(messages))
        raise ApplicationError("; ".join(parts), extra={"fields": exc.message_dict}) from exc


@transaction.atomic
def project_create(
    *,
    name: str,
    repo_path: str,
    base_branch: str = "main",
    subdirectory: str = "",
    description: str = "",
    test_command: str = "",
    setup_script: str = "",
    command_allowlist: list[str] | None = None,
    owner=None,
    actor=None,
    allow_shared_repo: bool = False,
    **settings_fields: Any,
) -> Project:
    """Register a repository as a project. `actor` (None: the server itself) needs site trust
    (autopilot.permissions.require_register); `owner` (default: the actor) becomes its owner."""
    require_register(actor)
    if owner is None:
        owner = actor
    if not name or not name.strip():
        raise ApplicationError("A project needs a name.")
    repo = check_repository(
        actor=actor,
        repo_path=repo_path,
        base_branch=base_branch,
        subdirectory=subdirectory,
        allow_shared_repo=allow_shared_repo,
    )
    unknown = set(settings_fields) - set(AUTONOMY_FIELDS) - {"allow_shell", "setup_network"}
    if unknown:
        raise ApplicationError(f"Unknown project field(s): {', '.join(sorted(unknown))}.")
    if "model_matrix" in settings_fields:
        _validate_model_matrix(settings_fields["model_matrix"])
    project = Project(
        name=name.strip(),
        slug=slugify(name)[:200] or "project",
        repo_path=str(repo),
        base_branch=base_branch,
        subdirectory=subdirectory.strip("/"),
        description=description,
        test_command=test_command,
        setup_script=setup_script,
        command_allowlist=list(command_allowlist or []),
        created_by=owner if getattr(owner, "is_authenticated", False) else None,
        **settings_fields,
    )
    _full_clean_or_raise(project)
    try:
        with transaction.atomic():
            project.save()
    except IntegrityError as exc:
        raise ApplicationError(f"A project named '{project.name}' already exists.") from exc
    if owner is not None and getattr(owner, "is_authenticated", False):
        ProjectMembership.objects.create(project=project, user=owner, role=Role.OWNER)
    record_event(kind="project.created", subject=project, actor=actor or owner, data={"name": project.name})
    return project


@transaction.atomic
def project_update_autonomy(*, project: Project, actor=None, **changes: Any) -> Project:
    """Change autonomy settings under a row lock; every change is an Event naming who made it."""
    unknown = set(changes) - set(AUTONOMY_FIELDS)
    if unknown:
        raise ApplicationError(f"Not an autonomy setting: {', '.join(sorted(unknown))}.")
    locked = Project.objects.select_for_update().get(pk=project.pk)
    for key in ("default_run_budget_usd", "daily_budget_usd"):
        if changes.get(key) is not None:
            changes[key] = _decimal(key, changes[key])
    require_change(actor, locked, [key for key, value in changes.items() if getattr(locked, key) != value])
    if "autonomy_mode" in changes and changes["autonomy_mode"] not in AutonomyMode.values:
        raise ApplicationError(
            f"Unknown autonomy mode '{changes['autonomy_mode']}'; "
            f"choose from {', '.join(AutonomyMode.values)}."
        )
    if "model_matrix" in changes:
        _validate_model_matrix(changes["model_matrix"])
    if "active_phase" in changes and changes["active_phase"] is not None:
        phase = changes["active_phase"]
        if phase.project_id != locked.pk:
            raise ApplicationError("The active phase must be a plan node of this project.")
    before = _apply_changes(locked, changes)
    if not before:
        return locked
    _full_clean_or_raise(locked)
    locked.save()

    def show(value):
        return getattr(value, "pk", value) if not isinstance(value, Decimal) else str(value)

    record_event(
        kind="project.autonomy",
        subject=locked,
        actor=actor,
        data={"changes": {k: {"from": show(before[k]), "to": show(getattr(locked, k))} for k in before}},
    )
    _after_autonomy_change(locked)
    return locked


def _decimal(key: str, value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise ApplicationError(f"{key} must be an amount in USD, got '{value}'.") from None


def _after_autonomy_change(project: Project) -> None:
    """A mode change can unblock work: the manager (listening on `project_changed`) asks for a tick."""
    project_changed.send_on_commit(project.pk, "autonomy changed")


@transaction.atomic
def membership_set(*, project: Project, user, role: str, actor=None) -> ProjectMembership:
    if role not in Role.values:
        raise ApplicationError(f"Unknown role '{role}'; choose from {', '.join(Role.values)}.")
    Project.objects.select_for_update().filter(pk=project.pk).first()  # serialize membership changes
    require_change(actor, project, ["members"])
    current = (
        ProjectMembership.objects.filter(project=project, user=user).values_list("role", flat=True).first()
    )
    if current == Role.OWNER and role != Role.OWNER and _owner_count(project) <= 1:
        raise ApplicationError(
            f"'{user.get_username()}' is the last owner of project '{project.name}'; add another owner first."
        )
    membership, _ = ProjectMembership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    record_event(
        kind="project.membership", subject=project, actor=actor, data={"user": user.pk, "role": role}
    )
    return membership


def project_get(identifier: str | int) -> Project:
    """Find a project by id, slug or name (CLI and MCP take any of them)."""
    text = str(identifier)
    query = Project.objects.all()
    project = None
    if text.isdigit():
        project = query.filter(pk=int(text)).first()
    project = project or query.filter(slug=text).first() or query.filter(name=text).first()
    if project is None:
        raise NotFound(f"No project '{identifier}' (give its id, slug or name).")
    return project


# --- Basic project fields, deletion, membership removal --------------------------------------------

BASIC_FIELDS = (
    "name",
    "description",
    "repo_path",
    "subdirectory",
    "base_branch",
    "test_command",
    "setup_script",
    "command_allowlist",
    "allow_shell",
    "setup_network",
)


def _show(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return getattr(value, "pk", value)


@transaction.atomic
def project_update(
    *, project: Project, actor=None, allow_shared_repo: bool = False, **changes: Any
) -> Project:
    """Change a project's basic (non-autonomy) fields under a row lock; records `project.updated`.
    Who may change which field: autopilot.permissions.FIELD_ROLES (checked before any validation)."""
    unknown = set(changes) - set(BASIC_FIELDS)
    if unknown:
        hint = (
            " (use project_update_autonomy for autonomy settings)" if unknown & set(AUTONOMY_FIELDS) else ""
        )
        raise ApplicationError(f"Not a basic project field: {', '.join(sorted(unknown))}{hint}.")
    locked = Project.objects.select_for_update().get(pk=project.pk)
    require_change(actor, locked, [key for key, value in changes.items() if getattr(locked, key) != value])
    if "name" in changes:
        changes["name"] = (changes["name"] or "").strip()
        if not changes["name"]:
            raise ApplicationError("A project needs a name.")
    if "command_allowlist" in changes:
        allow = changes["command_allowlist"]
        if not isinstance(allow, list) or not all(isinstance(item, str) and item for item in allow):
            raise ApplicationError("command_allowlist must be a list of program names.")
    if "subdirectory" in changes:
        changes["subdirectory"] = (changes["subdirectory"] or "").strip("/")
    if any(key in changes and changes[key] != getattr(locked, key) for key in ("repo_path", "subdirectory")):
        repo = check_repository(
            actor=actor,
            repo_path=changes.get("repo_path", locked.repo_path),
            base_branch=changes.get("base_branch", locked.base_branch),
            subdirectory=changes.get("subdirectory", locked.subdirectory),
            project=locked,
            allow_shared_repo=allow_shared_repo,
        )
        if "repo_path" in changes:
            changes["repo_path"] = str(repo)
    elif "base_branch" in changes:
        validate_repository(locked.repo_path, changes["base_branch"], locked.subdirectory)
    before = _apply_changes(locked, changes)
    if not before:
        return locked
    _full_clean_or_raise(locked)
    try:
        with transaction.atomic():
            locked.save()
    except IntegrityError as exc:
        raise ApplicationError(f"A project named '{locked.name}' already exists.") from exc
    record_event(
        kind="project.updated",
        subject=locked,
        actor=actor,
        data={"changes": {k: {"from": _show(before[k]), "to": _show(getattr(locked, k))} for k in before}},
    )
    return locked


@transaction.atomic
def project_delete(*, project: Project, actor=None) -> None:
    """Delete a project and everything under it. The deletion itself stays in the log (no project)."""
    locked = Project.objects.select_for_update().get(pk=project.pk)
    require_delete(actor, locked)
    data = {"id": locked.pk, "name": locked.name, "slug": locked.slug}
    locked.delete()
    record_event(kind="project.deleted", project=None, actor=actor, data=data)


def _owner_count(project: Project) -> int:
    return ProjectMembership.objects.filter(project=project, role=Role.OWNER).count()


@transaction.atomic
def membership_remove(*, project: Project, user, actor=None) -> None:
    """Remove a member. A project keeps at least one owner."""
    Project.objects.select_for_update().filter(pk=project.pk).first()  # serialize membership changes
    require_change(actor, project, ["members"])
    membership = ProjectMembership.objects.filter(project=project, user=user).first()
    if membership is None:
        raise NotFound(f"User '{user.get_username()}' is not a member of project '{project.name}'.")
    if membership.role == Role.OWNER and _owner_count(project) <= 1:
        raise ApplicationError(
            f"'{user.get_username()}' is the last owner of project '{project.name}'; add another owner first."
        )
    membership.delete()
    record_event(
        kind="project.membership", subject=project, actor=actor, data={"user": user.pk, "role": None}
    )


# --- Users and API tokens -------------------------------------------------------------------------


@transaction.atomic
def user_create(
    *, username: str, password: str | None = None, superuser: bool = False, email: str = "", actor=None
):
    """Create a Django user; a superuser is also staff (admin access)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.password_validation import validate_password

    User = get_user_model()
    username = (username or "").strip()
    if not username:
        raise ApplicationError("A user needs a name.")
    if User.objects.filter(username=username).exists():
        raise ApplicationError(f"A user named '{username}' already exists.")
    user = User(username=username, email=email, is_staff=superuser, is_superuser=superuser)
    if password:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise ApplicationError("Password refused: " + " ".join(exc.messages)) from exc
        user.set_password(password)
    else:
        user.set_unusable_password()
    _full_clean_or_raise(user)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        raise ApplicationError(f"A user named '{username}' already exists.") from exc
    record_event(
        kind="user.created", actor=actor, data={"user": user.pk, "username": username, "superuser": superuser}
    )
    return user


@transaction.atomic
def user_token(*, user, rotate: bool = False) -> str:
    """The user's DRF API token (created on first use; `rotate` replaces it)."""
    from rest_framework.authtoken.models import Token

    if rotate:
        Token.objects.filter(user=user).delete()
    token, _ = Token.objects.get_or_create(user=user)
    return token.key
