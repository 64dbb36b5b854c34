"""The read side of integration (runs.integration_selectors) on a real repository: the queue with
positions, the merge in flight, recent merges, what waits, the integration branch against the base,
a task's integration, the PR body and the diff."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from runs import integration_selectors as sel
from runs.models import ExecutionRun, Integration, TaskReview
from tests.factories import (
    BlueprintFactory,
    ExecutionRunFactory,
    IntegrationFactory,
    PlanNodeFactory,
    ProjectFactory,
    TaskFactory,
    UserFactory,
)
from tests.gitrepo import git

pytestmark = pytest.mark.django_db
S = Integration.Status


def _commit(repo: str, name: str, text: str, message: str) -> str:
    (Path(repo) / name).parent.mkdir(parents=True, exist_ok=True)
    (Path(repo) / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def project():
    project = ProjectFactory(test_command="python -m pytest -q")
    repo = project.repo_path
    git(repo, "checkout", "-q", "-b", "autopilot/integration")
    _commit(repo, "calc/add.py", "def add(a, b):\n    return a + b\n", "Add add()")
    _commit(repo, "calc/mul.py", "def mul(a, b):\n    return a * b\n", "Add mul()")
    git(repo, "checkout", "-q", "main")
    _commit(repo, "NOTES.md", "base moved\n", "Base moves on")
    return project


def test_queue_status_positions_in_flight_recent_waiting_and_head(project):
    now = timezone.now()
    first = IntegrationFactory(project=project, status=S.QUEUED)
    second = IntegrationFactory(project=project, status=S.QUEUED)
    Integration.objects.filter(pk=first.pk).update(queued_at=now - timedelta(minutes=5))
    Integration.objects.filter(pk=second.pk).update(queued_at=now - timedelta(minutes=9))
    flying = IntegrationFactory(project=project, status=S.TESTING, test_output="collected 3 items\n..")
    merged = IntegrationFactory(
        project=project, status=S.MERGED, tests_passed=True, merge_commit="a" * 40, finished_at=now
    )
    IntegrationFactory(
        project=project, status=S.MERGED, tests_passed=True, finished_at=now - timedelta(days=1)
    )
    conflict = IntegrationFactory(
        project=project, status=S.CONFLICT, conflict_files=["calc/add.py"], finished_at=now
    )
    superseded = IntegrationFactory(project=project, status=S.TESTS_FAILED)
    IntegrationFactory(project=project, task=superseded.task, status=S.SKIPPED)  # newer for the same task
    IntegrationFactory(status=S.QUEUED)  # another project's

    status = sel.queue_status(project)
    assert [(i.pk, i.position) for i in status.queue] == [(second.pk, 1), (first.pk, 2)]
    assert status.in_flight.pk == flying.pk and "collected 3 items" in status.in_flight.test_output
    assert status.recent[0].pk == merged.pk and len(status.recent) == 2
    assert [i.pk for i in status.waiting] == [conflict.pk]
    assert status.counts == {"queued": 2, "in_flight": 1, "waiting": 1}

    head = status.head
    assert head.exists and not head.problem
    assert (head.ahead, head.behind) == (2, 1)
    assert [c["subject"] for c in head.commits] == ["Add mul()", "Add add()"]
    assert head.integration_head == git(project.repo_path, "rev-parse", "autopilot/integration")
    assert head.diff_stat == {
        "files": [
            {"path": "calc/add.py", "added": 2, "removed": 0},
            {"path": "calc/mul.py", "added": 2, "removed": 0},
        ],
        "added": 4,
        "removed": 0,
    }


def test_head_problems_never_raise(project, tmp_path):
    project.integration_branch = "autopilot/not-yet"
    head = sel.compare_branches(project)
    assert not head.exists and "does not exist yet" in head.problem
    project.base_branch = "gone"
    assert "base branch 'gone' does not exist" in sel.compare_branches(project).problem
    project.repo_path = str(tmp_path / "missing")
    assert not sel.compare_branches(project).exists
    # Integrating straight into the base: nothing ahead, no diff.
    fresh = ProjectFactory(integration_branch="main")
    head = sel.compare_branches(fresh)
    assert head.exists and head.ahead == 0 and head.diff_stat["files"] == []


def test_integration_diff_is_the_three_dot_diff_redacted_and_capped(project):
    git(project.repo_path, "checkout", "-q", "autopilot/integration")
    _commit(
        project.repo_path,
        "conf.py",
        'API_KEY = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789"\n',
        "conf",
    )
    git(project.repo_path, "checkout", "-q", "main")
    text, truncated, problem = sel.integration_diff(project)
    assert not problem and not truncated
    assert (
        "+def mul(a, b):" in text and "NOTES.md" not in text
    )  # base...integration: the base's own change is not in it
    assert "sk-ant-api03" not in text and "[REDACTED" in text
    short, truncated, _ = sel.integration_diff(project, max_bytes=50)
    assert truncated and len(short) <= 60
    project.integration_branch = "nope"
    assert sel.integration_diff(project)[2]


def test_task_integration_and_pr_body(project):
    source = "# Calculator\n\n## Multiplication\n\nThe calculator multiplies two numbers.\n"
    blueprint = BlueprintFactory(project=project, source_text=source)
    start = source.index("## Multiplication")
    node = PlanNodeFactory(
        blueprint=blueprint, title="Multiplication", anchor="multiplication", start=start, end=len(source)
    )
    task = TaskFactory(
        project=project, title="Multiply", body="Write mul(a, b) with tests.", plan_node=node, status="done"
    )
    run = ExecutionRunFactory(
        project=project,
        task=task,
        status=ExecutionRun.Status.SUCCEEDED,
        branch="autopilot/multiply-7",
        start_ref="autopilot/integration",
        base_commit="b" * 40,
        result_summary="Added mul() and its unit test.",
        diff_summary={"files": [{"path": "calc/mul.py", "added": 2, "removed": 0}], "added": 2, "removed": 0},
        cost_usd=Decimal("0.1234"),
    )
    ExecutionRunFactory(
        project=project, task=task, status=ExecutionRun.Status.FAILED, cost_usd=Decimal("0.0100")
    )
    merged = IntegrationFactory(
        project=project,
        task=task,
        run=run,
        branch=run.branch,
        status=S.MERGED,
        merge_commit="c" * 40,
        tests_passed=True,
        test_command="python -m pytest -q",
        test_output="3 passed in 0.01s\n",
    )
    reviewer = UserFactory(username="reviewer")
    TaskReview.objects.create(task=task, run=run, decision="approved", author=reviewer)

    info = sel.task_integration(task)
    assert (info.branch, info.start_ref, info.start_commit) == (
        "autopilot/multiply-7",
        "autopilot/integration",
        "b" * 40,
    )
    assert (info.merge_state, info.merge_commit, info.latest.pk) == ("merged", "c" * 40, merged.pk)
    assert len(info.runs) == 2 and info.reviews[0].decision == "approved"
    assert not info.can_review

    body = sel.pr_body(task)
    assert body.startswith("# Multiply\n")
    assert "Write mul(a, b) with tests." in body
    assert "## Spec section" in body and "Multiplication (#multiplication)" in body
    assert "Added mul() and its unit test." in body
    assert "| `calc/mul.py` | 2 | 0 |" in body
    assert "Integration tests passed (`python -m pytest -q`)" in body and "3 passed" in body
    assert "$0.1334 over 2 run(s); merged as `cccccccccccc`" in body
    assert "approved by reviewer" in body


def test_pr_body_of_a_task_with_nothing_yet_and_secrets_redacted():
    task = TaskFactory(title="Fresh", body="token ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa here")
    body = sel.pr_body(task)
    assert "# Fresh" in body and "no run of this task has succeeded yet" in body
    assert "ghp_aaaa" not in body and "[REDACTED" in body
    assert "_(no changes recorded)_" in body and "The project has no test command." in body
