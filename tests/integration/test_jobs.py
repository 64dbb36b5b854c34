"""The merge queue through the job machinery: the tick hands a project's queue to a control worker
(django-q2, on commit), whose job drains it; a paused project's queue waits."""

from __future__ import annotations

import pytest
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from autopilot.manager.tick import tick_project
from autopilot.models import Project
from blueprints.models import Task
from runs import tasks
from runs.models import Integration
from tests.integration.conftest import queued

pytestmark = pytest.mark.django_db(transaction=True)


def merge_messages() -> list[dict]:
    return [
        task
        for task in (SignedPackage.loads(p) for p in OrmQ.objects.values_list("payload", flat=True))
        if task["func"] == "runs.tasks.process_integration_queue"
    ]


def test_the_tick_enqueues_the_merge_queue_and_the_job_drains_it(project):
    # Given two queued merges in a project whose autonomy is off (merging approved work needs none)
    first, task_a, _ = queued(project, {"a.py": "A\n"})
    second, task_b, _ = queued(project, {"b.py": "B\n"})
    # When the manager ticks
    report = tick_project(project, reason="test")
    # Then the project's queue is handed to a control worker
    assert report.merges == {project.pk: [{"enqueued": True}]}
    messages = merge_messages()
    assert [m["args"] for m in messages] == [(project.pk,)] and messages[0][
        "name"
    ] == f"merge-queue-{project.pk}"
    # When the job runs, it merges both, one after the other
    result = tasks.process_integration_queue(project.pk)
    assert result == {
        "project": project.pk,
        "integrations": [{"id": first.pk, "status": "merged"}, {"id": second.pk, "status": "merged"}],
    }
    assert set(Task.objects.filter(pk__in=[task_a.pk, task_b.pk]).values_list("status", flat=True)) == {
        "done"
    }


def test_a_paused_projects_queue_waits(project):
    item, _, _ = queued(project, {"a.py": "A\n"})
    Project.objects.filter(pk=project.pk).update(paused=True)
    assert tick_project(project, reason="test").merges == {}
    assert merge_messages() == []
    assert tasks.process_integration_queue(project.pk) == {"project": project.pk, "integrations": []}
    item.refresh_from_db()
    assert item.status == Integration.Status.QUEUED
