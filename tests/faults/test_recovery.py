"""Crash recovery with real processes: a run worker killed with SIGKILL, the whole `autopilot serve`
group killed and restarted, and a worktree root that cannot be written.

The database row is the truth: a run whose worker died is failed by the reconciler (started by serve,
every quarter lease) within two lease periods, and a queued run whose message died with its cluster
is re-enqueued within two lease periods and executed exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.models import OrmQ

from autopilot.models import Event
from runs import services
from runs.models import ExecutionRun, ExecutionStep
from tests.factories import ProjectFactory
from tests.faults.conftest import LEASE_SECONDS
from tests.runs.helpers import status_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
Status = ExecutionRun.Status
ROOT = Path(__file__).resolve().parents[2]
SLEEPER = [{"write": "started.txt", "content": "started\n"}, {"sleep": 120}, {"finish": "never reached"}]


def queue(project, script, prompt="fault test") -> ExecutionRun:
    """A run created the normal way: queued, and enqueued to the runs cluster on commit."""
    return services.run_create(
        project=project, prompt=prompt, agent_backend="scripted", run_settings={"script": script}
    )


def first_write_done(run_id: int) -> bool:
    return ExecutionStep.objects.filter(run_id=run_id, kind="write_file", status="completed").exists()


def claims(run_id: int) -> int:
    return Event.objects.filter(kind="executionrun.status", subject_id=run_id, data__to="preparing").count()


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def test_a_killed_run_worker_fails_its_run_within_two_lease_periods(fault_env, serve):
    # Given `autopilot serve` (clusters and reconciler) executing a run that sleeps mid-way
    project = ProjectFactory()
    group = serve(fault_env, "--no-web", "--workers", "1", "--control-workers", "1")
    run = queue(project, SLEEPER)
    wait_for(lambda: first_write_done(run.pk), timeout=120, interval=0.1, message="the run never started")
    run.refresh_from_db()
    assert run.status == Status.RUNNING and run.pid

    # When its worker process is killed with SIGKILL
    os.kill(run.pid, signal.SIGKILL)
    killed_at = timezone.now()

    # Then the run is failed because its lease expired, within two lease periods of the kill
    wait_for(
        lambda: status_of(run.pk) == Status.FAILED,
        timeout=60,
        interval=0.1,
        message="the run was never reaped",
    )
    run.refresh_from_db()
    assert run.status_reason == "worker lost: lease expired"
    assert run.lease_owner == "" and run.ended_at is not None
    detected = (run.ended_at - killed_at).total_seconds()
    print(f"\nkilled worker's run failed {detected:.2f} s after the kill (lease {LEASE_SECONDS} s)")
    assert detected <= 2 * LEASE_SECONDS, f"took {detected:.1f} s, more than two lease periods"
    assert claims(run.pk) == 1
    assert group.stop() == 0, group.output()


def test_killing_the_whole_serve_group_and_restarting_recovers_queued_and_running_runs_once(fault_env, serve):
    # Given serve with one run worker busy with a sleeping run, and two more runs whose messages its
    # cluster has already fetched (they wait in the cluster's memory for the busy worker)
    project = ProjectFactory()
    group = serve(fault_env, "--no-web", "--workers", "1", "--control-workers", "1")
    running = queue(project, SLEEPER, prompt="running when killed")
    wait_for(
        lambda: first_write_done(running.pk), timeout=120, interval=0.1, message="the first run never started"
    )
    queued = [
        queue(
            project, [{"write": f"q{i}.txt", "content": f"{i}\n"}, {"finish": "done"}], prompt=f"queued {i}"
        )
        for i in range(2)
    ]
    if "orm" in settings.Q_CLUSTER:
        # (the first waits in the cluster's task queue; with one worker, that holds one message)
        wait_for(
            lambda: OrmQ.objects.filter(key="autopilot-runs", lock__gt=timezone.now()).count() >= 2,
            timeout=30,
            interval=0.05,
            message="the runs cluster never fetched the queued runs' messages",
        )

    # When every process of the group is killed with SIGKILL, and serve is started again
    group.kill()
    assert [status_of(r.pk) for r in [running, *queued]] == [Status.RUNNING, Status.QUEUED, Status.QUEUED]
    group = serve(fault_env, "--no-web", "--workers", "1", "--control-workers", "1")
    wait_for(
        lambda: "reconciler: every" in group.output(), timeout=120, interval=0.1, message="no reconciler"
    )
    reconciling_since = timezone.now()

    # Then the running run is failed (its worker is gone) and both queued runs run to success
    done = lambda: all(status_of(r.pk) in ExecutionRun.TERMINAL for r in [running, *queued])  # noqa: E731
    wait_for(done, timeout=120, interval=0.1, message="the runs were not recovered")
    running.refresh_from_db()
    assert running.status == Status.FAILED and running.status_reason == "worker lost: lease expired"
    recovered = {"running": (running.ended_at - reconciling_since).total_seconds()}
    for run in queued:
        run.refresh_from_db()
        assert run.status == Status.SUCCEEDED, run.status_reason
        requeued = (
            Event.objects.filter(kind="executionrun.requeued", subject_id=run.pk).order_by("pk").first()
        )
        assert requeued is not None, f"run #{run.pk} was not re-enqueued"
        recovered[f"queued #{run.pk} re-enqueued"] = (requeued.created_at - reconciling_since).total_seconds()
        # each ran exactly once: one claim, one write step
        assert claims(run.pk) == 1
        assert run.steps.filter(kind="write_file").count() == 1
    print(f"\nrecovered after the reconciler started (s): {recovered} (lease {LEASE_SECONDS} s)")
    assert all(seconds <= 2 * LEASE_SECONDS for seconds in recovered.values()), recovered
    assert claims(running.pk) == 1 and running.steps.filter(kind="write_file").count() == 1

    # and the killed run's worktree is a consistent git worktree holding what it wrote
    worktree = running.worktree_path
    assert worktree in git("-C", project.repo_path, "worktree", "list", "--porcelain")
    assert "started.txt" in git("-C", worktree, "status", "--porcelain", "--untracked-files=all")
    assert Path(worktree, "started.txt").read_text() == "started\n"
    assert group.stop() == 0, group.output()


WORKER = (
    "import django; django.setup(); from runs.worker import execute_run; import sys; "
    "print(execute_run(int(sys.argv[1])), flush=True)"
)


def test_an_unwritable_worktree_root_fails_the_run_with_a_clear_reason(subprocess_env, tmp_path):
    # Given a worktree root that cannot be created: its parent is a regular file (root ignores
    # permission bits, so a chmod 0500 directory would not fail here; ENOTDIR fails for everyone)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file\n")
    env = {**subprocess_env, "AUTOPILOT_WORKTREE_ROOT": str(blocker / "worktrees")}
    project = ProjectFactory()
    run = services.run_create(
        project=project,
        prompt="x",
        agent_backend="scripted",
        enqueue=False,
        run_settings={"script": [{"write": "a.txt", "content": "a"}, {"finish": "ok"}]},
    )
    branches_before = git("-C", project.repo_path, "branch", "--list")

    # When a worker process executes the run
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(run.pk)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Then the run failed with a reason naming the path and the problem, and left nothing behind
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "failed"
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert run.status_reason.startswith(f"could not create the run's worktree under {blocker}"), (
        run.status_reason
    )
    assert "Not a directory" in run.status_reason
    assert run.error == "" and run.worktree_path == "" and run.lease_owner == ""
    assert git("-C", project.repo_path, "branch", "--list") == branches_before
