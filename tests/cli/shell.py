"""The real `autopilot` console script in a subprocess, as a user types it (issue #13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AUTOPILOT = str(Path(sys.executable).parent / "autopilot")
LOCAL_USER = "localdev"  # AUTOPILOT_LOCAL_USER: the OS user the CLI acts as, fixed for the tests


class Shell:
    """`shell("project", "list")` runs `autopilot project list` with `env`, in `cwd`."""

    def __init__(self, env: dict, cwd: Path):
        self.env = {**env, "AUTOPILOT_LOCAL_USER": LOCAL_USER}
        self.cwd = cwd

    def __call__(self, *args: str, cwd: Path | None = None, stdin: str | None = None, ok: bool = True):
        result = subprocess.run(
            [AUTOPILOT, *args],
            env=self.env,
            cwd=str(cwd or self.cwd),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if ok:
            assert result.returncode == 0, f"autopilot {' '.join(args)}: {result.stderr}"
        return result

    def json(self, *args: str, cwd: Path | None = None):
        import json

        result = self(*args, "--json", cwd=cwd)
        return json.loads(result.stdout.strip().splitlines()[-1])

    def fails(self, *args: str, cwd: Path | None = None, says: str) -> str:
        """A user error: exit code 2, one line naming the problem on stderr, no traceback."""
        result = self(*args, cwd=cwd, ok=False)
        assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
        assert says in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
        assert len(errors) == 1, result.stderr
        return result.stderr


def fresh_env(data_dir: Path) -> dict:
    """A child environment with an empty data directory of its own (SQLite, no database yet)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "DATABASE_URL",
            "REDIS_URL",
            "AUTOPILOT_SQLITE_PATH",
            "AUTOPILOT_CHANNELS_SQLITE_PATH",
        )
    }
    env.update(
        {
            "AUTOPILOT_DATA_DIR": str(data_dir),
            "DJANGO_SETTINGS_MODULE": "autopilot.settings",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env
