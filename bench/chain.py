"""Benchmark: a chain of 20 tasks in full_auto with the scripted backend under a real `autopilot serve`.

A fresh temp data dir (SQLite, embedded channel layer, django-q2 ORM broker). Task i+1 depends on
task i; the project completes tasks when their run succeeds (auto_complete_on_tests with no test
command). Nothing but the manager moves the chain forward: the on-commit tick enqueued when a run
ends. Prints, for each link, the delay from a run's end (ended_at) to its dependent's run being
created and started, and their medians. Target: median < 1 s.

Usage: python bench/chain.py [--tasks 20] [--workers 2] [--timeout 600]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(env, *args, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=check
    )


SETUP = """
import json, sys
import django
django.setup()
from pathlib import Path
from autopilot.services import project_create, project_update_autonomy
from blueprints.models import Task, TaskDependency
from tests.gitrepo import make_repo
n = int(sys.argv[1])
repo = make_repo(Path(sys.argv[2]))
project = project_create(name="chain", repo_path=str(repo), max_parallel_runs=1, auto_complete_on_tests=True,
                         model_matrix={"code": {"agent": "scripted"}})
script = json.dumps([{"say": "chain link"}, {"finish": "done"}])
tasks = [Task.objects.create(project=project, title=f"link {i}", body=script, plan_order=i,
                             status="ready" if i == 0 else "todo") for i in range(n)]
TaskDependency.objects.bulk_create([TaskDependency(task=tasks[i], depends_on=tasks[i - 1]) \
for i in range(1, n)])
print(project.pk)
"""

REPORT = """
import json, sys
import django
django.setup()
from runs.models import ExecutionRun
from blueprints.models import Task
pid = int(sys.argv[1])
done = Task.objects.filter(project_id=pid, status="done").count()
runs = list(ExecutionRun.objects.filter(project_id=pid).order_by("task__plan_order", "pk").values(
    "pk", "task__plan_order", "status", "created_at", "started_at", "ended_at"))
for r in runs:
    for k in ("created_at", "started_at", "ended_at"):
        r[k] = r[k].timestamp() if r[k] else None
print(json.dumps({"done": done, "runs": runs}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ap-bench-chain-") as tmp:
        env = {
            **os.environ,
            "AUTOPILOT_DATA_DIR": tmp,
            "DJANGO_SETTINGS_MODULE": "autopilot.settings",
            "PYTHONPATH": str(ROOT),
            "AUTOPILOT_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        for key in ("DATABASE_URL", "REDIS_URL", "AUTOPILOT_SQLITE_PATH", "AUTOPILOT_CHANNELS_SQLITE_PATH"):
            env.pop(key, None)
        manage(env, "setup")
        out = subprocess.run(
            [sys.executable, "-c", SETUP, str(args.tasks), str(Path(tmp) / "repo")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        project_id = int(out.stdout.strip().splitlines()[-1])
        port = free_port()
        log = open(Path(tmp) / "serve.log", "w")
        server = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), "--workers", str(args.workers)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started = time.monotonic()
        try:
            # Start the chain: switching to full_auto requests a tick on commit (the cluster picks it up).
            subprocess.run(
                [sys.executable, "manage.py", "project", "autonomy", str(project_id), "--mode", "full_auto"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import django; django.setup(); from autopilot.models import Project; "
                    "from autopilot.services import project_update_autonomy as u; "
                    f"p = Project.objects.get(pk={project_id}); "
                    "p.autonomy_mode == 'full_auto' or u(project=p, autonomy_mode='full_auto')",
                ],
                cwd=ROOT,
                env=env,
                check=True,
            )
            data = {"done": 0, "runs": []}
            while time.monotonic() - started < args.timeout:
                data = json.loads(
                    subprocess.run(
                        [sys.executable, "-c", REPORT, str(project_id)],
                        cwd=ROOT,
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout
                )
                if data["done"] >= args.tasks or any(
                    r["status"] in ("failed", "cancelled", "timed_out") for r in data["runs"]
                ):
                    break
                time.sleep(1)
            total = time.monotonic() - started
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
            log.close()
        runs = [r for r in data["runs"] if r["status"] == "succeeded"]
        by_order = {r["task__plan_order"]: r for r in runs}
        to_created, to_started = [], []
        for i in range(1, args.tasks):
            prev, nxt = by_order.get(i - 1), by_order.get(i)
            if prev and nxt and prev["ended_at"] and nxt["created_at"]:
                to_created.append(nxt["created_at"] - prev["ended_at"])
                if nxt["started_at"]:
                    to_started.append(nxt["started_at"] - prev["ended_at"])
        print(
            f"chain of {args.tasks} tasks, full_auto, scripted backend, "
            f"`autopilot serve` with {args.workers} workers"
        )
        print(f"tasks done: {data['done']}/{args.tasks}, runs: {len(data['runs'])}, wall time {total:.1f} s")
        if not to_created:
            print("no completed link to measure; server log:")
            print((Path(tmp) / "serve.log").read_text()[-3000:] if (Path(tmp) / "serve.log").exists() else "")
            sys.exit(1)
        print("link delays (s), run end → next run created: " + " ".join(f"{d:.2f}" for d in to_created))
        print("link delays (s), run end → next run started: " + " ".join(f"{d:.2f}" for d in to_started))
        print(
            f"median end → next created: {statistics.median(to_created):.3f} s; "
            f"median end → next started (agent running): {statistics.median(to_started):.3f} s "
            f"(max {max(to_started):.3f} s) — target < 1 s"
        )
        print(
            json.dumps(
                {
                    "tasks": args.tasks,
                    "done": data["done"],
                    "median_end_to_created_s": round(statistics.median(to_created), 4),
                    "median_end_to_started_s": round(statistics.median(to_started), 4),
                    "max_end_to_started_s": round(max(to_started), 4),
                    "wall_s": round(total, 2),
                }
            )
        )


if __name__ == "__main__":
    main()
