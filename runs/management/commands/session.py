"""`autopilot session list PROJECT` / `autopilot session show RUN`: runs ("sessions") and their steps."""

from __future__ import annotations

from autopilot.cli_support import AutopilotCommand
from autopilot.models import Role
from autopilot.permissions import require_role
from autopilot.services import project_get
from runs import selectors
from runs.management.commands._runcli import get_run, run_text, step_line


class Command(AutopilotCommand):
    help = "List a project's runs, or show one run with its steps."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = self.add_action(sub, "list", "A project's runs, newest first.", project=True)
        listing.add_argument("--status", help="Comma-separated statuses.")
        listing.add_argument("--limit", type=int, default=50)
        show = self.add_action(sub, "show", "One run with its steps.")
        show.add_argument("run", type=int)

    def handle(self, *args, **options):
        self.as_json = options.get("json", False)
        if options["action"] == "list":
            project = project_get(options["project"])
            actor = self.actor(options)
            if actor is not None:
                require_role(actor, project, Role.VIEWER)
            runs = list(selectors.run_list(project=project, status=options["status"])
                        .prefetch_related("steps")[: options["limit"]])
            data = [selectors.run_to_dict(r) for r in runs]
            text = "\n".join(
                f"#{r.pk:<5} {r.status:<17} {r.agent_backend:<12} ${r.cost_usd:<9.4f} {r.turns:>3} turns  "
                f"{r.branch or '-'}  {(r.prompt.splitlines() or [''])[0][:60]}"
                for r in runs
            ) or "no runs"
            self.emit({"runs": data}, text)
            return
        run = get_run(self, options["run"], options)
        run = selectors.run_get(run.pk, with_steps=True)
        data = selectors.run_to_dict(run)
        self.emit(data, run_text(run, data) + "\n" + "\n".join(step_line(s) for s in run.steps.all()))
