"""`autopilot import_run FILE PROJECT`: import a JSON trajectory as a new finished run."""

from __future__ import annotations

from pathlib import Path

from autopilot.cli_support import AutopilotCommand
from autopilot.errors import ApplicationError
from autopilot.models import Role
from autopilot.permissions import require_role
from autopilot.services import project_get
from runs import selectors, trajectory


class Command(AutopilotCommand):
    help = "Import an exported JSON trajectory into a project as a new finished run."

    def add_arguments(self, parser):
        parser.add_argument(
            "file", help="A trajectory exported with `autopilot export RUN --format json` ('-' for stdin)."
        )
        parser.add_argument("project", help="Target project: id, slug or name.")

    def handle(self, *args, **options):
        project = project_get(options["project"])
        actor = self.actor(options)
        if actor is not None:
            require_role(actor, project, Role.OPERATOR)
        if options["file"] == "-":
            import sys

            raw = sys.stdin.read()
        else:
            path = Path(options["file"])
            if not path.is_file():
                raise ApplicationError(f"No file '{path}'.")
            raw = path.read_text(encoding="utf-8")
        run = trajectory.import_run(project=project, raw=raw, actor=actor)
        data = selectors.run_to_dict(run)
        self.emit(
            data, f"imported as run #{run.pk} in {project.name} ({run.status}, {len(data['steps'])} steps)"
        )
