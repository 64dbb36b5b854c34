"""Benchmark: computing a project snapshot (runs.snapshot.snapshot_data) as the project grows (SQLite).

For each size N (default 1,000 and 10,000 work tasks, in a fresh temp data dir and database), one
project gets a real ingested blueprint of N leaf sections (N/50 phases), then, behind the services'
back: 20 % of its tasks done (with start/finish times over the last two weeks), 5 % in review, 2 %
blocked (each with a status event giving the reason), 30 open runs, N/10 finished runs with a usage
record each, and N/20 merges. Printed per size: the median time of snapshot_data over 7 calls, the
median of the baseline in the same process on the same data — one hand-written SQL query counting
the project's tasks by status, the cheapest query that yields the headline numbers — their ratio,
and the number of SQL queries a snapshot makes (it must not grow with N).

Usage: python bench/snapshot.py [--sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE_SQL = "SELECT status, COUNT(*) FROM blueprints_task WHERE project_id = %s GROUP BY status"
REPEAT = 7


def child(size: int) -> dict:
    import django

    django.setup()
    import datetime as dt
    from decimal import Decimal

    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from autopilot.models import Event, Project
    from blueprints.ingestion import ingest_blueprint
    from blueprints.models import Task
    from runs.models import ExecutionRun, Integration, UsageRecord
    from runs.snapshot import snapshot_data

    call_command("migrate", verbosity=0, interactive=False)
    if "channels" in settings.DATABASES:
        call_command("migrate", database="channels", verbosity=0, interactive=False)
    repo = Path(tempfile.mkdtemp(prefix="ap-bench-snap-repo-"))
    project = Project.objects.create(name="bench", slug="bench", repo_path=str(repo), daily_budget_usd=50)
    per_phase = 50
    spec = "\n".join(
        f"# Phase {p}\n\n## Part {p}\n\n"
        + "\n".join(f"### Item {p}.{i}\n\nWords.\n" for i in range(per_phase))
        for p in range(size // per_phase)
    )
    t0 = time.perf_counter()
    ingest_blueprint(project=project, text=spec, title="Bench")
    ingest_s = time.perf_counter() - t0
    ids = list(
        Task.objects.filter(project=project, kind=Task.Kind.WORK).order_by("id").values_list("id", flat=True)
    )
    now = timezone.now()
    done = ids[: size // 5]
    for i, task_id in enumerate(done):  # spread over two weeks, cycle 1–8 h
        finished = now - dt.timedelta(hours=(i * 336) // max(1, len(done)))
        Task.objects.filter(pk=task_id).update(
            status=Task.Status.DONE,
            completed_at=finished,
            started_at=finished - dt.timedelta(hours=1 + i % 8),
        )
    Task.objects.filter(pk__in=ids[size // 5 : size // 4]).update(status=Task.Status.REVIEW)
    blocked = ids[size // 4 : size // 4 + size // 50]
    Task.objects.filter(pk__in=blocked).update(status=Task.Status.BLOCKED)
    Event.objects.bulk_create(
        Event(
            project=project,
            kind="task.status",
            subject_type="task",
            subject_id=task_id,
            data={"from": "todo", "to": "blocked", "reason": f"needs input {task_id}"},
        )
        for task_id in blocked
    )
    open_runs = ExecutionRun.objects.bulk_create(
        ExecutionRun(project=project, task_id=task_id, agent_backend="scripted", prompt="x", status="running")
        for task_id in ids[size // 2 : size // 2 + 30]
    )
    finished_runs = ExecutionRun.objects.bulk_create(
        ExecutionRun(project=project, agent_backend="scripted", prompt="x", status="succeeded")
        for _ in range(size // 10)
    )
    UsageRecord.objects.bulk_create(
        UsageRecord(project=project, run=run, model="m", cost_usd=Decimal("0.01")) for run in finished_runs
    )
    Integration.objects.bulk_create(
        Integration(
            project=project,
            task_id=task_id,
            status="merged",
            branch=f"b{task_id}",
            target_branch="i",
            finished_at=now,
        )
        for task_id in done[: size // 20]
    )

    def timed(fn) -> float:
        samples = []
        for _ in range(REPEAT):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    def baseline():
        with connection.cursor() as cursor:
            cursor.execute(BASELINE_SQL, [project.pk])
            cursor.fetchall()

    base = timed(baseline)
    snap = timed(lambda: snapshot_data(project))
    with CaptureQueriesContext(connection) as queries:
        data = snapshot_data(project)
    assert data["totals"]["total"] == size and len(data["in_flight"]["runs"]) == 20 and open_runs
    return {
        "size": size,
        "ingest_s": ingest_s,
        "baseline_ms": base * 1000,
        "snapshot_ms": snap * 1000,
        "ratio": snap / base,
        "queries": len(queries),
        "phases": len(data["phases"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="ap-bench-snapshot-") as tmp:
            env = {
                **os.environ,
                "AUTOPILOT_DATA_DIR": tmp,
                "DJANGO_SETTINGS_MODULE": "autopilot.settings",
                "AUTOPILOT_LOG_LEVEL": "WARNING",
            }
            for key in (
                "DATABASE_URL",
                "REDIS_URL",
                "AUTOPILOT_SQLITE_PATH",
                "AUTOPILOT_CHANNELS_SQLITE_PATH",
            ):
                env.pop(key, None)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(size)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode != 0:
                sys.stderr.write(out.stderr)
                sys.exit(out.returncode)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        "snapshot_data against one hand-written COUNT(*) GROUP BY status query on the same data (median of 7)"
    )
    print(f"{'tasks':>7} {'phases':>7} {'baseline ms':>12} {'snapshot ms':>12} {'ratio':>7} {'queries':>8}")
    for r in results:
        print(
            f"{r['size']:>7} {r['phases']:>7} {r['baseline_ms']:>12.2f} {r['snapshot_ms']:>12.2f} "
            f"{r['ratio']:>7.1f} {r['queries']:>8}"
        )


if __name__ == "__main__":
    main()
