"""`autopilot project create|list|show|autonomy|members …`: register and steer projects.

Every write goes through autopilot.services (events name the acting user: `--user`, else the first
superuser). With `--user`, the same role rules as the web and API apply (autopilot.permissions:
FIELD_ROLES, the right to register repositories); without it, a local shell user is trusted like the
server's own account.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from autopilot import selectors, services
from autopilot.api.serializers import MembershipSerializer, ProjectSerializer
from autopilot.cli_support import AutopilotCommand
from autopilot.errors import ApplicationError
from autopilot.models import AutonomyMode, Project, Role


def _usd(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ApplicationError(f"'{text}' is not an amount in USD (e.g. 2.50).") from None
    if value < 0 or not value.is_finite():
        raise ApplicationError(f"A budget cannot be negative, got {text}.")
    return value


class Command(AutopilotCommand):
    help = "Create, list, show projects; change autonomy settings; manage members."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="{create,list,show,autonomy,members}")

        def add(name: str, help_text: str):
            return self.add_action(sub, name, help_text)

        create = add("create", "Register a local git repository as a project.")
        create.add_argument("name")
        create.add_argument("--repo", required=True, help="Absolute path of the git repository.")
        create.add_argument("--base-branch", default="main")
        create.add_argument("--subdir", default="", help="Work inside this subdirectory (monorepos).")
        create.add_argument("--test-command", default="")
        create.add_argument("--setup-script", default="", help="Shell script run in every fresh worktree.")
        create.add_argument("--allow", nargs="+", default=[], metavar="CMD", help="Programs the agent may run.")
        create.add_argument("--description", default="")
        create.add_argument("--owner", help="Username of the owner (default: the acting user).")
        create.add_argument("--share-repo", action="store_true",
                            help="Staff only: allow a repository another project already uses.")

        add("list", "Projects you can see.")

        show = add("show", "One project with its members.")
        show.add_argument("project", help="Id, slug or name.")

        autonomy = add("autonomy", "Show or change autonomy settings (each change is an event).")
        autonomy.add_argument("project", help="Id, slug or name.")
        autonomy.add_argument("--mode", choices=AutonomyMode.values)
        autonomy.add_argument("--max-parallel", type=int, metavar="N")
        pause = autonomy.add_mutually_exclusive_group()
        pause.add_argument("--pause", action="store_true")
        pause.add_argument("--resume", action="store_true")
        phase = autonomy.add_mutually_exclusive_group()
        phase.add_argument("--phase", metavar="ANCHOR", help="Focus on this plan node of the active blueprint.")
        phase.add_argument("--no-phase", action="store_true", help="Work on the whole plan.")
        autonomy.add_argument("--run-budget", metavar="USD", help="Default budget per run.")
        daily = autonomy.add_mutually_exclusive_group()
        daily.add_argument("--daily-budget", metavar="USD", help="Daily spending cap for the project.")
        daily.add_argument("--no-daily-budget", action="store_true")

        members = add("members", "List members, add one or change a role (owners), remove one.")
        members.add_argument("project", help="Id, slug or name.")
        change = members.add_mutually_exclusive_group()
        change.add_argument("--add", metavar="USER", help="Add this user (or change their role).")
        change.add_argument("--remove", metavar="USER", help="Remove this user.")
        members.add_argument("--role", choices=Role.values, help="Role for --add (default: viewer).")

    # --- helpers ---------------------------------------------------------------------------------

    def _project(self, identifier: str, actor) -> Project:
        if actor is None:  # no users yet: whoever has the shell and the database is the administrator
            project = services.project_get(identifier)
            project.my_role = None
            return project
        return selectors.project_get_visible(user=actor, identifier=identifier)

    @staticmethod
    def _user(username: str):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise ApplicationError(f"No user '{username}' (create one with `autopilot user create {username}`).")
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
            f"max parallel {project.max_parallel_runs}; run budget ${project.default_run_budget_usd:.2f}; daily {daily}"
        )

    # --- actions ---------------------------------------------------------------------------------

    def handle(self, *args, **options):
        actor = self.actor(options)
        action = options["action"]
        getattr(self, f"do_{action}")(actor, options)

    def do_create(self, actor, options):
        owner = self._user(options["owner"]) if options.get("owner") else actor
        if owner is None:
            raise ApplicationError("No owner: pass --owner USER (create one with `autopilot user create NAME`).")
        project = services.project_create(
            name=options["name"],
            repo_path=options["repo"],
            base_branch=options["base_branch"],
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
        self.emit(data, f"created project #{project.pk} {project.name} ({project.slug}), owner {owner.username}")

    def do_list(self, actor, options):
        projects = selectors.project_list(user=actor) if actor is not None else Project.objects.all()
        if actor is None:
            projects = projects.select_related("active_phase")
            for project in projects:
                project.my_role = None
        data = ProjectSerializer(projects, many=True).data
        lines = [f"{'ID':>4}  {'NAME':<30} {'MODE':<10} {'PAUSED':<6} {'PAR':>3}  REPO"]
        for row in data:
            lines.append(f"{row['id']:>4}  {row['name'][:30]:<30} {row['autonomy_mode']:<10} "
                         f"{'yes' if row['paused'] else 'no':<6} {row['max_parallel_runs']:>3}  {row['repo_path']}")
        if not data:
            lines = ["no projects (create one with `autopilot project create NAME --repo PATH`)"]
        self.emit(list(data), "\n".join(lines))

    def do_show(self, actor, options):
        self._show_project(self._project(options["project"], actor))

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
        data = {key: ProjectSerializer(project).data[key] for key in (
            "id", "name", "autonomy_mode", "paused", "active_phase", "max_parallel_runs", "default_run_budget_usd",
            "daily_budget_usd", "max_attempts", "plan_order_policy", "model_matrix")}
        data["changed"] = sorted(changes)
        prefix = f"updated {', '.join(sorted(changes))}\n" if changes else ""
        self.emit(data, f"{prefix}#{project.pk} {project.name}\n{self._autonomy_text(project)}")

    @staticmethod
    def _phase(project: Project, anchor: str):
        from blueprints.models import Blueprint, PlanNode

        blueprint = Blueprint.objects.filter(project=project, status=Blueprint.Status.ACTIVE).first()
        if blueprint is None:
            raise ApplicationError(f"Project '{project.name}' has no active blueprint, so no phase to focus on.")
        node = PlanNode.objects.filter(project=project, anchor=anchor, archived_at__isnull=True).first()
        if node is None:
            from blueprints.selectors import layout_of

            layout = layout_of(blueprint)
            top = [a for a, p in zip(layout.anchors, layout.parents, strict=True) if p < 0][:10] if layout else []
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
                project=project, user=self._user(options["add"]), role=options.get("role") or Role.VIEWER, actor=actor
            )
        if options.get("remove"):
            services.membership_remove(project=project, user=self._user(options["remove"]), actor=actor)
        members = MembershipSerializer(selectors.membership_list(project=project), many=True).data
        lines = [f"members of {project.name}:"] + [f"  {m['username']:<24} {m['role']}" for m in members]
        self.emit(list(members), "\n".join(lines))
