"""No API list page serializes more than AUTOPILOT_API_MAX_PAGE_SIZE items, whatever ?limit= asks
(bench/api.py: an item costs about a millisecond of CPU; ?limit=100000 held the server for seconds)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

from autopilot.models import Event, Role
from blueprints.models import Task
from runs.models import ExecutionRun
from tests.factories import MembershipFactory

CAP = 7


@pytest.fixture
def client(project):
    user = MembershipFactory(project=project, role=Role.VIEWER).user
    api = APIClient()
    api.force_authenticate(user)
    Task.objects.bulk_create([Task(project=project, title=f"T{i}") for i in range(CAP + 3)])
    ExecutionRun.objects.bulk_create(
        [
            ExecutionRun(project=project, agent_backend="scripted", model="scripted", prompt="p")
            for _ in range(CAP + 3)
        ]
    )
    Event.objects.bulk_create([Event(project=project, kind="test.event") for _ in range(CAP + 3)])
    return api


def test_the_default_cap_is_500():
    assert settings.AUTOPILOT_API_MAX_PAGE_SIZE == 500


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    ["/api/tasks/", "/api/projects/{pk}/runs/", "/api/events/"],
    ids=["tasks", "project-runs", "events"],
)
def test_a_huge_limit_is_lowered_to_the_cap(client, project, path):
    with override_settings(AUTOPILOT_API_MAX_PAGE_SIZE=CAP):
        response = client.get(path.format(pk=project.pk), {"limit": 100_000})
        small = client.get(path.format(pk=project.pk), {"limit": 2})
    assert response.status_code == 200
    body = response.json()
    assert len(body["results"]) == CAP and body["count"] >= CAP + 3 and body["next"]
    assert len(small.json()["results"]) == 2
