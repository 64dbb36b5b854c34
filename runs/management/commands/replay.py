"""`autopilot replay RUN [--speed X]`: print a run's steps as they happened, with their timing."""

from __future__ import annotations

import json
import time

from autopilot.cli_support import to_jsonable
from autopilot.errors import ApplicationError
from runs import trajectory
from runs.management.commands._runcli import RunCliCommand, load_source


class Command(RunCliCommand):
    help = (
        "Replay a run or a trajectory file in the terminal: its steps in order, paced as they happened "
        "(--speed 0: no pauses)."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", metavar="FILE|RUN", help="A trajectory .json file or a run id.")
        parser.add_argument(
            "--speed", type=float, default=1.0, help="Playback speed (2 = twice as fast; 0 = no pauses)."
        )
        parser.add_argument(
            "--max-wait", type=float, default=5.0, help="Longest pause between two steps, in seconds."
        )

    def handle(self, *args, **options):
        if options["speed"] < 0:
            raise ApplicationError("--speed must be 0 or more.")
        if options["max_wait"] < 0:
            raise ApplicationError("--max-wait must be 0 or more.")
        _, data = load_source(self, options["source"], options)
        speed, max_wait = options["speed"], options["max_wait"]
        if not self.as_json:
            source = data["run"]
            self.stdout.write(f"replaying run #{source.get('id')} ({source['backend']}, {source['status']})")
        for frame in trajectory.replay(data):
            if speed > 0 and frame.wait > 0:
                time.sleep(min(frame.wait / speed, max_wait))
            if self.as_json:
                self.stdout.write(
                    json.dumps(to_jsonable({"wait": frame.wait, "step": frame.step}), ensure_ascii=False)
                )
            else:
                self.stdout.write(
                    f"[{frame.index + 1}/{frame.total} +{frame.wait:.2f}s] "
                    + trajectory.step_line(frame.step)
                )
            self.stdout.flush()
