"""`autopilot status RUN`: a run's status, reason, branch, cost and steps."""

from __future__ import annotations

from autopilot.cli_support import AutopilotCommand
from runs import selectors
from runs.management.commands._runcli import get_run, run_text, step_line


class Command(AutopilotCommand):
    help = "Show a run's status."

    def add_arguments(self, parser):
        parser.add_argument("run", type=int)

    def handle(self, *args, **options):
        run = get_run(self, options["run"], options)
        run = selectors.run_get(run.pk, with_steps=True)
        data = selectors.run_to_dict(run)
        self.emit(data, run_text(run, data) + "\n" + "\n".join(step_line(s) for s in run.steps.all()))
