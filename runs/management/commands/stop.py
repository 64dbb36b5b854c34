"""`autopilot stop RUN [--force] [--reason TEXT]`."""

from __future__ import annotations

from autopilot.models import Role
from runs import selectors, services
from runs.management.commands._runcli import RunCliCommand, get_run


class Command(RunCliCommand):
    help = (
        "Stop a run: gracefully by default (the agent is interrupted and the run ends cancelled); "
        "--force also kills the agent's processes after a grace period."
    )

    def add_arguments(self, parser):
        parser.add_argument("run", metavar="RUN", help="Run (session) id.")
        parser.add_argument("--force", action="store_true")
        parser.add_argument("--reason", default="")

    def handle(self, *args, **options):
        run = get_run(self, options["run"], options, Role.OPERATOR)
        run = services.run_stop(
            run=run, actor=self.actor(options), reason=options["reason"], force=options["force"]
        )
        text = f"run #{run.pk}: {run.status}" + (" (stop requested)" if not run.is_terminal else "")
        self.emit(selectors.run_to_dict(run), text)
