"""`autopilot export RUN --format json|rlog [-o FILE]`: a run's trajectory (redacted)."""

from __future__ import annotations

import json
from pathlib import Path

from autopilot.cli_support import AutopilotCommand, to_jsonable
from runs import trajectory
from runs.management.commands._runcli import get_run


class Command(AutopilotCommand):
    help = "Export a run's trajectory as JSON or as a human-readable .rlog."

    def add_arguments(self, parser):
        parser.add_argument("run", type=int)
        parser.add_argument("--format", choices=["json", "rlog"], default="json")
        parser.add_argument("-o", "--output", help="Write to this file instead of stdout.")

    def handle(self, *args, **options):
        run = get_run(self, options["run"], options)
        if options["format"] == "rlog":
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
