"""Benchmark: one manager tick over 100 projects × N tasks with random dependency DAGs (SQLite).

For N = 100 and N = 1,000 tasks per project (each in a fresh temp data dir and database), prints the
time of one hand-written SQL query selecting the ready tasks of all projects (run in the same process
on the same data) and, against it (the ratio; target ≤ 3), with each tick's number of SQL queries
(which must not grow with the number of tasks):

- decision tick: a dry run that only computes (readiness, ranking, capacity, decisions; no writes);
- cold tick: the first tick over the database as bulk-loaded behind the services' back, so every task
  is stale: it derives the readiness of all of them, promotes every to-do task whose dependencies are
  done, and starts 2 runs per project;
- full tick (THE figure): the tick a running system does after work finished. The 200 runs of the
  cold tick are taken through a worker's lifecycle (preparing, running, succeeded, outcome applied:
  their tasks are done), then one tick reconciles (re-derives the dependents those tasks made
  stale, promoting the ones now unblocked) and starts 2 new runs per project;
- idle tick: the tick after that, nothing changed (every project at capacity).

Runs are created but not executed (enqueue=False). The scenario after the decision tick changes the
data, so it runs 3 times from one snapshot of the database; the run with the median full-tick ratio
is printed (all three ratios too).

Usage: python bench/tick.py [--projects 100] [--sizes 100,1000] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
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

    from autopilot.events import flush_pushes
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
        [
            Project(
                name=f"bench {i}",
                slug=f"bench-{i}",
                repo_path=f"/tmp/bench-{i}",
                autonomy_mode="full_auto",
                max_parallel_runs=2,
            )
            for i in range(projects)
        ],
        batch_size=500,
    )
    project_ids = list(Project.objects.order_by("pk").values_list("pk", flat=True))
    done_share = 0.3
    rows = []
    for pid in project_ids:
        for i in range(tasks):
            status = "done" if i < tasks * done_share else "todo"
            rows.append(
                Task(
                    project_id=pid,
                    title=f"task {i}",
                    status=status,
                    priority=rng.randint(0, 5),
                    plan_order=i,
                    complexity=3,
                )
            )
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
        gc.collect()
        start = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(READY_SQL)
            n = len(cursor.fetchall())
        return time.perf_counter() - start, n

    hand_query()  # warm the page cache for both contenders
    query_s, ready_rows = min(hand_query() for _ in range(3))

    def timed_tick(**kwargs):
        # Event pushes go out from a background thread after commit: let the previous step's finish
        # first, so that thread's work is not counted in this tick (nor in any other).
        flush_pushes(timeout=60)
        gc.collect()  # as for the hand query: no collection of earlier garbage inside the timing
        with CaptureQueriesContext(connection) as ctx:
            start = time.perf_counter()
            report = tick_all(reason="bench", enqueue=False, **kwargs)
            return time.perf_counter() - start, len(ctx.captured_queries), report

    tick_all(reason="bench", dry_run=True)  # warm-up of the same compute (no writes)
    dry_s, dry_queries, dry_report = min((timed_tick(dry_run=True) for _ in range(3)), key=lambda r: r[0])

    def scenario() -> dict:
        cold_s, cold_queries, cold = timed_tick()
        stale = finish_runs([item["run"] for item in cold.started])
        query_after_s, ready_after = min(hand_query() for _ in range(3))
        tick_s, tick_queries, report = timed_tick()
        idle_s, idle_queries, _ = timed_tick()
        return {
            "cold_tick_s": round(cold_s, 4),
            "cold_tick_queries": cold_queries,
            "cold_ratio": round(cold_s / query_s, 2),
            "cold_promoted": cold.promoted,
            "cold_started": len(cold.started),
            "hand_query_after_s": round(query_after_s, 4),
            "ready_by_hand_query_after": ready_after,
            "tick_s": round(tick_s, 4),
            "tick_queries": tick_queries,
            "tick_ratio": round(tick_s / query_after_s, 2),
            "stale_before": stale,
            "promoted": report.promoted,
            "started_runs": len(report.started),
            "runs_in_db": ExecutionRun.objects.count(),
            "idle_tick_s": round(idle_s, 4),
            "idle_tick_queries": idle_queries,
            "idle_ratio": round(idle_s / query_after_s, 2),
        }

    # The scenario changes the data: run it 3 times from the same copy of the database file and report
    # the run with the median full-tick ratio.
    database = Path(settings.DATABASES["default"]["NAME"])
    snapshot = database.with_name("snapshot.sqlite3")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    shutil.copyfile(database, snapshot)
    runs = []
    for _ in range(3):
        connection.close()
        for leftover in (Path(f"{database}-wal"), Path(f"{database}-shm")):
            leftover.unlink(missing_ok=True)
        shutil.copyfile(snapshot, database)
        hand_query()  # warm the page cache again, as before the first scenario
        runs.append(scenario())
    scenario_result = sorted(runs, key=lambda r: r["tick_ratio"])[1]
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
        "decision_ratio": round(dry_s / query_s, 2),
        "would_start": len(dry_report.started),
        **scenario_result,
        "full_tick_ratios": [r["tick_ratio"] for r in runs],
    }


def finish_runs(run_ids: list[int]) -> int:
    """Take runs through a worker's lifecycle to success and apply their outcome (their tasks go to
    review), then accept each task (review -> done), through the services a worker and a reviewer
    call. Returns how many tasks became stale (dependents whose readiness the next tick re-derives)."""
    from django.utils import timezone

    from autopilot.manager.outcomes import apply_run_finished, apply_run_started
    from autopilot.state import transition
    from blueprints.models import Task
    from blueprints.services import task_transition
    from runs.models import ExecutionRun

    for run in ExecutionRun.objects.select_related("task").filter(pk__in=run_ids):
        transition(run, ExecutionRun.Status.PREPARING)
        transition(run, ExecutionRun.Status.RUNNING, fields={"started_at": timezone.now()})
        apply_run_started(run.pk)
        transition(run, ExecutionRun.Status.SUCCEEDED, fields={"ended_at": timezone.now()})
        apply_run_finished(run.pk)
        task_transition(task=run.task, to=Task.Status.DONE, reason="accepted in review")
    return Task.objects.filter(readiness_mark=Task.READINESS_STALE).count()


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
            env = {
                **os.environ,
                "AUTOPILOT_DATA_DIR": tmp,
                "DJANGO_SETTINGS_MODULE": "autopilot.settings",
                "AUTOPILOT_MAX_CONCURRENT_RUNS": "100000",
                "AUTOPILOT_QUEUE_MAX": "100000",
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
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(size),
                    "--projects",
                    str(args.projects),
                    "--seed",
                    str(args.seed),
                ],
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
        "Ratios against the hand-written ready-tasks query on the same data (target for the full tick: <= 3)."
    )
    print(
        "decide = dry run; cold = first tick over a bulk-loaded db (every task stale); full = the tick after"
    )
    print("200 runs finished (re-derives their dependents, starts 200 runs); idle = nothing changed since.")
    head = (
        f"{'tasks/proj':>10} {'tasks':>7} {'deps':>7} {'query s':>8} | "
        f"{'decide s':>8} {'q':>3} {'ratio':>5} | "
        f"{'cold s':>6} {'q':>3} {'ratio':>5} {'promoted':>8} | "
        f"{'full s':>6} {'q':>3} {'ratio':>5} {'runs':>4} | "
        f"{'idle s':>6} {'q':>3} {'ratio':>5}"
    )
    print(head)
    for r in results:
        print(
            f"{r['tasks_per_project']:>10} {r['tasks']:>7} {r['dependencies']:>7} "
            f"{r['hand_query_after_s']:>8.4f} | "
            f"{r['decision_tick_s']:>8.4f} {r['decision_tick_queries']:>3} {r['decision_ratio']:>5.2f} | "
            f"{r['cold_tick_s']:>6.3f} {r['cold_tick_queries']:>3} {r['cold_ratio']:>5.1f} "
            f"{r['cold_promoted']:>8} | "
            f"{r['tick_s']:>6.3f} {r['tick_queries']:>3} {r['tick_ratio']:>5.2f} {r['started_runs']:>4} | "
            f"{r['idle_tick_s']:>6.3f} {r['idle_tick_queries']:>3} {r['idle_ratio']:>5.2f}"
        )
    print(json.dumps(results))
    keys = ("decision_tick_queries", "cold_tick_queries", "tick_queries", "idle_tick_queries")
    counts = {tuple(r[k] for k in keys) for r in results}
    print("query counts independent of the number of tasks:", "yes" if len(counts) == 1 else f"NO {counts}")
    target = [r for r in results if r["tasks_per_project"] == 1000]
    verdict = bool(target) and all(r["tick_ratio"] <= 3 for r in target)
    print(
        "full tick ratios of the 3 repetitions (the median is shown):",
        "; ".join(f"{r['tasks_per_project']} tasks/proj: {r['full_tick_ratios']}" for r in results),
    )
    print(
        "full tick ratio <= 3 at 100 projects x 1,000 tasks (the target's setup): "
        f"{'OK' if verdict else 'MISSED'}"
    )
    print(
        "(At 100 tasks per project the hand query takes ~5 ms while starting 200 runs costs ~80 ms "
        "whatever the"
    )
    print(" graph's size: that ratio measures the cost of starting runs, not of the task graph.)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
