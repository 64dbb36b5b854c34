"""`autopilot export RUN --format json|rlog|cast [-o FILE]`: a run's trajectory (redacted); `cast`: its
terminal recording (an interactive session or a take-over), asciicast v2, redacted."""

from __future__ import annotations

import json
from pathlib import Path

from autopilot.cli_support import AutopilotCommand, to_jsonable
from autopilot.errors import NotFound
from runs import interactive, trajectory
from runs.management.commands._runcli import get_run


class Command(AutopilotCommand):
    help = "Export a run's trajectory as JSON or a human-readable .rlog, or its terminal recording (cast)."

    def add_arguments(self, parser):
        parser.add_argument("run", type=int)
        parser.add_argument("--format", choices=["json", "rlog", "cast"], default="json")
        parser.add_argument("-o", "--output", help="Write to this file instead of stdout.")

    def handle(self, *args, **options):
        run = get_run(self, options["run"], options)
        if options["format"] == "cast":
            text = interactive.recording_text(run)
            if not text:
                raise NotFound(f"Run #{run.pk} has no terminal recording (only terminal sessions have one).")
        elif options["format"] == "rlog":
            text = trajectory.export_rlog(run)
        else:
            text = json.dumps(to_jsonable(trajectory.export_run(run)), indent=2, ensure_ascii=False) + "\n"
        if options.get("output"):
            path = Path(options["output"])
            path.write_text(text, encoding="utf-8")
            self.emit(
                {
                    "run": run.pk,
                    "format": options["format"],
                    "path": str(path.resolve()),
                    "bytes": len(text.encode()),
                },
                f"run #{run.pk} exported to {path} ({options['format']})",
            )
        else:
            self.stdout.write(text, ending="")
