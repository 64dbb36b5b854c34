"""Faults of the merge queue on real git, real processes and threads, on the suite's database
(SQLite by default, PostgreSQL with DATABASE_URL): the integration branch deleted or moved behind
Autopilot's back, the base branch force-pushed, a dirty or missing integration worktree, a worker
SIGKILLed in the middle of the integration tests, several workers racing for one project's queue."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from autopilot.models import Event, Project
from blueprints.models import Task
from runs import integration, workspace
from runs.models import Integration
from tests.factories import ProjectFactory
from tests.gitrepo import git
from tests.integration.conftest import branch_head, commit_files, first_parents, queued, show

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
OWNER = "test-host:1:faults"


def wait_until(predicate, *, timeout: float = 60, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(message)


def settings_of(project, **values) -> Project:
    Project.objects.filter(pk=project.pk).update(**values)
    project.refresh_from_db()
    return project


def test_a_deleted_integration_branch_is_recreated_at_the_last_merge_nothing_integrated_is_lost(project):
    first, _, _ = queued(project, {"a.py": "A\n"})
    merged = integration.process_queue(project.pk, owner=OWNER)
    git(project.repo_path, "branch", "-D", "autopilot/integration")
    second, _, _ = queued(project, {"b.py": "B\n"}, start=workspace.base_commit_of(project))
    done = integration.process_queue(project.pk, owner=OWNER)
    assert done.status == Integration.Status.MERGED
    assert done.onto_commit == merged.merge_commit != workspace.base_commit_of(project)
    assert show(project, branch_head(project), "a.py") == "A\n"
    assert show(project, branch_head(project), "b.py") == "B\n"
    event = Event.objects.filter(kind="integration.branch_created").latest("pk")
    assert event.data["at"] == merged.merge_commit and event.data["from"] == "the last merge"


def test_a_deleted_integration_branch_whose_last_merge_is_gone_starts_again_from_the_base(project):
    queued(project, {"a.py": "A\n"})
    merged = integration.process_queue(project.pk, owner=OWNER)
    git(project.repo_path, "branch", "-D", "autopilot/integration")
    Integration.objects.filter(pk=merged.pk).update(merge_commit="f" * 40)  # not in the repository
    queued(project, {"b.py": "B\n"}, start=workspace.base_commit_of(project))
    done = integration.process_queue(project.pk, owner=OWNER)
    assert done.status == Integration.Status.MERGED
    assert done.onto_commit == workspace.base_commit_of(project)


def test_a_branch_moved_during_the_tests_is_never_clobbered_the_merge_is_redone(project):
    # Given a merge whose integration tests take a moment
    settings_of(project, test_command="sleep 2")
    item, _, _ = queued(project, {"a.py": "A\n"})
    result = {}

    def worker():
        try:
            result["done"] = integration.process_queue(project.pk, owner=OWNER)
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    # When someone commits on the integration branch while the tests run
    wait_until(
        lambda: Integration.objects.filter(pk=item.pk, status="testing").exists(), message="never tested"
    )
    onto = branch_head(project)
    moved = commit_files(project.repo_path, "autopilot/integration", {"hotfix.py": "FIX\n"}, start=onto)
    thread.join(120)
    # Then the compare-and-swap refused the stale result and the merge was redone on the new head
    done = result["done"]
    assert done.status == Integration.Status.MERGED and done.onto_commit == moved
    head = branch_head(project)
    assert git(project.repo_path, "merge-base", "--is-ancestor", moved, head) == ""  # kept
    assert show(project, head, "hotfix.py") == "FIX\n" and show(project, head, "a.py") == "A\n"
    assert Event.objects.filter(kind="integration.branch_moved", subject_id=item.pk).exists()
    statuses = [
        e["to"]
        for e in Event.objects.filter(kind="integration.status", subject_id=item.pk)
        .order_by("pk")
        .values_list("data", flat=True)
    ]
    assert statuses == ["merging", "testing", "queued", "merging", "testing", "merged"]


def test_a_force_pushed_base_branch_does_not_disturb_the_integration_branch(project):
    first, _, _ = queued(project, {"a.py": "A\n"})
    integration.process_queue(project.pk, owner=OWNER)
    integrated = branch_head(project)
    # the base branch is rewritten (a new root commit, as after a force-push)
    tree = git(project.repo_path, "rev-parse", "HEAD^{tree}")
    rewritten = git(project.repo_path, "commit-tree", tree, "-m", "rewritten history")
    git(project.repo_path, "update-ref", "refs/heads/main", rewritten)
    second, task, _ = queued(project, {"b.py": "B\n"})
    done = integration.process_queue(project.pk, owner=OWNER)
    assert done.status == Integration.Status.MERGED and done.onto_commit == integrated
    assert workspace.ref_commit(project.repo_path, "main") == rewritten  # never written by Autopilot


@pytest.mark.parametrize("damage", ["dirty", "nested-repository", "missing", "mid-merge", "mid-rebase"])
def test_a_dirty_or_missing_integration_worktree_is_recreated(project, damage):
    queued(project, {"a.py": "A\n"})
    integration.process_queue(project.pk, owner=OWNER)
    path = integration.worktree_path(project)
    if damage == "dirty":
        (path / "README.md").write_text("scribbled on\n")
        (path / "stray.txt").write_text("left behind\n")
    elif damage == "nested-repository":  # `git clean -fd` alone leaves an untracked nested repository
        subprocess.run(["git", "init", "-q", str(path / "nested")], check=True)
        (path / "nested" / "stray.txt").write_text("left behind\n")
    elif damage == "missing":
        shutil.rmtree(path)
    elif damage == "mid-rebase":  # a rebase left half-way
        gitdir = Path(git(path, "rev-parse", "--absolute-git-dir"))
        (gitdir / "rebase-merge").mkdir()
    else:  # a merge left half-way (a crash between merge and reset)
        commit_files(project.repo_path, "side", {"README.md": "side\n"}, start=branch_head(project))
        subprocess.run(["git", "-C", str(path), "merge", "--no-edit", "side"], capture_output=True)
        (path / "README.md").write_text("<<<<<<< conflict\n")
    second, _, _ = queued(project, {"b.py": "B\n"})
    done = integration.process_queue(project.pk, owner=OWNER)
    assert done.status == Integration.Status.MERGED
    files = git(project.repo_path, "ls-tree", "--name-only", done.merge_commit).split()
    assert "stray.txt" not in files and "nested" not in files
    assert show(project, done.merge_commit, "README.md") == "# Demo\n"
    assert not workspace.changed(path) and not (path / "nested").exists()


PROCESS_QUEUE = (
    "import django, sys; django.setup(); from runs.integration import process_queue; "
    "print(process_queue(int(sys.argv[1]), owner=sys.argv[2]), flush=True)"
)


def test_a_worker_killed_during_the_tests_leaves_the_branch_and_the_merge_completes_once(subprocess_env):
    # Given a merge whose integration tests block while a marker file exists in their HOME
    project = ProjectFactory(test_command='if [ -e "$HOME/slow" ]; then sleep 300; fi; echo tests-ok')
    home = Path(settings.DATA_DIR) / "integration-homes" / project.slug
    home.mkdir(parents=True, exist_ok=True)
    (home / "slow").write_text("")
    item, task, _ = queued(project, {"a.py": "A\n"})
    before = workspace.integration_head(project)
    worker = subprocess.Popen(
        [sys.executable, "-c", PROCESS_QUEUE, str(project.pk), "doomed:1:worker"],
        cwd=ROOT,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: Integration.objects.filter(pk=item.pk, status="testing").exists(),
            timeout=120,
            message="the worker never started the tests",
        )
        # When the worker (and its test command: the whole session) is SIGKILLed mid-test
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(30)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)
    # Then the integration branch is where it was, and the merge stays in flight until its lease expires
    assert branch_head(project) == before
    assert integration.process_queue(project.pk, owner=OWNER) is None
    (home / "slow").unlink()
    Integration.objects.filter(pk=item.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    # When a worker looks again, the expired merge is released, redone and merged exactly once
    done = integration.process_queue(project.pk, owner=OWNER)
    assert done.pk == item.pk and done.status == Integration.Status.MERGED and "tests-ok" in done.test_output
    assert first_parents(project)[:2] == [done.merge_commit, before]
    assert Integration.objects.filter(task=task, status="merged").count() == 1
    reasons = list(
        Event.objects.filter(kind="integration.status", subject_id=item.pk, data__to="queued").values_list(
            "data", flat=True
        )
    )
    assert len(reasons) == 1 and "lease expired" in reasons[0]["reason"]
    assert integration.process_queue(project.pk, owner=OWNER) is None


def test_workers_racing_for_one_project_merge_one_at_a_time_into_a_linear_complete_history(project):
    # Given six tasks with branches queued (each its own file) and integration tests that take a moment
    settings_of(project, test_command="sleep 0.2")
    items = [queued(project, {f"f{i}.py": f"{i}\n"})[0] for i in range(6)]
    base = branch_head(project)
    barrier = threading.Barrier(4)
    errors = []

    def worker(n: int):
        try:
            barrier.wait(30)
            integration.drain(project.pk, owner=f"host:{n}:racer")
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    # When four workers drain the queue at once (and a fifth keeps going until it is empty)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    integration.drain(project.pk, owner="host:9:last")
    # Then every item merged exactly once, each onto the previous one's result: one at a time
    merged = list(Integration.objects.filter(project=project).order_by("finished_at", "pk"))
    assert {i.pk for i in merged} == {i.pk for i in items}
    assert all(i.status == Integration.Status.MERGED for i in merged)
    chain = [base] + [i.merge_commit for i in merged]
    assert [i.onto_commit for i in merged] == chain[:-1]
    # and the integration branch's history is linear in merges and complete
    assert first_parents(project)[: len(items) + 1] == list(reversed(chain))
    head = branch_head(project)
    assert all(show(project, head, f"f{i}.py") == f"{i}\n" for i in range(6))
    assert set(Task.objects.filter(project=project).values_list("status", flat=True)) == {"done"}
