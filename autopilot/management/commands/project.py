"""`autopilot project create|list|show|autonomy|members …`: register and steer projects.

Every write goes through autopilot.services (events name the acting user: `--user`, else the first
superuser). With `--user`, the same role rules as the web and API apply (autopilot.permissions:
FIELD_ROLES, the right to register repositories); without it, a local shell user is trusted like the
server's own account.
"""

from __future__ import annotations

import argparse
import json
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import Count, Max

from autopilot import selectors, services
from autopilot.api.serializers import MembershipSerializer, ProjectSerializer
from autopilot.cli_support import (
    AutopilotCommand,
    confirm,
    current_branch,
    format_table,
    git_toplevel,
    resolve_project,
)
from autopilot.errors import ApplicationError
from autopilot.local_account import default_project_get, default_project_set
from autopilot.models import AutonomyMode, PlanOrderPolicy, Project, Role
from blueprints.models import Blueprint, PlanNode
from blueprints.selectors import layout_of
from runs.api.brain import SnapshotSerializer
from runs.models import ExecutionRun  # the CLI is a door: it may read the runs app
from runs.snapshot import snapshot_latest, snapshot_refresh


def _usd(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ApplicationError(f"'{text}' is not an amount in USD (e.g. 2.50).") from None
    if value < 0 or not value.is_finite():
        raise ApplicationError(f"A budget cannot be negative, got {text}.")
    return value


class Command(AutopilotCommand):
    help = "Projects: add, list, view, edit, remove, set the default; autonomy settings; members."

    def add_arguments(self, parser):
        actions = "{add,create,list,view,show,edit,remove,set-default,autonomy,members,snapshot}"
        sub = parser.add_subparsers(dest="action", required=True, metavar=actions)

        def add(name: str, help_text: str, aliases: tuple[str, ...] = ()):
            action = self.add_action(sub, name, help_text)
            for alias in aliases:
                self._aliases[alias] = name
            return action

        self._aliases: dict[str, str] = {}
        for name in ("add", "create"):
            create = add(name, "Register a local git repository as a project (default: the current one).")
            create.add_argument("name", nargs="?", help="Project name (default: the repository's directory).")
            create.add_argument(
                "--path",
                "--repo",
                dest="repo",
                metavar="DIR",
                help="The git repository (default: the one holding the current directory).",
            )
            create.add_argument("--base-branch", help="Branch runs start from (default: the current branch).")
            create.add_argument("--subdir", default="", help="Work inside this subdirectory (monorepos).")
            create.add_argument("--test-command", default="")
            create.add_argument("--setup-script", default="", help="Shell script run in every new worktree.")
            create.add_argument(
                "--allow", nargs="+", default=[], metavar="CMD", help="Programs agents may run."
            )
            create.add_argument("--description", default="")
            create.add_argument("--owner", help="Username of the owner (default: the acting user).")
            create.add_argument(
                "--share-repo",
                action="store_true",
                help="Staff only: allow a repository another project already uses.",
            )

        listing = add("list", "Projects you can see: path, session count, last activity (* = default).")
        listing.add_argument("--format", choices=["table", "json"], default="table")

        for name in ("view", "show"):
            show = add(name, "One project: repository, settings, autonomy, members.")
            show.add_argument("project", nargs="?", help="Id, slug or name (default: the current project).")

        edit = add("edit", "Change a project's settings (each change is an event; same rules as the API).")
        edit.add_argument("project", nargs="?", help="Id, slug or name (default: the current project).")
        edit.add_argument("--name")
        edit.add_argument("--description")
        edit.add_argument("--path", "--repo", dest="repo", metavar="DIR", help="Move to another repository.")
        edit.add_argument("--subdir", help="Work inside this subdirectory ('' for the whole repository).")
        edit.add_argument("--base-branch")
        edit.add_argument("--test-command", help="'' for none.")
        edit.add_argument("--setup-script", help="'' for none.")
        allow = edit.add_mutually_exclusive_group()
        allow.add_argument("--allow", nargs="+", metavar="CMD", help="Replace the allowlist with these.")
        allow.add_argument("--no-allow", action="store_true", help="Empty the allowlist.")
        edit.add_argument(
            "--allow-shell",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Let commands run through a shell.",
        )
        edit.add_argument(
            "--setup-network",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Let the setup script reach the network.",
        )
        edit.add_argument("--mode", choices=AutonomyMode.values, help="Autonomy mode.")
        edit.add_argument("--max-parallel", type=int, metavar="N")
        edit.add_argument("--max-attempts", type=int, metavar="N")
        edit.add_argument("--run-budget", metavar="USD", help="Default budget per run.")
        daily = edit.add_mutually_exclusive_group()
        daily.add_argument("--daily-budget", metavar="USD", help="Daily spending cap for the project.")
        daily.add_argument("--no-daily-budget", action="store_true")
        edit.add_argument(
            "--auto-complete-on-tests",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Complete a task when its run's tests pass.",
        )
        edit.add_argument("--plan-order", choices=PlanOrderPolicy.values, help="Plan order policy.")
        edit.add_argument(
            "--model-matrix",
            metavar="JSON",
            help='Agent and model per role, e.g. \'{"code": {"model": "opus"}}\'.',
        )
        context = edit.add_mutually_exclusive_group()
        context.add_argument(
            "--context-budget",
            type=int,
            metavar="TOKENS",
            help="Tokens (≈ characters / 4) of spec context each agent receives (500–2,000,000).",
        )
        context.add_argument(
            "--no-context-budget",
            action="store_true",
            help="Use the default: a share of the model's context window.",
        )

        remove = add("remove", "Unregister a project (its repository's files are kept); asks unless --yes.")
        remove.add_argument("project", help="Id, slug or name.")
        remove.add_argument("--yes", "-y", action="store_true", help="Do not ask for confirmation.")

        default = add("set-default", "Use this project when no --project is given outside any project.")
        default.add_argument("project", help="Id, slug or name; 'none' clears the default.")

        autonomy = add("autonomy", "Show or change autonomy settings (each change is an event).")
        autonomy.add_argument("project", nargs="?", help="Id, slug or name (default: the current project).")
        autonomy.add_argument("--mode", choices=AutonomyMode.values)
        autonomy.add_argument("--max-parallel", type=int, metavar="N")
        pause = autonomy.add_mutually_exclusive_group()
        pause.add_argument("--pause", action="store_true")
        pause.add_argument("--resume", action="store_true")
        phase = autonomy.add_mutually_exclusive_group()
        phase.add_argument(
            "--phase", metavar="ANCHOR", help="Focus on this plan node of the active blueprint."
        )
        phase.add_argument("--no-phase", action="store_true", help="Work on the whole plan.")
        autonomy.add_argument("--run-budget", metavar="USD", help="Default budget per run.")
        daily = autonomy.add_mutually_exclusive_group()
        daily.add_argument("--daily-budget", metavar="USD", help="Daily spending cap for the project.")
        daily.add_argument("--no-daily-budget", action="store_true")

        members = add("members", "List members, add one or change a role (owners), remove one.")
        members.add_argument("project", nargs="?", help="Id, slug or name (default: the current project).")
        change = members.add_mutually_exclusive_group()
        change.add_argument("--add", metavar="USER", help="Add this user (or change their role).")
        change.add_argument("--remove", metavar="USER", help="Remove this user.")
        members.add_argument("--role", choices=Role.values, help="Role for --add (default: viewer).")

        snap = add(
            "snapshot", "Where the project stands: progress per phase, in flight, blocked, spend, ETA."
        )
        snap.add_argument("project", nargs="?", help="Id, slug or name (default: the current project).")
        snap.add_argument("--refresh", action="store_true", help="Compute a new snapshot (operators).")
        snap.add_argument(
            "--narrative", action="store_true", help="Refresh with a summary from the manager-role model."
        )

    # --- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _project(identifier: str | None, actor, *, register: bool = True) -> Project:
        """--project / the positional argument, else the current directory's project (cli_support)."""
        project = resolve_project(identifier, user=actor, register=register)
        if actor is None:
            project.my_role = None
        elif not hasattr(project, "my_role"):
            project = selectors.project_get_visible(user=actor, identifier=str(project.pk))
        return project

    @staticmethod
    def _user(username: str):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise ApplicationError(
                f"No user '{username}' (create one with `autopilot user create {username}`)."
            )
        return user

    def _show_project(self, project: Project) -> None:
        data = ProjectSerializer(project).data
        members = MembershipSerializer(selectors.membership_list(project=project), many=True).data
        data = {**data, "members": members}
        lines = [
            f"#{project.pk} {project.name} ({project.slug})",
            f"  repo:      {project.repo_path}{'/' + project.subdirectory if project.subdirectory else ''} "
            f"@ {project.base_branch}",
            f"  tests:     {project.test_command or '—'}",
            f"  allowlist: {', '.join(project.command_allowlist) or '—'}",
            self._autonomy_text(project),
            "  members:   " + (", ".join(f"{m['username']} ({m['role']})" for m in members) or "—"),
        ]
        self.emit(data, "\n".join(lines))

    @staticmethod
    def _autonomy_text(project: Project) -> str:
        phase = project.active_phase.anchor if project.active_phase_id else "whole plan"
        daily = f"${project.daily_budget_usd:.2f}" if project.daily_budget_usd is not None else "no cap"
        return (
            f"  autonomy:  {project.autonomy_mode}{' (PAUSED)' if project.paused else ''}; phase: {phase}; "
            f"max parallel {project.max_parallel_runs}; "
            f"run budget ${project.default_run_budget_usd:.2f}; daily {daily}"
        )

    # --- actions ---------------------------------------------------------------------------------

    def handle(self, *args, **options):
        actor = self.actor(options)
        action = self._aliases.get(options["action"], options["action"])
        getattr(self, f"do_{action.replace('-', '_')}")(actor, options)

    def do_add(self, actor, options):
        self.do_create(actor, options)

    def do_create(self, actor, options):
        owner = self._user(options["owner"]) if options.get("owner") else actor
        repo = options.get("repo")
        if not repo:
            repo = git_toplevel(Path.cwd())
            if repo is None:
                raise ApplicationError(f"'{Path.cwd()}' is not in a git repository: pass --path DIR.")
        repo = str(Path(repo).expanduser().absolute())
        branch = options.get("base_branch") or current_branch(repo)
        if not branch and not Path(repo).is_dir() or git_toplevel(repo) is None:
            branch = branch or "main"  # the service names the problem (no such directory, not a repository)
        if not branch:
            raise ApplicationError(
                f"Cannot tell the current branch of '{repo}' (not a git repository, or a detached HEAD): "
                "pass --base-branch BRANCH."
            )
        project = services.project_create(
            name=options.get("name") or Path(repo).name,
            repo_path=repo,
            base_branch=branch,
            subdirectory=options["subdir"],
            description=options["description"],
            test_command=options["test_command"],
            setup_script=options["setup_script"],
            command_allowlist=options["allow"],
            owner=owner,
            actor=actor,
            allow_shared_repo=options["share_repo"],
        )
        project = selectors.project_list(user=owner).get(pk=project.pk)
        data = ProjectSerializer(project).data
        self.emit(
            data,
            f"created project #{project.pk} {project.name} ({project.slug}) "
            f"on {project.base_branch}, owner {owner.username}",
        )

    def do_list(self, actor, options):
        projects = selectors.project_list(user=actor) if actor is not None else Project.objects.all()
        projects = list(projects.order_by("name"))
        if actor is None:
            for project in projects:
                project.my_role = None
        stats = {
            row["project"]: row
            for row in ExecutionRun.objects.filter(project__in=[p.pk for p in projects])
            .values("project")
            .annotate(sessions=Count("id"), last=Max("created_at"))
        }
        default = default_project_get(actor)
        data = []
        for project, row in zip(projects, ProjectSerializer(projects, many=True).data, strict=True):
            stat = stats.get(project.pk, {})
            last = max(filter(None, [stat.get("last"), project.last_tick_at, project.updated_at]))
            path = project.repo_path + (f"/{project.subdirectory}" if project.subdirectory else "")
            data.append(
                {
                    **row,
                    "path": path,
                    "sessions": stat.get("sessions", 0),
                    "last_active": last,
                    "default": default is not None and default.pk == project.pk,
                }
            )
        if self.as_json or options.get("format") == "json":
            self.as_json = True
            self.emit(data)
            return
        if not data:
            self.emit(
                data,
                "no projects (add one with `autopilot project add NAME --path DIR`, "
                "or run a command inside a git repository)",
            )
            return
        rows = [
            [
                row["id"],
                ("* " if row["default"] else "") + row["name"],
                row["path"],
                row["sessions"],
                row["last_active"].strftime("%Y-%m-%d %H:%M"),
                row["autonomy_mode"] + (" (paused)" if row["paused"] else ""),
            ]
            for row in data
        ]
        self.emit(data, format_table(rows, ["ID", "NAME", "PATH", "SESSIONS", "LAST ACTIVE", "MODE"]))

    def do_show(self, actor, options):
        self._show_project(self._project(options["project"], actor))

    def do_view(self, actor, options):
        self.do_show(actor, options)

    def do_snapshot(self, actor, options):
        project = self._project(options["project"], actor)
        if options["refresh"] or options["narrative"]:
            stored = snapshot_refresh(project, actor=actor, narrative=options["narrative"])
        else:
            stored = snapshot_latest(project)
        data = SnapshotSerializer(stored).data
        lines = [
            f"Snapshot #{stored.pk} of {project.name}, {stored.created_at:%Y-%m-%d %H:%M %Z}",
            data["text"],
        ]
        projection = stored.data["projection"]
        if projection.get("assumptions") and projection["status"] == "projected":
            lines.append("  assumptions: " + "; ".join(projection["assumptions"]))
        if stored.narrative:
            lines += ["", f"Narrative ({stored.narrative_model}):", stored.narrative]
        elif stored.narrative_error:
            lines += ["", f"No narrative: {stored.narrative_error}"]
        self.emit(data, "\n".join(lines))

    def do_edit(self, actor, options):
        project = self._project(options["project"], actor)
        basic: dict = {}
        for option, field in (
            ("name", "name"),
            ("description", "description"),
            ("repo", "repo_path"),
            ("subdir", "subdirectory"),
            ("base_branch", "base_branch"),
            ("test_command", "test_command"),
            ("setup_script", "setup_script"),
            ("allow_shell", "allow_shell"),
            ("setup_network", "setup_network"),
        ):
            if options.get(option) is not None:
                basic[field] = options[option]
        if "repo_path" in basic:
            basic["repo_path"] = str(Path(basic["repo_path"]).expanduser().absolute())
        if options.get("allow") is not None:
            basic["command_allowlist"] = list(options["allow"])
        if options.get("no_allow"):
            basic["command_allowlist"] = []
        autonomy: dict = {}
        if options.get("mode"):
            autonomy["autonomy_mode"] = options["mode"]
        for option, field in (("max_parallel", "max_parallel_runs"), ("max_attempts", "max_attempts")):
            if options.get(option) is not None:
                if options[option] < 1:
                    raise ApplicationError(f"--{option.replace('_', '-')} must be at least 1.")
                autonomy[field] = options[option]
        if options.get("run_budget") is not None:
            autonomy["default_run_budget_usd"] = _usd(options["run_budget"])
        if options.get("daily_budget") is not None:
            autonomy["daily_budget_usd"] = _usd(options["daily_budget"])
        if options.get("no_daily_budget"):
            autonomy["daily_budget_usd"] = None
        if options.get("auto_complete_on_tests") is not None:
            autonomy["auto_complete_on_tests"] = options["auto_complete_on_tests"]
        if options.get("plan_order"):
            autonomy["plan_order_policy"] = options["plan_order"]
        if options.get("model_matrix") is not None:
            try:
                autonomy["model_matrix"] = json.loads(options["model_matrix"])
            except ValueError:
                raise ApplicationError("--model-matrix is not valid JSON.") from None
        if options.get("context_budget") is not None:
            autonomy["context_budget_tokens"] = options["context_budget"]
        if options.get("no_context_budget"):
            autonomy["context_budget_tokens"] = None
        if not basic and not autonomy:
            raise ApplicationError(
                "Nothing to change: give at least one option (see `autopilot project edit --help`)."
            )
        with transaction.atomic():  # all or nothing: a refused autonomy change undoes the basic ones
            if basic:
                services.project_update(project=project, actor=actor, **basic)
            if autonomy:
                services.project_update_autonomy(project=project, actor=actor, **autonomy)
        changed = sorted([*basic, *autonomy])
        if not self.as_json:
            self.stdout.write(f"updated {', '.join(changed)}")
        self._show_project(self._project(str(project.pk), actor))

    def do_remove(self, actor, options):
        project = self._project(options["project"], actor, register=False)
        active = ExecutionRun.objects.filter(project=project, status__in=ExecutionRun.ACTIVE).count()
        if active:
            raise ApplicationError(
                f"Project '{project.name}' has {active} active run(s): stop them first (`autopilot status`)."
            )
        question = (
            f"Unregister project '{project.name}' (its runs and tasks go; "
            f"the files in {project.repo_path} stay)?"
        )
        if not confirm(question, assume_yes=options["yes"]):
            raise CommandError("Not removed.", returncode=1)
        data = {"id": project.pk, "name": project.name, "repo_path": project.repo_path, "removed": True}
        services.project_delete(project=project, actor=actor)
        self.emit(data, f"removed project {project.name}; the files in {project.repo_path} are untouched")

    def do_set_default(self, actor, options):
        if options["project"].strip().lower() == "none":
            default_project_set(user=actor, project=None)
            self.emit({"default": None}, "no default project")
            return
        project = self._project(options["project"], actor, register=False)
        default_project_set(user=actor, project=project)
        self.emit({"default": project.pk, "name": project.name}, f"default project: {project.name}")

    def do_autonomy(self, actor, options):
        project = self._project(options["project"], actor)
        changes: dict = {}
        if options.get("mode"):
            changes["autonomy_mode"] = options["mode"]
        if options.get("max_parallel") is not None:
            if options["max_parallel"] < 1:
                raise ApplicationError("--max-parallel must be at least 1.")
            changes["max_parallel_runs"] = options["max_parallel"]
        if options.get("pause"):
            changes["paused"] = True
        if options.get("resume"):
            changes["paused"] = False
        if options.get("phase"):
            changes["active_phase"] = self._phase(project, options["phase"])
        if options.get("no_phase"):
            changes["active_phase"] = None
        if options.get("run_budget") is not None:
            changes["default_run_budget_usd"] = _usd(options["run_budget"])
        if options.get("daily_budget") is not None:
            changes["daily_budget_usd"] = _usd(options["daily_budget"])
        if options.get("no_daily_budget"):
            changes["daily_budget_usd"] = None
        if changes:  # who may change what: autopilot.permissions.FIELD_ROLES, checked by the service
            services.project_update_autonomy(project=project, actor=actor, **changes)
            project = self._project(str(project.pk), actor)
        data = {
            key: ProjectSerializer(project).data[key]
            for key in (
                "id",
                "name",
                "autonomy_mode",
                "paused",
                "active_phase",
                "max_parallel_runs",
                "default_run_budget_usd",
                "daily_budget_usd",
                "max_attempts",
                "plan_order_policy",
                "model_matrix",
            )
        }
        data["changed"] = sorted(changes)
        prefix = f"updated {', '.join(sorted(changes))}\n" if changes else ""
        self.emit(data, f"{prefix}#{project.pk} {project.name}\n{self._autonomy_text(project)}")

    @staticmethod
    def _phase(project: Project, anchor: str):
        blueprint = Blueprint.objects.filter(project=project, status=Blueprint.Status.ACTIVE).first()
        if blueprint is None:
            raise ApplicationError(
                f"Project '{project.name}' has no active blueprint, so no phase to focus on."
            )
        node = PlanNode.objects.filter(project=project, anchor=anchor, archived_at__isnull=True).first()
        if node is None:
            layout = layout_of(blueprint)
            top = (
                [a for a, p in zip(layout.anchors, layout.parents, strict=True) if p < 0][:10]
                if layout
                else []
            )
            raise ApplicationError(
                f"No plan node with anchor '{anchor}' in blueprint v{blueprint.version} of '{project.name}'. "
                f"Top-level anchors: {', '.join(top) or 'none'}."
            )
        return node

    def do_members(self, actor, options):
        project = self._project(options["project"], actor)
        if options.get("role") and not options.get("add"):
            raise CommandError("--role goes with --add USER.", returncode=2)
        if options.get("add"):  # owners only: checked by the service
            services.membership_set(
                project=project,
                user=self._user(options["add"]),
                role=options.get("role") or Role.VIEWER,
                actor=actor,
            )
        if options.get("remove"):
            services.membership_remove(project=project, user=self._user(options["remove"]), actor=actor)
        members = MembershipSerializer(selectors.membership_list(project=project), many=True).data
        lines = [f"members of {project.name}:"] + [f"  {m['username']:<24} {m['role']}" for m in members]
        self.emit(list(members), "\n".join(lines))
