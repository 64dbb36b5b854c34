"""`autopilot reject RUN [--step N] --message TEXT`."""

from __future__ import annotations

from autopilot.cli_support import AutopilotCommand
from autopilot.models import Role
from runs import selectors, services
from runs.management.commands._runcli import get_run


class Command(AutopilotCommand):
    help = "Reject a step waiting for approval; the message goes back to the agent."

    def add_arguments(self, parser):
        parser.add_argument("run", type=int)
        parser.add_argument("--step", type=int, help="Step number (seq).")
        parser.add_argument("--message", "-m", required=True)

    def handle(self, *args, **options):
        run = get_run(self, options["run"], options, Role.OPERATOR)
        step = services.run_reject(
            run=run, seq=options["step"], actor=self.actor(options), message=options["message"]
        )
        self.emit(selectors.step_to_dict(step, full=True), f"rejected step {step.seq} of run #{run.pk}")
