"""The manager API in the OpenAPI schema: every answer is a named component, and the components declare
every key the endpoints really answer with (checked against live answers)."""

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from autopilot.manager.api import serializers as s
from tests.factories import BlueprintFactory, ExecutionRunFactory, PlanNodeFactory, UserFactory
from tests.manager.conftest import make_task, set_mode

pytestmark = pytest.mark.django_db

ANSWERS = {
    ("/api/projects/{id}/manager/plan/", "get"): "ManagerPlan",
    ("/api/projects/{id}/learning_metrics/", "get"): "LearningMetrics",
    ("/api/projects/{id}/autopilot_tick/", "post"): "TickReport",
    ("/api/projects/{id}/refine_plan/", "post"): "RefinePlan",
    ("/api/queue/", "get"): "QueueStatus",
    ("/api/queue/clear/", "post"): "QueueClearResult",
    ("/api/proposals/{id}/dismiss/", "post"): "Proposal",
}


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


@pytest.mark.parametrize(("path", "method"), list(ANSWERS), ids=[f"{m} {p}" for p, m in ANSWERS])
def test_each_manager_answer_is_a_component(schema, path, method):
    responses = schema["paths"][path][method]["responses"]
    content = next(iter(responses.values()))["content"]["application/json"]["schema"]
    assert content == {"$ref": f"#/components/schemas/{ANSWERS[(path, method)]}"}
    assert "properties" in schema["components"]["schemas"][ANSWERS[(path, method)]]


def test_the_proposal_list_documents_its_status_filter(schema):
    parameters = schema["paths"]["/api/projects/{id}/proposals/"]["get"]["parameters"]
    status = next(p for p in parameters if p["name"] == "status")
    assert status["in"] == "query" and set(status["schema"]["enum"]) >= {"pending", "dismissed"}


def _undeclared(data, serializer) -> set[str]:
    """Keys answered but not declared, recursively through nested serializers."""
    fields = serializer.get_fields()
    missing = {key for key in data if key not in fields}
    for key, value in data.items():
        field = fields.get(key)
        child = getattr(field, "child", field)
        if hasattr(child, "get_fields") and value:
            for item in value if isinstance(value, list) else [value]:
                missing |= {f"{key}.{k}" for k in _undeclared(item, child)}
    return missing


def test_the_components_declare_every_key_the_endpoints_answer(project):
    # Given a full-auto project with a phase, tasks and a running run, and its owner
    owner = UserFactory()
    project.memberships.create(user=owner, role="owner")
    node = PlanNodeFactory(blueprint=BlueprintFactory(project=project), anchor="p1", title="P1")
    set_mode(project, "full_auto", max_parallel_runs=2, active_phase=node)
    make_task(project, plan_node=node, priority=5)
    make_task(project, plan_node=node)
    ExecutionRunFactory(project=project, task=make_task(project, plan_node=node), status="running")
    ExecutionRunFactory(project=project, status="queued")
    client = APIClient()
    client.force_authenticate(owner)
    base = f"/api/projects/{project.pk}"
    # When each endpoint answers, then every key it answers with is declared in its component
    answers = [
        (client.get(f"{base}/manager/plan/"), s.ManagerPlanSerializer()),
        (client.get(f"{base}/learning_metrics/"), s.LearningMetricsSerializer()),
        (client.post(f"{base}/refine_plan/"), s.RefinePlanSerializer()),
        (client.get("/api/queue/"), s.QueueStatusSerializer()),
        (client.post(f"{base}/autopilot_tick/"), s.TickReportSerializer()),
        (client.post("/api/queue/clear/"), s.QueueClearResultSerializer()),
    ]
    for response, serializer in answers:
        assert response.status_code == 200, response.content
        assert _undeclared(response.json(), serializer) == set(), type(serializer).__name__


def test_a_bad_queue_clear_project_is_a_400_naming_the_field(project):
    owner = UserFactory()
    project.memberships.create(user=owner, role="owner")
    client = APIClient()
    client.force_authenticate(owner)
    response = client.post("/api/queue/clear/?project=abc")
    assert response.status_code == 400
    assert "project" in response.json() or "project" in str(response.json())
