"""Helpers for the run and session CLI tests: the real `autopilot` console script in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from runs.models import ExecutionRun

AUTOPILOT = str(Path(sys.executable).with_name("autopilot"))  # the real console script


def autopilot(env, *args, cwd=None, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [AUTOPILOT, *map(str, args)],
        cwd=cwd or os.getcwd(),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result


def last_json(result: subprocess.CompletedProcess):
    return json.loads(ok(result).stdout.strip().splitlines()[-1])


def json_lines(result: subprocess.CompletedProcess) -> list:
    return [json.loads(line) for line in ok(result).stdout.strip().splitlines()]


def assert_usage_error(
    result: subprocess.CompletedProcess, expected: str, runs_before: int | None = None
) -> None:
    """Exit 2, one line on stderr naming the problem, no traceback, nothing created."""
    detail = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 2, detail
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, detail
    assert expected in lines[0], detail
    assert "Traceback" not in result.stderr + result.stdout, detail
    if runs_before is not None:
        assert ExecutionRun.objects.count() == runs_before, "a refused command left a run behind"


SCRIPT = json.dumps([{"write": "notes.txt", "content": "from the cli\n"}, {"finish": "done"}])
