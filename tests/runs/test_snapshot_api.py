"""REST doors of the project snapshot, and its narrative from the manager-role model (the fake LLM
server on 127.0.0.1, driven by the real anthropic / openai SDK clients)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from runs.models import ProjectSnapshot, UsageRecord
from tests.factories import MembershipFactory, TaskFactory, UserFactory
from tests.fakellm import error, text

pytestmark = pytest.mark.django_db


def _client(user=None):
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def test_get_computes_one_when_none_then_returns_the_newest(project, viewer, operator):
    TaskFactory(project=project, title="One")
    first = _client(viewer).get(f"/api/projects/{project.pk}/snapshot/")
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["data"]["totals"]["total"] == 1 and body["project"] == project.pk
    assert body["text"].startswith(f"Project {project.name}: 0/1 work tasks done")

    refreshed = _client(operator).post(f"/api/projects/{project.pk}/snapshot/refresh/")
    assert refreshed.status_code == 201
    again = _client(viewer).get(f"/api/projects/{project.pk}/snapshot/").json()
    assert again["id"] == refreshed.json()["id"] != body["id"]


@pytest.mark.parametrize(
    ("who", "method", "status"),
    [
        ("anonymous", "get", (401, 403)),
        ("stranger", "get", (404,)),
        ("viewer", "get", (200,)),
        ("anonymous", "post", (401, 403)),
        ("stranger", "post", (404,)),
        ("viewer", "post", (403,)),
        ("operator", "post", (201,)),
        ("owner", "post", (201,)),
    ],
)
def test_permissions(project, who, method, status):
    user = None
    if who == "stranger":
        user = UserFactory()
    elif who != "anonymous":
        user = MembershipFactory(project=project, role=who).user
    client = _client(user)
    if method == "get":
        response = client.get(f"/api/projects/{project.pk}/snapshot/")
    else:
        response = client.post(f"/api/projects/{project.pk}/snapshot/refresh/")
    assert response.status_code in status, response.content
    if who == "stranger":
        assert project.name not in response.content.decode()
    if status == (403,) and user is not None:
        assert "operator role" in response.json()["detail"]
    if status[0] >= 400:
        assert not ProjectSnapshot.objects.filter(project=project).exists()


def test_bad_narrative_flag_is_a_400_and_stores_nothing(project, operator):
    response = _client(operator).post(f"/api/projects/{project.pk}/snapshot/refresh/?narrative=maybe")
    assert response.status_code == 400 and "narrative" in response.json()
    assert not ProjectSnapshot.objects.filter(project=project).exists()


def test_unknown_project_is_a_404(operator):
    assert _client(operator).get("/api/projects/999999/snapshot/").status_code == 404
    assert _client(operator).post(f"/api/projects/{2**70}/snapshot/refresh/").status_code == 404


@pytest.fixture
def manager_model(project, settings, fake_llm):
    settings.ANTHROPIC_BASE_URL = fake_llm.url
    settings.ANTHROPIC_API_KEY = "test-key"
    settings.OPENAI_BASE_URL = fake_llm.base_url_v1
    settings.OPENAI_API_KEY = "test-key"
    settings.AUTOPILOT_PRICES = {
        **settings.AUTOPILOT_PRICES,
        "fake-sonnet": {"input": Decimal("3"), "output": Decimal("15")},
    }
    return fake_llm


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_narrative_from_the_manager_model_with_its_cost_recorded(project, operator, manager_model, provider):
    # Given a manager role on a real model (the fake server) and one blocked task
    project.model_matrix = {"manager": {"agent": "native", "model": f"{provider}:fake-sonnet"}}
    project.save()
    TaskFactory(project=project, title="Stuck", status="blocked")
    manager_model.script(
        [text("Half done. One task is stuck; unblock it first.", input_tokens=1000, output_tokens=100)]
    )

    # When an operator refreshes with a narrative
    response = _client(operator).post(f"/api/projects/{project.pk}/snapshot/refresh/?narrative=1")

    # Then the narrative is stored with its model, and its cost is a usage record of the project
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["narrative"] == "Half done. One task is stuck; unblock it first."
    assert body["narrative_model"] == "fake-sonnet" and body["narrative_error"] == ""
    usage = UsageRecord.objects.get(project=project)
    assert (usage.input_tokens, usage.output_tokens, usage.run_id) == (1000, 100, None)
    assert usage.cost_usd == Decimal("0.0045") and usage.agent_backend == "manager:snapshot"
    assert body["data"]["narrative_cost_usd"] == "0.0045"
    # And the model was given the snapshot (its text and its JSON)
    [request] = manager_model.model_requests()
    sent = " ".join(request.user_texts())
    assert "0/1 work tasks done" in sent and '"blocked"' in sent


def test_a_failing_model_leaves_a_snapshot_without_narrative_and_says_why(project, operator, manager_model):
    project.model_matrix = {"manager": {"agent": "native", "model": "anthropic:fake-sonnet"}}
    project.save()
    manager_model.script(
        [error(529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})]
    )

    response = _client(operator).post(f"/api/projects/{project.pk}/snapshot/refresh/?narrative=1")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["narrative"] == "" and "did not answer" in body["narrative_error"]
    assert body["data"]["totals"]["total"] == 0
    assert not UsageRecord.objects.filter(project=project).exists()
