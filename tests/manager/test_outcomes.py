import pytest
from django.utils import timezone
from django_q.models import OrmQ

from autopilot.manager import listeners as hooks
from autopilot.manager.models import FileStat
from autopilot.manager.requests import request_tick
from autopilot.manager.tick import tick_project
from autopilot.models import Event, Project
from blueprints.models import Task
from runs.models import ExecutionRun
from tests.factories import BlueprintFactory, ExecutionRunFactory, ExecutionStepFactory, PlanNodeFactory
from tests.manager.conftest import make_task, set_mode

pytestmark = pytest.mark.django_db


def finished_run(project, task, status, **kwargs):
    return ExecutionRunFactory(project=project, task=task, status=status, ended_at=timezone.now(), **kwargs)


def test_run_start_moves_the_task_in_progress(project):
    task = make_task(project)
    run = ExecutionRunFactory(project=project, task=task, status="running")
    hooks.on_run_started(run.pk)
    task.refresh_from_db()
    assert task.status == Task.Status.IN_PROGRESS and task.started_at is not None and task.rework_count == 0


def test_success_sends_the_task_to_review_and_counts_files(project):
    task = make_task(project, status=Task.Status.IN_PROGRESS)
    run = finished_run(
        project, task, "succeeded", diff_summary={"files": [{"path": "app.py", "added": 3, "removed": 1}]}
    )
    hooks.on_run_finished(run.pk)
    task.refresh_from_db()
    assert task.status == Task.Status.REVIEW and task.attempts == 1
    assert FileStat.objects.get(project=project, path="app.py").runs == 1


def test_success_with_passing_tests_completes_the_task_when_the_project_says_so(project):
    set_mode(project, "full_auto", auto_complete_on_tests=True)
    task = make_task(project, status=Task.Status.IN_PROGRESS, started_at=timezone.now())
    run = finished_run(project, task, "succeeded")
    ExecutionStepFactory(run=run, kind="test", status="completed")
    hooks.on_run_finished(run.pk)
    task.refresh_from_db()
    assert task.status == Task.Status.DONE and task.completed_at is not None


def test_success_with_failing_tests_stays_in_review(project):
    set_mode(project, "full_auto", auto_complete_on_tests=True)
    task = make_task(project, status=Task.Status.IN_PROGRESS)
    run = finished_run(project, task, "succeeded")
    ExecutionStepFactory(run=run, kind="test", status="failed")
    hooks.on_run_finished(run.pk)
    task.refresh_from_db()
    assert task.status == Task.Status.REVIEW


def test_failures_retry_until_max_attempts_then_block_and_feed_the_learning_signals(project):
    # Given a task of a plan node in a project allowing 2 attempts
    set_mode(project, "full_auto", max_attempts=2)
    node = PlanNodeFactory(blueprint=BlueprintFactory(project=project))
    task = make_task(project, status=Task.Status.IN_PROGRESS, plan_node=node)
    # When its first run fails
    first = finished_run(project, task, "failed", diff_summary={"files": ["core.py"]})
    hooks.on_run_finished(first.pk)
    hooks.on_run_finished(first.pk)  # a duplicate delivery changes nothing
    task.refresh_from_db()
    # Then it is ready again, one attempt used
    assert task.status == Task.Status.READY and task.attempts == 1
    # When a second run starts (rework) and fails too
    second = ExecutionRunFactory(project=project, task=task, status="running", attempt=2)
    hooks.on_run_started(second.pk)
    ExecutionRun.objects.filter(pk=second.pk).update(
        status="timed_out", ended_at=timezone.now(), diff_summary={"files": ["core.py"]}
    )
    hooks.on_run_finished(second.pk)
    # Then it is blocked, and the node and the file remember two failures and one rework
    task.refresh_from_db()
    node.refresh_from_db()
    stat = FileStat.objects.get(project=project, path="core.py")
    assert task.status == Task.Status.BLOCKED and task.attempts == 2 and task.rework_count == 1
    assert node.failure_count == 2 and node.rework_count == 1 and node.difficulty > 0
    assert (stat.failures, stat.reworks, stat.runs) == (2, 1, 2)
    assert Event.objects.filter(kind="manager.outcome").count() == 2


def test_a_cancelled_run_blocks_its_task_instead_of_restarting_it(project):
    task = make_task(project, status=Task.Status.IN_PROGRESS)
    run = finished_run(project, task, "cancelled", status_reason="stopped by alice")
    hooks.on_run_finished(run.pk)
    task.refresh_from_db()
    assert task.status == Task.Status.BLOCKED


def test_a_missed_finish_hook_is_repaired_by_the_next_tick(project):
    set_mode(project, "full_auto")
    task = make_task(project, status=Task.Status.IN_PROGRESS)
    finished_run(project, task, "succeeded")
    report = tick_project(project, reason="test")
    task.refresh_from_db()
    assert report.recovered == [task.pk] and task.status == Task.Status.REVIEW


@pytest.mark.django_db(transaction=True)
def test_tick_requests_are_enqueued_on_commit_once_per_project(project):
    # When several things ask for a tick of the same project
    for reason in ("run finished", "tasks changed", "mode changed"):
        request_tick(project.pk, reason=reason)
    # Then exactly one tick task is queued and the project is flagged
    assert OrmQ.objects.count() == 1
    assert Project.objects.get(pk=project.pk).tick_pending is True
    # When the tick runs it clears the flag, so the next change gets a tick of its own
    tick_project(project, reason="queued")
    assert Project.objects.get(pk=project.pk).tick_pending is False
    request_tick(project.pk, reason="again")
    assert OrmQ.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_changing_the_mode_requests_a_tick(project):
    set_mode(project, "full_auto")
    assert OrmQ.objects.count() == 1
