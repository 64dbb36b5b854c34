import pytest
from django.utils import timezone
from django_q.models import OrmQ

from autopilot.manager import listeners as hooks
from autopilot.manager.models import FileStat
from autopilot.manager.requests import request_tick
from autopilot.manager.tick import tick_project
from autopilot.models import Event, Project
from blueprints.models import Task
from runs.models import ExecutionRun, Integration
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


def test_success_with_passing_tests_queues_the_task_for_integration_when_no_review_is_needed(project):
    # Given a full-auto project (review not required by its mode)
    set_mode(project, "full_auto")
    task = make_task(project, status=Task.Status.IN_PROGRESS, started_at=timezone.now())
    run = finished_run(project, task, "succeeded", branch="autopilot/t-1", head_commit="a" * 40)
    ExecutionStepFactory(run=run, kind="test", status="completed")
    hooks.on_run_finished(run.pk)
    task.refresh_from_db()
    # Then it never waits in review: it is integrating, its branch queued (done only once merged)
    assert task.status == Task.Status.INTEGRATING and task.completed_at is None
    integration = Integration.objects.get(task=task)
    assert (integration.status, integration.branch, integration.run_id) == ("queued", "autopilot/t-1", run.pk)
    assert Event.objects.filter(kind="integration.queued", subject_id=integration.pk).exists()


@pytest.mark.parametrize(
    ("mode", "review_required", "auto_complete", "expected"),
    [
        ("semi_auto", None, False, Task.Status.REVIEW),  # by mode
        ("full_auto", None, False, Task.Status.INTEGRATING),  # by mode
        ("semi_auto", None, True, Task.Status.INTEGRATING),  # legacy: don't wait for review
        ("semi_auto", False, False, Task.Status.INTEGRATING),  # explicit setting wins
        ("full_auto", True, True, Task.Status.REVIEW),  # explicit setting wins over the legacy one
    ],
)
def test_review_is_required_by_the_explicit_setting_else_the_legacy_one_else_the_mode(
    project, mode, review_required, auto_complete, expected
):
    set_mode(project, mode, auto_complete_on_tests=auto_complete)
    Project.objects.filter(pk=project.pk).update(review_required=review_required)
    task = make_task(project, status=Task.Status.IN_PROGRESS)
    run = finished_run(project, task, "succeeded", branch="autopilot/t-2")
    hooks.on_run_finished(run.pk)
    task.refresh_from_db()
    assert task.status == expected
    assert Integration.objects.filter(task=task).exists() == (expected == Task.Status.INTEGRATING)


def test_success_with_failing_tests_goes_back_for_rework(project):
    set_mode(project, "full_auto", max_attempts=3)
    task = make_task(project, status=Task.Status.IN_PROGRESS)
    run = finished_run(project, task, "succeeded", branch="autopilot/t-3")
    ExecutionStepFactory(run=run, kind="test", status="failed")
    hooks.on_run_finished(run.pk)
    task.refresh_from_db()
    assert task.status == Task.Status.READY and task.attempts == 1
    assert not Integration.objects.filter(task=task).exists()


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
    finished_run(project, task, "succeeded", branch="autopilot/missed-1")
    report = tick_project(project, reason="test")
    task.refresh_from_db()
    # (full_auto: review is not required, so the repaired outcome queues it for integration)
    assert report.recovered == [task.pk] and task.status == Task.Status.INTEGRATING


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
