"""Fault tests: `autopilot serve` (or a bare worker) as real process groups on this test's databases,
killed with SIGKILL and restarted, with short leases so recovery is a matter of seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.liveserver import descendants_of, pgid_of, process_groups_alive, wait_until

AUTOPILOT = [sys.executable, "-m", "autopilot.cli"]
LEASE_SECONDS = 5


@pytest.fixture
def fault_env(subprocess_env):
    """Short leases (the reconciler then runs every second) for every child process."""
    return {**subprocess_env, "AUTOPILOT_LEASE_SECONDS": str(LEASE_SECONDS), "AUTOPILOT_LOG_LEVEL": "INFO"}


class Group:
    """`autopilot serve ARGS` in a session of its own, its output in a log file."""

    def __init__(self, env: dict, log: Path, *args: str):
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*AUTOPILOT, "serve", *args],
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def groups(self) -> set[int]:
        pids = [self.proc.pid, *descendants_of(self.proc.pid)]
        return {g for g in (pgid_of(p) for p in pids) if g is not None}

    def has_child(self, word: str) -> bool:
        for pid in descendants_of(self.proc.pid):
            try:
                if word in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    return True
            except OSError:
                continue
        return False

    def kill(self) -> None:
        """SIGKILL every process of the group at once: no clean-up runs anywhere."""
        groups = self.groups()
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)
        self._fh.close()
        wait_until(
            lambda: process_groups_alive(groups) == [], timeout=30, what="the killed processes to be gone"
        )

    def stop(self) -> int:
        groups = self.groups()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self._fh.close()
            assert process_groups_alive(groups) == []


@pytest.fixture
def serve(tmp_path):
    started: list[Group] = []

    def start(env: dict, *args: str) -> Group:
        group = Group(env, tmp_path / "serve.log", *args)
        started.append(group)
        return group

    yield start
    for group in started:  # a failed test must not leave servers behind
        if group.proc.poll() is None:
            group.kill()
