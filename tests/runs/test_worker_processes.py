"""Real worker processes: a killed worker's run is recovered by the lease reaper; two workers race for
one run and only one claims it; the django-q2 cluster executes a queued run (queued → first step)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from runs import services
from runs.models import ExecutionRun
from tests.factories import ProjectFactory
from tests.runs.helpers import scripted, status_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = (
    "import django; django.setup(); from runs.worker import execute_run; import sys; "
    "print(execute_run(int(sys.argv[1])), flush=True)"
)


def worker_process(run_id: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(run_id)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_killed_worker_is_recovered_by_the_lease_reaper(subprocess_env):
    # given a worker process executing a run that is inside a long command
    project = ProjectFactory(command_allowlist=["python3"])
    run = scripted(
        project, [{"run": "python3 -c 'import time; time.sleep(120)'", "timeout": 300}, {"finish": "x"}]
    )
    worker = worker_process(run.pk, {**subprocess_env, "AUTOPILOT_LEASE_SECONDS": "2"})
    children = wait_for(
        lambda: ExecutionRun.objects.values_list("child_pids", flat=True).get(pk=run.pk),
        timeout=60,
        message="the worker never started the command",
    )

    # when the worker is SIGKILLed (its agent process survives in its own session)
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    assert all(alive(pid) for pid in children)

    # then once the lease expires the reaper fails the run and kills the leftover process group
    reaped = wait_for(
        lambda: services.reap_expired_leases(), timeout=30, interval=0.2, message="nothing was reaped"
    )
    assert reaped == [run.pk]
    run.refresh_from_db()
    assert run.status == ExecutionRun.Status.FAILED
    assert run.status_reason == "worker lost: lease expired"
    assert run.lease_owner == "" and run.ended_at is not None
    wait_for(
        lambda: not any(alive(pid) for pid in children),
        timeout=10,
        message="leftover agent process still alive",
    )
    assert services.reap_expired_leases() == []


def test_two_workers_racing_for_one_run_only_one_claims(subprocess_env):
    # given one queued run and two worker processes delivered the same task
    project = ProjectFactory()
    run = scripted(project, [{"write": "x.txt", "content": "x"}, {"finish": "ok"}])
    workers = [worker_process(run.pk, subprocess_env) for _ in range(2)]

    # when both try to claim it
    outputs = sorted(w.communicate(timeout=120)[0].strip().splitlines()[-1] for w in workers)

    # then exactly one executed it
    assert outputs == ["not claimed", "succeeded"]
    assert run.steps.filter(kind="write_file").count() == 1
    assert run.project.events.filter(kind="executionrun.status", data__to="preparing").count() == 1


def test_django_q_cluster_executes_a_queued_run(subprocess_env):
    # given the runs cluster (django-q2) running as a real process
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=ROOT,
        env={**subprocess_env, "AUTOPILOT_WORKERS": "1", "Q_CLUSTER_NAME": "autopilot-runs"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        project = ProjectFactory()
        warmup = services.run_create(project=project, prompt="warm-up", agent_backend="scripted")
        wait_for(
            lambda: status_of(warmup.pk) in ExecutionRun.TERMINAL,
            timeout=90,
            message="the cluster never started",
        )
        # when a run is created the normal way (enqueued on commit) on a running cluster
        started = time.monotonic()
        run = services.run_create(project=project, prompt="demo", agent_backend="scripted")
        wait_for(
            lambda: status_of(run.pk) in ExecutionRun.TERMINAL,
            timeout=90,
            message="the cluster never finished the run",
        )
        elapsed = time.monotonic() - started
    finally:
        os.killpg(cluster.pid, signal.SIGTERM)
        try:
            cluster.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
    # then the scripted demo ran to success; report queued → first step
    run.refresh_from_db()
    assert run.status == ExecutionRun.Status.SUCCEEDED, run.status_reason
    queued_to_first = (run.first_step_at - run.queued_at).total_seconds()
    print(
        f"\nqueued → first step through a django-q2 worker: {queued_to_first:.3f}s "
        f"(run finished after {elapsed:.2f}s)"
    )
