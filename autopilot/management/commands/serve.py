"""`autopilot serve`: daphne (HTTP + websockets), the two django-q2 clusters and the reconciler as one
supervised group. Ctrl-C or SIGTERM stops every child and its descendants; if a child dies on its own,
the rest are stopped too and the command exits non-zero, so a process manager can restart the group.

- `cluster`: the control cluster (ticks, ingestion, sweeps; it runs the schedule), --control-workers;
- `runs`: the runs cluster (agent runs only), --workers: a run waiting for approval holds one of these,
  never a worker the tick or an ingestion needs;
- `reconciler`: `autopilot reconcile --loop`, every quarter lease: fails runs whose worker is gone and
  re-enqueues queued runs whose message was lost (e.g. fetched by a cluster killed with the group).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand

from autopilot.cli_support import ensure_database
from autopilot.errors import ApplicationError
from autopilot.queues import RUNS
from autopilot.schedules import ensure_schedules

STOP_GRACE_SECONDS = 15


class Command(BaseCommand):
    help = "Run the web server (daphne) and the task cluster (django-q2 with its schedule) together."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("AUTOPILOT_WORKERS", "2")),
            help="Run worker processes (agent runs execute in these; the runs cluster).",
        )
        parser.add_argument(
            "--control-workers",
            type=int,
            default=int(os.environ.get("AUTOPILOT_CONTROL_WORKERS", "2")),
            help="Control worker processes (ticks, ingestion, sweeps; the control cluster).",
        )
        parser.add_argument(
            "--no-cluster", action="store_true", help="Serve the web only (workers run elsewhere)."
        )
        parser.add_argument("--no-web", action="store_true", help="Run the task cluster only.")

    def handle(self, *args, **options):
        for name in ("workers", "control_workers"):
            if options[name] < 1:
                self.stderr.write(f"--{name.replace('_', '-')} must be at least 1, got {options[name]}.")
                sys.exit(2)
        try:
            ensure_database(self.stderr)  # zero set-up: a fresh data directory is set up here
        except ApplicationError as exc:
            self.stderr.write(f"error: {exc.message}")
            sys.exit(2)
        ensure_schedules()
        env = {
            **os.environ,
            "AUTOPILOT_WORKERS": str(options["workers"]),
            "AUTOPILOT_CONTROL_WORKERS": str(options["control_workers"]),
            "PYTHONUNBUFFERED": "1",
        }
        env.setdefault("DJANGO_SETTINGS_MODULE", "autopilot.settings")
        env.pop("Q_CLUSTER_NAME", None)
        specs = []
        if not options["no_web"]:
            # No --proxy-headers: daphne would believe X-Forwarded-For from any client. The client
            # address comes from autopilot.middleware, which believes AUTOPILOT_TRUSTED_PROXIES only.
            specs.append(
                (
                    "web",
                    [
                        sys.executable,
                        "-m",
                        "daphne",
                        "-b",
                        options["host"],
                        "-p",
                        str(options["port"]),
                        "autopilot.asgi:application",
                    ],
                )
            )
        if not options["no_cluster"]:
            specs.append(("cluster", [sys.executable, "-m", "autopilot.cli", "qcluster"]))
            specs.append(
                ("runs", [sys.executable, "-m", "autopilot.cli", "qcluster"], {"Q_CLUSTER_NAME": RUNS})
            )
            specs.append(("reconciler", [sys.executable, "-m", "autopilot.cli", "reconcile", "--loop"]))
        if not specs:
            self.stderr.write("Nothing to run: --no-web and --no-cluster together leave no process.")
            sys.exit(2)

        stop = {"signal": None}

        def on_signal(signum, _frame):
            stop["signal"] = signum

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

        children: dict[str, subprocess.Popen] = {}
        for name, cmd, *extra in specs:
            # A session of its own per child: we signal whole process groups (qcluster forks workers).
            children[name] = subprocess.Popen(
                cmd, env={**env, **(extra[0] if extra else {})}, start_new_session=True
            )
        if "web" in children:
            self.stdout.write(
                f"Autopilot is serving on http://{options['host']}:{options['port']}/ "
                f"(pid {os.getpid()}; Ctrl-C stops everything)"
            )
        self.stdout.flush()

        exit_code = 0
        while stop["signal"] is None:
            for name, proc in children.items():
                code = proc.poll()
                if code is not None:
                    self.stderr.write(f"{name} exited with code {code}; stopping the rest.")
                    exit_code = 1
                    stop["signal"] = "child-exit"
                    break
            time.sleep(0.2)
        self._stop_all(children)
        if exit_code == 0:
            self.stdout.write("Stopped cleanly.")
        sys.exit(exit_code)

    def _stop_all(self, children: dict[str, subprocess.Popen]) -> None:
        # The leaders stop their own children gracefully (django-q2 drains its workers); signalling
        # the whole group at once would kill the workers under the cluster's feet.
        for proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in children.values():
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left in any child's group (stuck workers, agent subprocesses) is killed.
        for proc in children.values():
            _signal_group(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
