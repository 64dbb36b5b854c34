"""`autopilot start [PROJECT] [--background]`: hand a project to the manager (full-auto).

In the foreground it drives the manager in this process (ticks, then the runs they start, until no
ready task remains or the budget is spent), printing each start and finish. With --background it
starts that same command as a detached process, prints its pid and log file, and returns at once;
`autopilot status` lists the runs it starts, `autopilot stop RUN` stops one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from autopilot.cli_support import AutopilotCommand
from autopilot.errors import ApplicationError
from autopilot.manager.drive import drive_full_auto
from autopilot.models import Role
from autopilot.permissions import require_role


class Command(AutopilotCommand):
    help = "Hand a project to the manager (full-auto): runs its ready tasks until none remains."

    def add_arguments(self, parser):
        parser.add_argument("project", nargs="?", help="Id, slug or name (default: the current project).")
        parser.add_argument("--project", dest="project_option", metavar="NAME", help="Same as PROJECT.")
        parser.add_argument(
            "--background",
            action="store_true",
            help="Start it as a detached process and return at once (prints its pid and log).",
        )
        parser.add_argument(
            "-b", "--max-budget", metavar="USD", help="Stop starting runs once this much is spent."
        )
        parser.add_argument(
            "--until-empty",
            action="store_true",
            help="Keep going until no task is left at all (waits out retry backoffs).",
        )

    def handle(self, *args, **options):
        if (
            options["project"]
            and options["project_option"]
            and options["project"] != options["project_option"]
        ):
            raise ApplicationError("Give the project once: PROJECT or --project NAME.")
        actor = self.actor(options)
        project = self.project(options["project"] or options["project_option"], options)
        require_role(actor, project, Role.OPERATOR)
        if project.paused:
            raise ApplicationError(
                f"Project '{project.name}' is paused; resume it first "
                f"(`autopilot project autonomy {project.slug} --resume`)."
            )
        if options["max_budget"] is not None:
            try:
                if float(options["max_budget"]) <= 0:
                    raise ValueError
            except ValueError:
                raise ApplicationError(
                    f"--max-budget must be an amount above 0 in USD, got '{options['max_budget']}'."
                ) from None
        if options["background"]:
            return self.background(project, actor, options)
        drive_full_auto(
            project=project,
            max_budget=options["max_budget"],
            until_empty=options["until_empty"],
            stdout=self.stdout,
            as_json=self.as_json,
            actor=actor,
        )

    def background(self, project, actor, options):
        logs = Path(settings.DATA_DIR) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"start-{project.slug}-{timezone.now():%Y%m%d-%H%M%S}.log"
        command = [
            sys.executable,
            "-m",
            "autopilot.cli",
            "start",
            str(project.pk),
            "--user",
            actor.get_username(),
        ]
        if options["max_budget"] is not None:
            command += ["--max-budget", str(options["max_budget"])]
        if options["until_empty"]:
            command.append("--until-empty")
        if self.as_json:
            command.append("--json")
        with open(log_path, "ab") as log:
            child = subprocess.Popen(  # detached: its own session, no terminal, survives this command
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=project.repo_path,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        data = {"project": project.pk, "name": project.name, "pid": child.pid, "log": str(log_path)}
        self.emit(
            data,
            f"started the manager on {project.name} in the background: pid {child.pid}, log {log_path}\n"
            "`autopilot status` lists its runs",
        )
