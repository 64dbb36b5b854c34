"""`autopilot resume RUN PROMPT [--background]`: continue a finished run with a new prompt."""

from __future__ import annotations

from autopilot.cli_support import AutopilotCommand
from autopilot.models import Role
from runs import selectors, services
from runs.management.commands._runcli import get_run


class Command(AutopilotCommand):
    help = "Continue a finished or interrupted run (same session and worktree when possible) with a new prompt."

    def add_arguments(self, parser):
        parser.add_argument("run", type=int)
        parser.add_argument("prompt")
        parser.add_argument("--background", action="store_true", help="Queue it instead of running it here.")

    def handle(self, *args, **options):
        run = get_run(self, options["run"], options, Role.OPERATOR)
        actor = self.actor(options)
        new = services.run_resume(run=run, prompt=options["prompt"], actor=actor, enqueue=options["background"])
        if options["background"]:
            self.emit(selectors.run_to_dict(new), f"queued run #{new.pk} resuming #{run.pk}")
            return
        from runs.management.commands.run import Command as RunCommand

        runner = RunCommand(stdout=self.stdout, stderr=self.stderr)
        runner.as_json = self.as_json
        if not self.as_json:
            self.stdout.write(f"run #{new.pk} resumes #{run.pk}")
        runner.foreground(new, actor)
