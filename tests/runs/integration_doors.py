"""A project with a real merge queue for the door tests (API, CLI, pages): task branches made with real
git as a run leaves them, queued and merged by runs.integration itself."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from django.utils import timezone

from blueprints.models import Task
from runs import integration, workspace
from runs.models import ExecutionRun, Integration
from tests.factories import ExecutionRunFactory, MembershipFactory, ProjectFactory, TaskFactory, UserFactory
from tests.gitrepo import git

_seq = itertools.count(1)


def commit_on(repo: str, branch: str, files: dict[str, str], *, start: str, message: str) -> str:
    """Point `branch` at a new commit on `start` with `files` written (a temporary worktree)."""
    path = Path(repo).parent / f"doors-wt-{next(_seq)}-{Path(repo).name}"
    git(repo, "worktree", "add", "-q", "--detach", str(path), start)
    try:
        for name, text in files.items():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            (path / name).write_text(text)
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", message)
        head = git(path, "rev-parse", "HEAD")
    finally:
        git(repo, "worktree", "remove", "--force", str(path))
    git(repo, "update-ref", f"refs/heads/{branch}", head)
    return head


def deliver(project, title: str, files: dict[str, str], *, status=Task.Status.IN_PROGRESS, start=None):
    """A task whose code run succeeded on its own branch (started from the integration head)."""
    task = TaskFactory(project=project, title=title, status=status, body=f"Implement {title}.")
    start = start or workspace.integration_head(project)
    branch = f"autopilot/{title.lower().replace(' ', '-')}-{task.pk}"
    head = commit_on(project.repo_path, branch, files, start=start, message=title)
    run = ExecutionRunFactory(
        project=project,
        task=task,
        status=ExecutionRun.Status.SUCCEEDED,
        branch=branch,
        head_commit=head,
        base_commit=start,
        start_ref=project.integration_branch,
        result_summary=f"Did {title}.",
        ended_at=timezone.now(),
    )
    return task, run


@dataclass
class Queue:
    project: object
    users: dict
    merged: Integration
    conflict: Integration
    queued: Integration
    review_task: Task


def build_queue() -> Queue:
    """One merged task, one conflict waiting (same lines, same start), one still queued, and one task
    in review (not queued): every state the doors show."""
    project = ProjectFactory(conflict_policy="human", review_required=False)
    users = {"non-member": UserFactory()}
    for role in ("viewer", "operator", "owner"):
        users[role] = MembershipFactory(project=project, role=role).user
    start = workspace.integration_head(project)
    task_a, run_a = deliver(project, "Add", {"calc.py": "def add(a, b):\n    return a + b\n"}, start=start)
    task_b, run_b = deliver(project, "Sub", {"calc.py": "def sub(a, b):\n    return a - b\n"}, start=start)
    merged = integration.queue_for(task_a, run_a, reason="test")
    conflict = integration.queue_for(task_b, run_b, reason="test")
    integration.process_queue(project.pk, owner="doors-test")
    integration.process_queue(project.pk, owner="doors-test")
    task_c, run_c = deliver(project, "Mul", {"mul.py": "def mul(a, b):\n    return a * b\n"})
    queued = integration.queue_for(task_c, run_c, reason="test")
    review_task, _ = deliver(
        project, "Div", {"div.py": "def div(a, b):\n    return a / b\n"}, status="review"
    )
    for item in (merged, conflict, queued):
        item.refresh_from_db()
    assert (merged.status, conflict.status, queued.status) == ("merged", "conflict", "queued"), (
        merged.status_reason,
        conflict.status_reason,
    )
    return Queue(project, users, merged, conflict, queued, review_task)
