"""Two ticks at the same moment never start a task twice nor exceed a limit (threads and processes).

Runs on whichever database the suite uses: SQLite (file, WAL, IMMEDIATE) by default, PostgreSQL with
DATABASE_URL. Committed data (transaction=True): each thread and process has its own connection.
"""

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from autopilot.manager.tick import tick_all, tick_project
from autopilot.models import Project
from runs.models import ExecutionRun
from tests.factories import ProjectFactory
from tests.manager.conftest import make_task, set_mode

pytestmark = pytest.mark.django_db(transaction=True)


def run_threads(count: int, target) -> list:
    barrier = threading.Barrier(count)
    results, errors = [], []

    def body():
        try:
            barrier.wait(timeout=30)
            results.append(target())
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=body) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results


def assert_no_task_started_twice():
    tasks = list(ExecutionRun.objects.exclude(task=None).values_list("task_id", flat=True))
    assert len(tasks) == len(set(tasks))


def test_concurrent_ticks_in_threads_respect_the_project_limit(project):
    # Given a full-auto project allowing 3 parallel runs and 10 ready tasks
    set_mode(project, "full_auto", max_parallel_runs=3)
    for i in range(10):
        make_task(project, plan_order=i)
    # When 6 threads tick it at the same moment
    reports = run_threads(6, lambda: tick_project(Project.objects.get(pk=project.pk), reason="thread"))
    # Then exactly 3 runs exist, each for a different task, and the starts add up
    assert ExecutionRun.objects.filter(project=project).count() == 3
    assert sum(len(r.started) for r in reports) == 3
    assert_no_task_started_twice()


def test_concurrent_ticks_in_threads_respect_the_global_limit(settings):
    # Given 3 projects with room for 2 runs each, but a global limit of 4
    settings.AUTOPILOT_MAX_CONCURRENT_RUNS = 4
    projects = [ProjectFactory() for _ in range(3)]
    for p in projects:
        set_mode(p, "full_auto", max_parallel_runs=2)
        for i in range(3):
            make_task(p, plan_order=i)
    # When every project is ticked from its own thread, twice over, while full ticks run too
    counter = itertools.count(1)

    def tick():
        n = next(counter)
        if n % 3 == 0:
            return tick_all(reason="thread")
        return tick_project(projects[n % 3], reason="thread")

    run_threads(6, tick)
    # Then the global limit holds and no task has two runs
    assert ExecutionRun.objects.count() == 4
    assert_no_task_started_twice()


CHILD = """
import json, os, sys, time
import django
django.setup()
from autopilot.manager.tick import tick_project
from autopilot.models import Project
start_at = float(sys.argv[2])
while time.time() < start_at:
    time.sleep(0.005)
report = tick_project(Project.objects.get(pk=int(sys.argv[1])), reason="process")
print(json.dumps({"started": report.started}))
"""


def test_concurrent_ticks_in_two_processes_never_start_a_task_twice(project, subprocess_env):
    # Given a full-auto project allowing 4 parallel runs and 12 ready tasks
    set_mode(project, "full_auto", max_parallel_runs=4)
    for i in range(12):
        make_task(project, plan_order=i)
    env = {**subprocess_env, "AUTOPILOT_DATA_DIR": str(django_settings.DATA_DIR)}
    # When two processes tick it at the same instant (both wait for the same wall-clock moment)
    start_at = time.time() + 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(project.pk), str(start_at)],
            env=env,
            cwd=Path(django_settings.BASE_DIR),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    started = [item for out, _ in outputs for item in json.loads(out.strip().splitlines()[-1])["started"]]
    # Then 4 runs exist in total, for 4 different tasks, and the two reports agree with the table
    assert ExecutionRun.objects.filter(project=project).count() == 4
    assert len(started) == 4
    assert_no_task_started_twice()
