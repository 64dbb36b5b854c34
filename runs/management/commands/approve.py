"""`autopilot approve RUN [--step N] [--note TEXT]`."""

from __future__ import annotations

from autopilot.cli_support import AutopilotCommand
from autopilot.models import Role
from runs import selectors, services
from runs.management.commands._runcli import get_run


class Command(AutopilotCommand):
    help = "Approve a step waiting for approval (default: the run's oldest waiting step)."

    def add_arguments(self, parser):
        parser.add_argument("run", type=int)
        parser.add_argument("--step", type=int, help="Step number (seq).")
        parser.add_argument("--note", default="")

    def handle(self, *args, **options):
        run = get_run(self, options["run"], options, Role.OPERATOR)
        step = services.run_approve(
            run=run, seq=options["step"], actor=self.actor(options), note=options["note"]
        )
        self.emit(selectors.step_to_dict(step, full=True), f"approved step {step.seq} of run #{run.pk}")
