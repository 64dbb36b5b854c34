"""A scripted run executed by the real worker code, in a real git worktree."""

from __future__ import annotations

import pytest

from runs import services
from runs.models import ExecutionRun, ExecutionStep
from runs.worker import execute_run
from tests.factories import TaskFactory
from tests.gitrepo import git

pytestmark = pytest.mark.django_db(transaction=True)


def test_scripted_run_writes_runs_and_commits_on_its_branch_only(project):
    # given a project on a real repository and a scripted run that writes a file and runs a command
    base_before = git(project.repo_path, "rev-parse", "main")
    script = [
        {"write": "hello.txt", "content": "hello\n"},
        {"run": "cat hello.txt"},
        {"finish": "wrote hello"},
    ]
    run = services.run_create(
        project=project, prompt="say hello", run_settings={"script": script}, enqueue=False
    )

    # when the worker executes it
    assert execute_run(run.pk) == "succeeded"

    # then the change is committed on the run's branch, and the base branch is untouched
    run.refresh_from_db()
    assert run.status == ExecutionRun.Status.SUCCEEDED
    assert run.branch == f"autopilot/run-{run.pk}"
    assert git(project.repo_path, "rev-parse", "main") == base_before
    assert run.base_commit == base_before
    assert git(project.repo_path, "show", f"{run.branch}:hello.txt") == "hello"
    assert "hello.txt" not in git(project.repo_path, "ls-tree", "--name-only", "main")
    assert git(project.repo_path, "status", "--porcelain") == ""
    assert (
        git(project.repo_path, "log", "-1", "--format=%s", run.branch)
        == f"autopilot: say hello (run #{run.pk})"
    )
    assert run.diff_summary == {
        "files": [{"path": "hello.txt", "added": 1, "removed": 0}],
        "added": 1,
        "removed": 0,
    }
    steps = list(run.steps.order_by("seq"))
    assert [s.kind for s in steps] == ["write_file", "run_terminal", "finish", "commit"]
    assert [s.seq for s in steps] == [1, 2, 3, 4]
    assert steps[0].diff.startswith("--- /dev/null\n+++ b/hello.txt")
    assert steps[0].rollback == {"path": "hello.txt", "before_b64": None, "absent": True}
    assert "hello" in steps[1].output and steps[1].status == ExecutionStep.Status.COMPLETED
    assert run.first_step_at is not None and run.started_at is not None and run.ended_at is not None
    assert run.lease_owner == "" and run.head_commit == git(project.repo_path, "rev-parse", run.branch)


def test_duplicate_delivery_does_nothing(project):
    # given a run that already ran
    run = services.run_create(
        project=project, prompt="x", run_settings={"script": [{"finish": "ok"}]}, enqueue=False
    )
    execute_run(run.pk)
    steps = ExecutionStep.objects.filter(run=run).count()

    # when the queue delivers it again
    outcome = execute_run(run.pk)

    # then nothing happens
    assert outcome == "not claimed"
    assert ExecutionStep.objects.filter(run=run).count() == steps


def test_a_task_section_with_a_scripted_block_is_the_script(project):
    # given a task whose body is a spec section ending with a ```scripted block of actions
    task = TaskFactory(
        project=project,
        body='## Greeting\n\nWrite hello.txt.\n\n```scripted\n[{"write": "hello.txt", "content": "hi\\n"},\n'
        '{"finish": "greeted"}]\n```\n\nMore prose after the block.\n',
    )
    run = services.run_create(project=project, task=task, prompt="Implement it.", enqueue=False)

    # when the worker executes the task's run
    assert execute_run(run.pk) == "succeeded"

    # then the block's actions ran (not the notes filler)
    run.refresh_from_db()
    assert run.result_summary == "greeted"
    assert git(project.repo_path, "show", f"{run.branch}:hello.txt") == "hi"
    assert "AUTOPILOT_NOTES.md" not in git(project.repo_path, "ls-tree", "--name-only", run.branch)


@pytest.mark.parametrize(
    ("block", "error"),
    [
        ("[{]", "The task's script does not parse"),
        ('{"write": "x"}', "must be a list of one-key action objects"),
    ],
)
def test_a_bad_scripted_block_fails_the_run_with_a_clear_error(project, block, error):
    # given a task whose ```scripted block is not a list of actions
    task = TaskFactory(project=project, body=f"## Broken\n\n```scripted\n{block}\n```\n")
    run = services.run_create(project=project, task=task, prompt="Implement it.", enqueue=False)

    # when the worker executes it, then the run fails saying what is wrong, and wrote nothing
    assert execute_run(run.pk) == "failed"
    run.refresh_from_db()
    assert error in run.status_reason
    assert not ExecutionStep.objects.filter(run=run, kind="write_file").exists()


def test_a_follow_up_run_of_the_task_follows_its_follow_up_block(project):
    # given a task with a first-run script and a follow-up script, and its first run done
    task = TaskFactory(
        project=project,
        body='## Two passes\n\n```scripted\n[{"write": "a.txt", "content": "first\\n"}]\n```\n\n'
        '```scripted follow-up\n[{"write": "b.txt", "content": "again\\n"}]\n```\n',
    )
    first = services.run_create(project=project, task=task, prompt="Implement it.", enqueue=False)
    assert execute_run(first.pk) == "succeeded"

    # when a retry of it runs
    retry = services.run_create(
        project=project, task=task, prompt="Implement it.", retry_of=first, attempt=2, enqueue=False
    )
    assert execute_run(retry.pk) == "succeeded"

    # then the first run followed the first block and the retry the follow-up block
    first.refresh_from_db()
    retry.refresh_from_db()
    assert [s.input["path"] for s in first.steps.filter(kind="write_file")] == ["a.txt"]
    assert [s.input["path"] for s in retry.steps.filter(kind="write_file")] == ["b.txt"]
