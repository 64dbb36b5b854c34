"""`autopilot message RUN TEXT`: send a message to a run without stopping it."""

from __future__ import annotations

from autopilot.cli_support import AutopilotCommand
from autopilot.models import Role
from runs.management.commands._runcli import get_run
from runs.services import run_message


class Command(AutopilotCommand):
    help = "Send a message to a running agent (delivered between turns) or note it on a finished run."

    def add_arguments(self, parser):
        parser.add_argument("run", type=int)
        parser.add_argument("text")

    def handle(self, *args, **options):
        run = get_run(self, options["run"], options, Role.OPERATOR)
        message = run_message(run=run, body=options["text"], actor=self.actor(options))
        self.emit(
            {"id": message.pk, "run": run.pk, "body": message.body, "delivered_at": message.delivered_at},
            f"message {message.pk} sent to run #{run.pk}",
        )
