"""Records a terminal's output as asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/).

Run by tmux (`pipe-pane`) with the pane's output on stdin; standalone on purpose (the standard
library only, no Django): `python3 cast_recorder.py FILE WIDTH HEIGHT [TITLE]`.

The file is a header line ({"version": 2, "width", "height", "timestamp", "title", "env"}) followed
by one `[seconds, "o", text]` line per chunk of output, seconds relative to the recording's start.
When FILE already holds a recording (a second take-over of the same run), the new events continue
its timeline after the last event instead of writing a second header. Each line is flushed as it is
written: a recorder killed with its tmux server leaves a valid file up to its last chunk.
"""

from __future__ import annotations

import codecs
import json
import os
import sys
import time


def last_event_time(path: str) -> float | None:
    """The time of the last event of an existing recording (None when there is no valid header)."""
    try:
        with open(path, "rb") as handle:
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    if not lines:
        return None
    try:
        header = json.loads(lines[0])
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("version") != 2:
        return None
    for line in reversed(lines[1:]):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, list) and event and isinstance(event[0], (int, float)):
            return float(event[0])
    return 0.0


def record(path: str, width: int, height: int, title: str = "", source=None) -> None:
    source = source if source is not None else sys.stdin.buffer
    offset = last_event_time(path)
    with open(path, "a", encoding="utf-8") as out:
        if offset is None:
            out.seek(0)
            out.truncate()
            header = {
                "version": 2,
                "width": width,
                "height": height,
                "timestamp": int(time.time()),
                "title": title,
                "env": {"TERM": "tmux-256color", "SHELL": "/bin/bash"},
            }
            out.write(json.dumps(header) + "\n")
            out.flush()
            offset = 0.0
        else:
            offset += 0.5  # a visible pause between two terminal sessions
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        started = time.monotonic()
        fd = source.fileno()
        while True:
            chunk = os.read(fd, 65536)
            text = decoder.decode(chunk, final=not chunk)
            if text:
                moment = round(offset + time.monotonic() - started, 6)
                out.write(json.dumps([moment, "o", text], ensure_ascii=False) + "\n")
                out.flush()
            if not chunk:
                return


if __name__ == "__main__":  # pragma: no cover - exercised through tmux in the tests
    record(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "")
