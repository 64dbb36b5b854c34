"""POST /api/alignment/check/: permissions, bad input, a real repository's run, and the optional
judgement of the manager-role model (the fake LLM server, real SDK clients)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from runs.models import ExecutionRun, UsageRecord
from tests.factories import ExecutionRunFactory, MembershipFactory, ProjectFactory, UserFactory
from tests.fakellm import text
from tests.runs.test_alignment import branch_run

pytestmark = pytest.mark.django_db
URL = "/api/alignment/check/"


def _client(user=None):
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def test_operator_checks_a_run_and_the_result_is_stored(project, operator):
    run = branch_run(project, {"runs/snapshot.py": "x = 1\n", ".github/workflows/ci.yml": "on: push\n"})

    response = _client(operator).post(URL, {"run": run.pk}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["run"] == run.pk and body["verdict"] == "block"
    assert {r["code"] for r in body["reasons"]} == {"forbidden_path", "no_tests"}
    run.refresh_from_db()
    assert run.alignment["verdict"] == "block"


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("anonymous", (401, 403)),
        ("stranger", (404,)),
        ("viewer", (403,)),
        ("operator", (200,)),
        ("owner", (200,)),
    ],
)
def test_permissions(project, who, status):
    run = branch_run(project, {"runs/snapshot.py": "x = 1\n"})
    user = None
    if who == "stranger":
        user = UserFactory()
    elif who != "anonymous":
        user = MembershipFactory(project=project, role=who).user
    response = _client(user).post(URL, {"run": run.pk}, format="json")
    assert response.status_code in status, response.content
    if who == "viewer":
        assert "operator role" in response.json()["detail"]
    run.refresh_from_db()
    assert bool(run.alignment) == (status == (200,))


def test_another_projects_run_is_not_found(project, operator):
    theirs = ExecutionRunFactory(project=ProjectFactory(), status=ExecutionRun.Status.SUCCEEDED)
    response = _client(operator).post(URL, {"run": theirs.pk}, format="json")
    assert response.status_code == 404 and response.json()["detail"] == f"No run '{theirs.pk}'."


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({}, "run", id="missing"),
        pytest.param({"run": "seven"}, "run", id="not-a-number"),
        pytest.param({"run": 0}, "run", id="zero"),
        pytest.param({"run": 2**70}, "run", id="too-large"),
        pytest.param({"run": 1, "llm": "perhaps"}, "llm", id="bad-llm-flag"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(operator, payload, field):
    response = _client(operator).post(URL, payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()


def test_a_run_without_a_branch_is_a_409(project, operator):
    run = ExecutionRunFactory(project=project, status=ExecutionRun.Status.QUEUED)
    response = _client(operator).post(URL, {"run": run.pk}, format="json")
    assert response.status_code == 409 and "nothing to check" in response.json()["detail"]


@pytest.fixture
def manager_model(project, settings, fake_llm):
    settings.ANTHROPIC_BASE_URL = fake_llm.url
    settings.ANTHROPIC_API_KEY = "test-key"
    settings.AUTOPILOT_PRICES = {
        **settings.AUTOPILOT_PRICES,
        "fake-judge": {"input": Decimal("1"), "output": Decimal("5")},
    }
    project.model_matrix = {"manager": {"agent": "native", "model": "anthropic:fake-judge"}}
    project.save()
    return fake_llm


def test_the_models_judgement_can_raise_the_verdict(project, operator, manager_model):
    # Given an in-scope change with tests (the rules say aligned) and a model that sees a problem
    run = branch_run(project, {"runs/snapshot.py": "x = 1\n", "tests/test_snapshot.py": "t = 1\n"})
    manager_model.script(
        [
            text(
                '{"verdict": "warn", "reason": "It also changes the public API."}',
                input_tokens=200,
                output_tokens=20,
            )
        ]
    )

    response = _client(operator).post(URL, {"run": run.pk, "llm": True}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["verdict"] == "warn"
    assert body["llm"] == {
        "verdict": "warn",
        "reason": "It also changes the public API.",
        "model": "fake-judge",
        "cost_usd": "0.000300",
    }
    # The cost is the project's (and names the run) without counting as the agent's own spend
    usage = UsageRecord.objects.get(project=project)
    assert usage.run_id == run.pk and usage.agent_backend == "manager:alignment"
    run.refresh_from_db()
    assert run.cost_usd == 0
    # The model saw the task and the changed files
    [request] = manager_model.model_requests()
    sent = " ".join(request.user_texts())
    assert "runs/snapshot.py" in sent and "Snapshot service" in sent


def test_the_models_judgement_never_lowers_the_verdict(project, operator, manager_model):
    run = branch_run(
        project, {"runs/snapshot.py": "x = 1\n", "package-lock.json": "{}\n", "tests/test_s.py": "t\n"}
    )
    manager_model.script([text('{"verdict": "aligned", "reason": "Fine."}')])
    body = _client(operator).post(URL, {"run": run.pk, "llm": True}, format="json").json()
    assert body["verdict"] == "block" and body["llm"]["verdict"] == "aligned"


def test_an_unreadable_judgement_is_reported(project, operator, manager_model):
    run = branch_run(project, {"runs/snapshot.py": "x = 1\n", "tests/test_snapshot.py": "t = 1\n"})
    manager_model.script([text("I think it is probably fine?")])
    body = _client(operator).post(URL, {"run": run.pk, "llm": True}, format="json").json()
    assert body["verdict"] == "aligned"
    assert body["llm"]["verdict"] is None and "Unreadable answer" in body["llm"]["reason"]
