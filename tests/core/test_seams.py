"""The seams lower layers announce through (runs.lifecycle, autopilot.seams, state after-hooks) and the
listeners the upper layers connect in their AppConfig.ready()."""

import pytest
from django.db import transaction

from autopilot import seams, state
from autopilot.errors import ApplicationError
from autopilot.manager import listeners
from autopilot.models import AutonomyMode, Project
from autopilot.services import project_update_autonomy
from autopilot.state import after_transition, transition
from blueprints import readiness
from blueprints.models import Task
from runs import lifecycle
from runs.models import ExecutionRun
from runs.services import run_stop
from tests.factories import ExecutionRunFactory, TaskFactory
from tests.manager.conftest import depend

pytestmark = pytest.mark.django_db


@pytest.fixture
def heard():
    """A listener on each seam that records what it hears (disconnected afterwards)."""
    calls = []

    def on_finished(run_id):
        calls.append(("finished", run_id))

    def on_changed(project_id, reason):
        calls.append(("changed", project_id, reason))

    lifecycle.run_finished.connect(on_finished)
    seams.project_changed.connect(on_changed)
    yield calls
    lifecycle.run_finished.disconnect(on_finished)
    seams.project_changed.disconnect(on_changed)


def test_the_apps_connect_their_listeners_in_ready():
    assert listeners.on_run_started in lifecycle.run_started.listeners
    assert listeners.on_run_finished in lifecycle.run_finished.listeners
    assert listeners.on_project_changed in seams.project_changed.listeners
    assert {"claude_code", "scripted", "test_worker"} <= set(seams.backend_names())


def test_a_stopped_run_is_announced_once_after_commit(project, heard, django_capture_on_commit_callbacks):
    # Given a queued run
    run = ExecutionRunFactory(project=project, status="queued")
    # When it is stopped
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run_stop(run=run, reason="test")
        # Then nobody heard before the commit
        assert heard == []
    for callback in callbacks:
        callback()
    assert heard == [("finished", run.pk)]
    assert ExecutionRun.objects.get(pk=run.pk).status == "cancelled"


def test_a_failing_listener_neither_undoes_the_stop_nor_silences_the_others(
    project, heard, django_capture_on_commit_callbacks
):
    def broken(run_id):
        raise RuntimeError("listener bug")

    lifecycle.run_finished.connect(broken)
    try:
        run = ExecutionRunFactory(project=project, status="queued")
        with django_capture_on_commit_callbacks(execute=True):
            run_stop(run=run)
    finally:
        lifecycle.run_finished.disconnect(broken)
    assert ExecutionRun.objects.get(pk=run.pk).status == "cancelled"
    assert ("finished", run.pk) in heard


def test_an_autonomy_change_is_announced_without_the_core_knowing_the_manager(
    project, heard, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        project_update_autonomy(project=project, autonomy_mode=AutonomyMode.FULL_AUTO)
    assert heard == [("changed", project.pk, "autonomy changed")]
    # and the manager's listener turned it into a tick request (de-duplicated by the flag)
    assert Project.objects.get(pk=project.pk).tick_pending is True


def test_a_model_matrix_names_only_backends_runs_provides(project):
    with pytest.raises(ApplicationError, match="unknown agent backend 'nope'"):
        project_update_autonomy(project=project, model_matrix={"code": {"agent": "nope"}})
    project_update_autonomy(project=project, model_matrix={"code": {"agent": "scripted"}})


def test_blueprints_keeps_readiness_true_through_an_after_hook(project):
    # Given a task another one depends on
    first, second = TaskFactory(project=project, status="ready"), TaskFactory(project=project, status="todo")
    depend(second, first)
    Task.objects.filter(pk=second.pk).update(readiness_mark=readiness.CURRENT)
    # When the first moves to done through the one transition function
    transition(first, Task.Status.IN_PROGRESS)
    transition(first, Task.Status.REVIEW)
    transition(first, Task.Status.DONE)
    # Then blueprints' after-hook marked its dependent for a readiness pass
    assert Task.objects.get(pk=second.pk).readiness_mark == readiness.STALE


def test_an_after_hook_that_raises_rolls_the_transition_back(project):
    task = TaskFactory(project=project, status="ready")

    def refuse(obj, old, new):
        raise ApplicationError("no")

    after_transition(Task, refuse)
    try:
        with pytest.raises(ApplicationError), transaction.atomic():
            transition(task, Task.Status.CANCELLED)
    finally:
        state._after_hooks[Task].remove(refuse)
    assert Task.objects.get(pk=task.pk).status == "ready"
