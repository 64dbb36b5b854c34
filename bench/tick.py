"""Benchmark: one manager tick over 100 projects × N tasks with random dependency DAGs (SQLite).

For N = 100 and N = 1,000 tasks per project (each in a fresh temp data dir and database), prints:
- the time of one full tick over all projects (reconcile + readiness + start 2 runs per project;
  runs are created but not executed: enqueue=False),
- its number of SQL queries (must not grow with the number of tasks),
- the time of one hand-written SQL query selecting the ready tasks of all projects, run in the same
  process on the same data, and the ratio tick / query (target ≤ 3).

Usage: python bench/tick.py [--projects 100] [--sizes 100,1000] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

READY_SQL = """
SELECT t.id, t.project_id
FROM blueprints_task t
WHERE t.status IN ('todo', 'ready') AND t.kind = 'work'
  AND NOT EXISTS (
    SELECT 1 FROM blueprints_taskdependency d
    JOIN blueprints_task p ON p.id = d.depends_on_id
    WHERE d.task_id = t.id AND p.status <> 'done'
  )
"""


def child(projects: int, tasks: int, seed: int) -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from autopilot.manager.tick import tick_all
    from autopilot.models import Project
    from blueprints.models import Task, TaskDependency
    from runs.models import ExecutionRun

    call_command("migrate", verbosity=0, interactive=False)
    if "channels" in settings.DATABASES:  # the embedded channel layer keeps its own SQLite file
        call_command("migrate", database="channels", verbosity=0, interactive=False)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    Project.objects.bulk_create(
        [Project(name=f"bench {i}", slug=f"bench-{i}", repo_path=f"/tmp/bench-{i}", autonomy_mode="full_auto",
                 max_parallel_runs=2) for i in range(projects)],
        batch_size=500,
    )
    project_ids = list(Project.objects.order_by("pk").values_list("pk", flat=True))
    done_share = 0.3
    rows = []
    for pid in project_ids:
        for i in range(tasks):
            status = "done" if i < tasks * done_share else "todo"
            rows.append(Task(project_id=pid, title=f"task {i}", status=status, priority=rng.randint(0, 5),
                             plan_order=i, complexity=3))
    Task.objects.bulk_create(rows, batch_size=2000)
    edges = []
    for pid in project_ids:
        ids = list(Task.objects.filter(project_id=pid).order_by("plan_order").values_list("pk", flat=True))
        for i in range(1, len(ids)):
            # a random DAG: each task depends on 0–3 earlier tasks, mostly nearby ones
            for j in set(rng.randrange(max(0, i - 50), i) for _ in range(rng.randint(0, 3))):
                edges.append(TaskDependency(task_id=ids[i], depends_on_id=ids[j], source="manual"))
    TaskDependency.objects.bulk_create(edges, batch_size=5000)
    setup_s = time.perf_counter() - t0

    def hand_query() -> tuple[float, int]:
        start = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(READY_SQL)
            n = len(cursor.fetchall())
        return time.perf_counter() - start, n

    hand_query()  # warm the page cache for both contenders
    query_s, ready_rows = min(hand_query() for _ in range(3))

    def timed_tick(**kwargs):
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            report = tick_all(reason="bench", enqueue=False, **kwargs)
            return time.perf_counter() - start, len(ctx.captured_queries), report

    tick_all(reason="bench", dry_run=True)  # warm-up of the same compute (no writes)
    dry_s, dry_queries, dry_report = min((timed_tick(dry_run=True) for _ in range(3)), key=lambda r: r[0])
    tick_s, tick_queries, report = timed_tick()
    steady_s, steady_queries, _ = timed_tick()
    idle_s, idle_queries, _ = timed_tick()
    return {
        "projects": projects,
        "tasks_per_project": tasks,
        "tasks": projects * tasks,
        "dependencies": len(edges),
        "setup_s": round(setup_s, 2),
        "ready_by_hand_query": ready_rows,
        "hand_query_s": round(query_s, 4),
        "decision_tick_s": round(dry_s, 4),
        "decision_tick_queries": dry_queries,
        "decision_ratio": round(dry_s / query_s, 2) if query_s else None,
        "would_start": len(dry_report.started),
        "tick_s": round(tick_s, 4),
        "tick_queries": tick_queries,
        "tick_ratio": round(tick_s / query_s, 2) if query_s else None,
        "promoted": report.promoted,
        "started_runs": len(report.started),
        "runs_in_db": ExecutionRun.objects.count(),
        "second_tick_s": round(steady_s, 4),
        "second_tick_queries": steady_queries,
        "third_tick_s": round(idle_s, 4),
        "third_tick_queries": idle_queries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.projects, args.child, args.seed)))
        return
    results = []
    for size in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="ap-bench-tick-") as tmp:
            env = {**os.environ, "AUTOPILOT_DATA_DIR": tmp, "DJANGO_SETTINGS_MODULE": "autopilot.settings",
                   "AUTOPILOT_MAX_CONCURRENT_RUNS": "100000", "AUTOPILOT_QUEUE_MAX": "100000",
                   "AUTOPILOT_LOG_LEVEL": "WARNING"}
            for key in ("DATABASE_URL", "REDIS_URL", "AUTOPILOT_SQLITE_PATH", "AUTOPILOT_CHANNELS_SQLITE_PATH"):
                env.pop(key, None)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(size), "--projects", str(args.projects), "--seed", str(args.seed)],
                env=env, cwd=ROOT, capture_output=True, text=True, check=False,
            )
            if out.returncode != 0:
                sys.stderr.write(out.stderr)
                sys.exit(out.returncode)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("Decision tick = a full tick that only computes (readiness, ranking, capacity, decisions for every")
    print("project; no writes). Full tick = reconcile + promote + start 2 runs per project (enqueue=False).")
    print("2nd tick: every project at capacity (summaries change: one decision event each); 3rd: nothing changed.")
    print(f"{'tasks/proj':>10} {'tasks':>7} {'deps':>7} {'query s':>8} {'decide s':>9} {'q':>3} {'ratio':>6} "
          f"{'tick s':>7} {'q':>5} {'ratio':>6} {'runs':>5} {'2nd s':>6} {'q':>4} {'3rd s':>6} {'q':>4}")
    for r in results:
        print(f"{r['tasks_per_project']:>10} {r['tasks']:>7} {r['dependencies']:>7} {r['hand_query_s']:>8.4f} "
              f"{r['decision_tick_s']:>9.4f} {r['decision_tick_queries']:>3} {r['decision_ratio']:>6.2f} "
              f"{r['tick_s']:>7.3f} {r['tick_queries']:>5} {r['tick_ratio']:>6.1f} {r['started_runs']:>5} "
              f"{r['second_tick_s']:>6.3f} {r['second_tick_queries']:>4} {r['third_tick_s']:>6.3f} {r['third_tick_queries']:>4}")
    print(json.dumps(results))
    counts = {(r["decision_tick_queries"], r["tick_queries"], r["second_tick_queries"], r["third_tick_queries"]) for r in results}
    print("query counts independent of the number of tasks:", "yes" if len(counts) == 1 else f"NO {counts}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
