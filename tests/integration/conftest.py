"""Helpers for integration tests: task branches made with real git, as a run would leave them."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

from django.utils import timezone

from blueprints.models import Task
from runs import integration, workspace
from runs.models import ExecutionRun
from tests.factories import ExecutionRunFactory, TaskFactory
from tests.gitrepo import git

_seq = itertools.count(1)


def commit_files(
    repo: str | Path, branch: str, files: dict[str, str | None], *, start: str, message: str = ""
) -> str:
    """Create or move `branch` to a new commit on `start` with `files` written (None deletes), without
    touching any checkout (a temporary worktree). Returns the new commit."""
    path = Path(repo).parent / f"wt-{next(_seq)}-{Path(repo).name}"
    git(repo, "worktree", "add", "-q", "--detach", str(path), start)
    try:
        for name, content in files.items():
            target = path / name
            if content is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        git(path, "add", "-A")
        git(path, "commit", "-q", "--allow-empty", "-m", message or f"edit {', '.join(files)}")
        head = git(path, "rev-parse", "HEAD")
    finally:
        git(repo, "worktree", "remove", "--force", str(path))
    git(repo, "update-ref", f"refs/heads/{branch}", head)
    return head


def delivered(
    project,
    task: Task | None = None,
    files: dict[str, str | None] | None = None,
    *,
    start=None,
    **task_kwargs,
):
    """A task (made when not given) whose code run succeeded on its own branch, started from the
    integration head (or `start`), with `files` committed: what the merge queue takes."""
    task = task or TaskFactory(project=project, status=Task.Status.IN_PROGRESS, **task_kwargs)
    start = start or workspace.integration_head(project)
    branch = f"autopilot/task-{task.pk}-{next(_seq)}"
    head = commit_files(
        project.repo_path, branch, files or {f"task_{task.pk}.txt": f"task {task.pk}\n"}, start=start
    )
    run = ExecutionRunFactory(
        project=project,
        task=task,
        status=ExecutionRun.Status.SUCCEEDED,
        branch=branch,
        head_commit=head,
        base_commit=start,
        start_ref=project.integration_branch,
        ended_at=timezone.now(),
    )
    return task, run


def queued(project, files=None, **kwargs):
    """A delivered task moved to integrating with its branch queued."""
    task, run = delivered(project, files=files, **kwargs)
    return integration.queue_for(task, run, reason="test"), task, run


def branch_head(project, branch: str | None = None) -> str | None:
    return workspace.ref_commit(project.repo_path, branch or project.integration_branch)


def show(project, ref: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", project.repo_path, "show", f"{ref}:{path}"], capture_output=True, text=True, check=True
    ).stdout


def first_parents(project, ref: str | None = None) -> list[str]:
    return git(project.repo_path, "rev-list", "--first-parent", ref or project.integration_branch).split()
