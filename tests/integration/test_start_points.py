"""Where a run's branch starts (runs.workspace.start_point), with real runs of the scripted backend:
a task's first run from the integration head, a follow-up from the task's own branch brought up to
date, a rejected task afresh, an ad-hoc run from the base branch or its validated `from_ref`."""

from __future__ import annotations

import pytest

from autopilot.errors import ApplicationError
from autopilot.models import Event
from blueprints.models import Task
from runs import integration, services, workspace
from runs.models import ExecutionRun, TaskReview
from runs.worker import execute_run
from tests.factories import TaskFactory
from tests.gitrepo import git
from tests.integration.conftest import branch_head, commit_files, show
from tests.runs.helpers import run_now

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_tasks_first_run_starts_from_the_integration_head_created_from_the_base(project):
    base = workspace.base_commit_of(project)
    task = TaskFactory(project=project)
    run = run_now(project, [{"write": "a.txt", "content": "a\n"}], task=task)
    assert run.status == "succeeded"
    assert run.start_ref == "autopilot/integration" and run.base_commit == base
    assert branch_head(project) == base  # created, and never written by the run
    # once something is integrated, the next task starts on top of it
    commit_files(project.repo_path, "autopilot/integration", {"lib.py": "LIB\n"}, start=base)
    other = run_now(project, [{"read": "lib.py"}], task=TaskFactory(project=project))
    assert other.base_commit == branch_head(project)


def test_a_follow_up_continues_the_tasks_branch_brought_up_to_date(project):
    task = TaskFactory(project=project)
    first = run_now(project, [{"write": "mine.txt", "content": "mine\n"}], task=task)
    integrated = commit_files(
        project.repo_path, "autopilot/integration", {"theirs.txt": "theirs\n"}, start=branch_head(project)
    )
    second = run_now(project, [{"read": "mine.txt"}, {"read": "theirs.txt"}], task=task)
    assert second.status == "succeeded" and second.start_ref == first.branch
    assert second.branch != first.branch
    # the branch holds the first run's work and the integration head (merged in before the agent ran)
    for ancestor in (first.head_commit, integrated):
        assert git(project.repo_path, "merge-base", "--is-ancestor", ancestor, second.base_commit) == ""
    assert show(project, second.base_commit, "mine.txt") == "mine\n"


def test_a_conflicting_follow_up_starts_without_markers_and_records_the_conflict(project):
    task = TaskFactory(project=project)
    first = run_now(project, [{"write": "README.md", "content": "# Demo\nmine\n"}], task=task)
    integrated = commit_files(
        project.repo_path,
        "autopilot/integration",
        {"README.md": "# Demo\ntheirs\n"},
        start=branch_head(project),
    )
    second = run_now(project, [{"read": "README.md"}], task=task)
    # the merge was aborted and redone keeping the task's side: no conflict markers, integration head in
    text = show(project, second.base_commit, "README.md")
    assert text == "# Demo\nmine\n" and "<<<<<<<" not in text
    assert git(project.repo_path, "merge-base", "--is-ancestor", integrated, second.base_commit) == ""
    event = Event.objects.get(kind="executionrun.start_conflict", subject_id=second.pk)
    assert event.data["files"] == ["README.md"] and event.data["onto"] == integrated
    assert "theirs" in event.data["detail"] and "mine" in event.data["detail"]
    assert first.branch == second.start_ref


def test_after_a_rejection_the_next_run_starts_afresh(project):
    task = TaskFactory(project=project, status=Task.Status.IN_PROGRESS)
    first = run_now(project, [{"write": "bad.txt", "content": "bad\n"}], task=task)
    Task.objects.filter(pk=task.pk).update(status=Task.Status.REVIEW)
    integration.review(task, actor=None, decision=TaskReview.Decision.REJECTED, comment="wrong approach")
    second = run_now(project, [{"list": "."}], task=task)
    assert second.start_ref == "autopilot/integration" and second.base_commit == branch_head(project)
    assert first.branch != second.start_ref


def test_an_ad_hoc_run_starts_from_the_base_branch_or_its_from_ref(project):
    base = workspace.base_commit_of(project)
    plain = run_now(project, [{"list": "."}])
    assert (plain.start_ref, plain.base_commit) == ("main", base)
    feature = commit_files(project.repo_path, "feature/x", {"x.txt": "x\n"}, start=base)
    run = services.run_create(
        project=project,
        prompt='[{"read": "x.txt"}]',
        agent_backend="scripted",
        from_ref="feature/x",
        enqueue=False,
    )
    assert run.settings["from_ref"] == "feature/x"
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded" and (run.start_ref, run.base_commit) == ("feature/x", feature)
    assert workspace.ref_commit(project.repo_path, "feature/x") == feature  # its own branch, not feature/x


@pytest.mark.parametrize(
    ("from_ref", "message"),
    [
        ("--upload-pack=touch /tmp/x", "not a valid"),
        ("../../etc", "not a valid"),
        ("refs/heads/main", "not a valid"),
        ("HEAD~1", "not a valid"),
        ("no-such-branch", "no local branch 'no-such-branch'"),
        (42, "name of a local branch"),
    ],
)
def test_a_bad_from_ref_is_refused_before_anything_is_written(project, from_ref, message):
    with pytest.raises(ApplicationError, match=message):
        services.run_create(
            project=project, prompt="x", agent_backend="scripted", from_ref=from_ref, enqueue=False
        )
    with pytest.raises(ApplicationError, match=message):
        services.run_create(
            project=project,
            prompt="x",
            agent_backend="scripted",
            run_settings={"from_ref": from_ref},
            enqueue=False,
        )
    assert not ExecutionRun.objects.exists()


def test_from_ref_is_only_for_runs_without_a_task(project):
    with pytest.raises(ApplicationError, match="only for runs without a task"):
        services.run_create(
            project=project, prompt="x", task=TaskFactory(project=project), from_ref="main", enqueue=False
        )
