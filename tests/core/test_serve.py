"""`autopilot serve`: daphne + the django-q2 cluster as one supervised group, started for real in a
subprocess (own data directory, free port, after `autopilot setup`), stopped with signals, with /proc
checked for leftovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.liveserver import (
    descendants_of,
    http_json,
    pgid_of,
    pick_free_port,
    process_groups_alive,
    wait_until,
)

AUTOPILOT = [sys.executable, "-m", "autopilot.cli"]
STOP_TIMEOUT = 30

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def serve_env(subprocess_env, tmp_path):
    """A data directory of its own, prepared with `autopilot setup`. On SQLite the databases are
    fresh files in it; on the PostgreSQL pass the test database is used (setup is then a no-op)."""
    env = {**subprocess_env, "AUTOPILOT_DATA_DIR": str(tmp_path / "data")}
    env.pop("AUTOPILOT_SQLITE_PATH", None)
    env.pop("AUTOPILOT_CHANNELS_SQLITE_PATH", None)
    done = subprocess.run([*AUTOPILOT, "setup"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return env


class Serve:
    def __init__(self, env: dict, log: Path, *args: str):
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115
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
        """The serve process's group and the groups of every process below it."""
        pids = [self.proc.pid, *descendants_of(self.proc.pid)]
        return {g for g in (pgid_of(p) for p in pids) if g is not None}

    def cmdlines(self) -> list[str]:
        return [cmd for _, cmd in process_groups_alive(self.groups())]

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        finally:
            self._fh.close()

    def kill(self) -> None:
        for group in self.groups():
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=STOP_TIMEOUT)


@pytest.fixture
def serve(tmp_path):
    started: list[Serve] = []

    def start(env: dict, *args: str) -> Serve:
        s = Serve(env, tmp_path / f"serve-{len(started)}.log", *args)
        started.append(s)
        return s

    yield start
    for s in started:  # a failed test must not leave servers behind
        if s.proc.poll() is None:
            s.kill()


def healthy_with_cluster(url: str, workers: int | None = None):
    def check():
        status, report = http_json(url + "/healthz", timeout=15)
        cluster = report["checks"]["cluster"]
        if (
            status == 200
            and cluster.get("clusters")
            and (workers is None or cluster.get("workers") == workers)
        ):
            return report
        return None

    return check


def test_serve_answers_healthz_with_the_cluster_and_stops_cleanly_on_sigterm(serve_env, serve):
    # Given `autopilot serve` on a free port with one run worker and one control worker
    port = pick_free_port()
    server = serve(
        serve_env, "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--control-workers", "1"
    )
    url = f"http://127.0.0.1:{port}"

    # When it is up, Then /healthz is 200 and reports both running clusters with that many workers
    report = wait_until(
        healthy_with_cluster(url, workers=2), timeout=90, what=f"{url}/healthz with a cluster"
    )
    assert report["checks"]["cluster"]["clusters"] == 2
    cluster_pids = report["checks"]["cluster"]["pids"]
    assert set(cluster_pids) & set(descendants_of(server.proc.pid)), (
        "the cluster reported is not this serve's"
    )
    groups = server.groups()
    running = server.cmdlines()
    assert any("daphne" in cmd for cmd in running) and any("qcluster" in cmd for cmd in running), running

    # When it gets SIGTERM
    server.proc.send_signal(signal.SIGTERM)

    # Then it exits 0 and no process of its group or of its children's groups is left
    assert server.wait() == 0, server.output()
    assert "Stopped cleanly" in server.output()
    assert process_groups_alive(groups) == []


def test_a_child_dying_stops_the_rest_and_exits_non_zero(serve_env, serve):
    # Given a running serve
    port = pick_free_port()
    server = serve(serve_env, "--port", str(port), "--workers", "1")
    wait_until(healthy_with_cluster(f"http://127.0.0.1:{port}"), timeout=90, what="serve to be healthy")
    groups = server.groups()
    web = next(
        pid
        for pid in descendants_of(server.proc.pid)
        if "daphne" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    )

    # When the web server dies on its own
    os.kill(web, signal.SIGKILL)

    # Then serve stops the cluster too and exits non-zero, leaving nothing behind
    code = server.wait()
    assert code != 0, server.output()
    assert "web exited" in server.output()
    assert process_groups_alive(groups) == []


def test_scale_out_split_web_nodes_and_worker_nodes(serve_env, serve):
    # Given a worker node (`--no-web`) and a web node (`--no-cluster`) on the same databases
    port = pick_free_port()
    worker = serve(serve_env, "--no-web", "--workers", "1")
    web = serve(serve_env, "--no-cluster", "--port", str(port))

    # When both are up, Then the web node's /healthz sees the worker node's cluster
    report = wait_until(healthy_with_cluster(f"http://127.0.0.1:{port}"), timeout=90, what="split nodes")
    assert set(report["checks"]["cluster"]["pids"]) & set(descendants_of(worker.proc.pid))
    # and each node runs only its half
    assert not any("daphne" in cmd for cmd in worker.cmdlines())
    assert not any("qcluster" in cmd for cmd in web.cmdlines())
    groups = worker.groups() | web.groups()

    # When both get SIGINT (Ctrl-C), Then both exit 0 and leave nothing behind
    for node in (worker, web):
        node.proc.send_signal(signal.SIGINT)
    assert worker.wait() == 0, worker.output()
    assert web.wait() == 0, web.output()
    assert process_groups_alive(groups) == []


def test_no_web_and_no_cluster_together_is_refused(serve_env):
    done = subprocess.run(
        [*AUTOPILOT, "serve", "--no-web", "--no-cluster"],
        env=serve_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Nothing to run" in done.stderr
