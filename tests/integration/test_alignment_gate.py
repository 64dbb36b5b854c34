"""The alignment check gates the merge queue: a change it blocks waits for a human even in full_auto."""

from __future__ import annotations

import pytest

from autopilot.manager import listeners as hooks
from autopilot.models import Event, Project
from blueprints.models import Task
from runs.models import Integration
from tests.factories import TaskFactory
from tests.runs.helpers import run_now

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def full_auto(project):
    Project.objects.filter(pk=project.pk).update(autonomy_mode="full_auto")
    project.refresh_from_db()
    return project


def finish(run) -> Task:
    hooks.on_run_finished(run.pk)
    return Task.objects.get(pk=run.task_id)


def test_a_change_to_the_ci_configuration_waits_for_a_human_with_the_reason(full_auto):
    task = TaskFactory(project=full_auto, status=Task.Status.IN_PROGRESS, title="Add the parser")
    run = run_now(
        full_auto,
        [
            {"write": ".github/workflows/ci.yml", "content": "on: push\n"},
            {"write": "parser.py", "content": "x = 1\n"},
        ],
        task=task,
    )
    task = finish(run)
    run.refresh_from_db()
    assert run.alignment["verdict"] == "block"
    assert task.status == Task.Status.REVIEW and not Integration.objects.filter(task=task).exists()
    moved = Event.objects.filter(kind="task.status", subject_id=task.pk, data__to="review").last()
    assert moved is not None and "alignment check blocks the merge" in moved.data["reason"]
    assert ".github/workflows/ci.yml" in moved.data["reason"]


def test_an_aligned_change_goes_straight_to_the_merge_queue(full_auto):
    task = TaskFactory(project=full_auto, status=Task.Status.IN_PROGRESS, title="Add `parser.py`")
    run = run_now(
        full_auto,
        [
            {"write": "parser.py", "content": "x = 1\n"},
            {"write": "test_parser.py", "content": "import parser\n"},
        ],
        task=task,
    )
    task = finish(run)
    run.refresh_from_db()
    assert run.alignment["verdict"] in ("aligned", "warn")
    assert task.status == Task.Status.INTEGRATING
    assert Integration.objects.filter(task=task, status="queued").exists()
