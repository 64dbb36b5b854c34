"""`autopilot stop RUN [--force] [--reason TEXT]`."""

from __future__ import annotations

from autopilot.cli_support import AutopilotCommand
from autopilot.models import Role
from runs import selectors, services
from runs.management.commands._runcli import get_run


class Command(AutopilotCommand):
    help = "Stop a run: graceful by default; --force kills the agent after a grace period."

    def add_arguments(self, parser):
        parser.add_argument("run", type=int)
        parser.add_argument("--force", action="store_true")
        parser.add_argument("--reason", default="")

    def handle(self, *args, **options):
        run = get_run(self, options["run"], options, Role.OPERATOR)
        run = services.run_stop(run=run, actor=self.actor(options), reason=options["reason"], force=options["force"])
        text = f"run #{run.pk}: {run.status}" + (" (stop requested)" if not run.is_terminal else "")
        self.emit(selectors.run_to_dict(run), text)
