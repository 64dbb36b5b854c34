"""Security finding 10: the API refuses bad input cleanly — a 400 naming the field (or a 413 naming the
limit), never a 500 — every view needs a login unless meant to be public, free text is capped (in the
serializers and in the services, so the CLI gets the same answer), and a non-member cannot tell another
project's objects from missing ones.

Every request goes through the real WSGI stack (APIClient) with `raise_request_exception = False`, so a
crash shows up as the 500 a user would get.
"""

from __future__ import annotations

import json

import pytest
import yaml
from django.test import override_settings
from rest_framework.test import APIClient

from autopilot.errors import ApplicationError
from autopilot.input_limits import MAX_MESSAGE_CHARS, MAX_PROMPT_CHARS, MAX_TASK_BODY_CHARS
from autopilot.manager.models import Proposal
from blueprints.models import Task
from blueprints.services import task_create, task_update
from runs import services as run_services
from runs.models import ExecutionRun, RunMessage
from tests.factories import (
    BlueprintFactory,
    ExecutionRunFactory,
    ExecutionStepFactory,
    IngestionJobFactory,
    MembershipFactory,
    PlanNodeFactory,
    ProjectFactory,
    ProposalFactory,
    TaskDependencyFactory,
    TaskFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999"


def client_for(user) -> APIClient:
    client = APIClient()
    client.raise_request_exception = False
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture
def api(operator):
    return client_for(operator)


# --- Query strings: a 400 naming the parameter, never an OverflowError / ValueError -------------------


@pytest.mark.parametrize(
    ("path", "param", "value"),
    [
        ("/api/tasks/", "project", "-1.79e308"),
        ("/api/tasks/", "project", HUGE),
        ("/api/tasks/", "project", "1e20"),
        ("/api/tasks/", "plan_node", HUGE),
        ("/api/tasks/", "priority", "1e20"),
        ("/api/events/", "project", "-1.79e308"),
        ("/api/events/", "after", HUGE),
        ("/api/dependencies/", "task", HUGE),
        ("/api/dependencies/", "task__project", "abc"),
        ("/api/runs/", "project", HUGE),
        ("/api/runs/", "task", "-1.79e308"),
        ("/api/projects/{project}/runs/", "task", "abc"),
        ("/api/projects/{project}/runs/", "task", HUGE),
        ("/api/projects/{project}/runs/", "status", "\x00"),
        ("/api/projects/{project}/runs/", "status", "nonsense"),
        ("/api/projects/{project}/runs/", "agent", "gpt"),
        ("/api/projects/{project}/proposals/", "status", "\x00"),
        ("/api/runs/compare/", "a", "abc"),
        ("/api/tasks/", "offset", HUGE),
    ],
    ids=lambda value: value if len(str(value)) < 25 else str(value)[:20],
)
def test_bad_query_values_are_a_400_naming_the_parameter(api, project, path, param, value):
    response = api.get(
        path.format(project=project.pk), {param: value, **({"b": "1"} if param == "a" else {})}
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert param in body, body  # DRF's field errors: {"<param>": ["..."]}


@pytest.mark.parametrize(
    "path",
    [
        "/api/tasks/",
        "/api/runs/",
        "/api/events/",
        "/api/projects/",
        "/api/dependencies/",
        "/api/projects/{project}/runs/",
    ],
)
def test_a_huge_limit_is_capped_not_a_crash(api, project, path):
    # given one row of each (an empty list never slices the query)
    task = task_create(project=project, title="T")  # also records an event
    TaskDependencyFactory(task=task, depends_on=TaskFactory(project=project))
    ExecutionRunFactory(project=project)
    response = api.get(path.format(project=project.pk), {"limit": HUGE})
    assert response.status_code == 200, response.content
    assert response.json()["count"] >= 1 and len(response.json()["results"]) >= 1


@pytest.mark.parametrize("value", ["abc", "-1.79e308", HUGE, "1.5"])
def test_queue_clear_with_a_bad_project_names_it(owner, project, value):
    response = client_for(owner).post(f"/api/queue/clear/?project={value}")
    assert response.status_code == 400 and "project" in response.json(), response.content


# --- Bodies -----------------------------------------------------------------------------------------


def test_deeply_nested_json_is_a_400_not_a_recursion_error(api, project):
    body = '{"prompt": "x", "settings": {"deep": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    response = api.post(f"/api/projects/{project.pk}/runs/", body, content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]
    assert not ExecutionRun.objects.exists()


def test_json_a_little_too_deep_for_the_limit_is_refused_too(api, project):
    # parses fine in Python (200 levels) but is over the documented limit of 64
    body = '{"prompt": "x", "settings": {"deep": ' + "[" * 200 + "]" * 200 + "}}"
    response = api.post(f"/api/projects/{project.pk}/runs/", body, content_type="application/json")
    assert response.status_code == 400 and "the limit is 64 levels" in response.json()["detail"]


def test_deep_json_inside_an_imported_trajectory_text_is_refused(project, owner):
    response = client_for(owner).post(
        "/api/runs/import/", {"project": project.name, "trajectory": "[" * 100_000 + "]" * 100_000}
    )
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_turns", 10**20),
        ("max_wall_seconds", 10**20),
        ("max_turns", 1e20),
        ("task", 10**20),
        ("priority", 10**20),
    ],
)
def test_huge_numbers_in_a_run_are_a_400_naming_the_field(api, project, field, value):
    response = api.post(f"/api/projects/{project.pk}/runs/", {"prompt": "x", field: value}, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not ExecutionRun.objects.exists()


@pytest.mark.parametrize("field", ["max_turns", "max_wall_seconds"])
def test_the_run_service_caps_limits_too(project, field):
    with pytest.raises(ApplicationError, match=f"{field} must be at most"):
        run_services.run_create(
            project=project, prompt="x", agent_backend="scripted", enqueue=False, **{field: 10**20}
        )
    assert not ExecutionRun.objects.exists()


@pytest.mark.parametrize("content_type", ["json", "multipart", "form"])
def test_a_body_over_the_size_limit_is_a_json_413_naming_the_limit(api, project, content_type):
    url = f"/api/projects/{project.pk}/runs/"
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        if content_type == "json":
            response = api.post(url, {"prompt": "x" * 5000}, format="json")
        elif content_type == "multipart":
            response = api.post(url, {"prompt": "x" * 5000})
        else:
            response = api.post(url, "prompt=" + "x" * 5000, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413 and response["Content-Type"] == "application/json"
    assert "larger than the limit of 1,000 bytes" in response.json()["detail"]
    assert response.json()["extra"] == {"limit_bytes": 1000}


# --- The scripted backend's script is checked when the run is created ----------------------------------


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({"sleep": "abc"}, "script[0]: 'sleep' must be a number of seconds"),
        ({"sleep": 1e300}, "script[0]: 'sleep' must be a number of seconds"),
        ({"say": ["a"]}, "script[0]: 'say' must be text, got list"),
        ({"write": "a.txt", "content": 5}, "script[0]: 'content' must be text, got int"),
        (
            {"usage": {"model": "m", "input_tokens": "many"}},
            "script[0]: 'usage.input_tokens' must be a whole number",
        ),
        ({"usage": "lots"}, "script[0]: 'usage' must be an object"),
        ({"run": "ls", "timeout": "soon"}, "script[0]: 'timeout' must be a positive number"),
    ],
    ids=["sleep-text", "sleep-huge", "say-list", "content-int", "usage-tokens", "usage-text", "timeout-text"],
)
def test_a_mistyped_script_is_a_400_at_creation(api, project, action, message):
    response = api.post(
        f"/api/projects/{project.pk}/runs/",
        {"prompt": "x", "agent": "scripted", "settings": {"script": [action]}},
        format="json",
    )
    assert response.status_code == 400 and response.json()["detail"].startswith(f"settings.script: {message}")
    assert not ExecutionRun.objects.exists()


def test_a_scripted_prompt_that_is_a_script_is_checked_too(api, project):
    response = api.post(
        f"/api/projects/{project.pk}/runs/",
        {"prompt": json.dumps([{"sleep": "abc"}]), "agent": "scripted"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("prompt (a scripted run's JSON script): script[0]: 'sleep'")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"stuck_repeat": "abc"}, "settings.stuck_repeat must be a whole number"),
        ({"step_through": "yes"}, "settings.step_through must be true or false"),
        ({"write_scope": "src/*"}, "settings.write_scope must be a list"),
    ],
)
def test_run_settings_a_worker_would_trip_over_are_refused(api, project, settings, message):
    response = api.post(
        f"/api/projects/{project.pk}/runs/", {"prompt": "x", "settings": settings}, format="json"
    )
    assert response.status_code == 400 and response.json()["detail"].startswith(message)


# --- Authentication is the default for the whole API ----------------------------------------------------


def _operations():
    client = APIClient()
    schema = yaml.safe_load(client.get("/api/schema/").content)
    for path, operations in schema["paths"].items():
        for method in operations:
            if method in ("get", "post", "patch", "put", "delete"):
                yield method, path


def test_anonymous_requests_are_refused_by_every_operation_but_the_token_endpoint(project):
    run = ExecutionRunFactory(project=project)
    ExecutionStepFactory(run=run)
    anonymous = client_for(None)
    answered = {}
    for method, path in _operations():
        if path == "/api/auth/token/":
            continue
        url = path
        for name in ("id", "project_id", "blueprint_id", "node_id", "job_id", "user_id"):
            url = url.replace("{" + name + "}", "1")
        response = getattr(anonymous, method)(url, {}, format="json")
        answered[f"{method.upper()} {path}"] = response.status_code
    refused = {op: code for op, code in answered.items() if code not in (401, 403)}
    assert not refused, refused
    assert len(answered) > 50
    assert anonymous.get("/api/runs/").status_code == 403, "was 200 with an empty list"


def test_the_schema_and_the_token_endpoint_are_public():
    anonymous = client_for(None)
    assert anonymous.get("/api/schema/").status_code == 200
    assert anonymous.get("/api/docs/").status_code == 200
    assert anonymous.post("/api/auth/token/", {}, format="json").status_code == 400


# --- Free-text caps: the API and the services give the same answer -------------------------------------


@pytest.mark.parametrize(
    ("path", "field", "limit", "extra"),
    [
        ("/api/projects/{project}/runs/", "prompt", MAX_PROMPT_CHARS, {}),
        ("/api/tasks/", "body", MAX_TASK_BODY_CHARS, {"title": "T"}),
        ("/api/tasks/", "title", 500, {}),
    ],
)
def test_oversized_text_is_a_400_naming_the_field(api, project, path, field, limit, extra):
    body = {"project": project.pk, **extra, field: "x" * (limit + 1)}
    response = api.post(path.format(project=project.pk), body, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not ExecutionRun.objects.exists() and not Task.objects.exists()
    at_limit = api.post(path.format(project=project.pk), {**body, field: "x" * limit}, format="json")
    assert at_limit.status_code == 201, at_limit.content


def test_a_ten_megabyte_description_is_refused(owner, project):
    response = client_for(owner).patch(
        f"/api/projects/{project.pk}/", {"description": "x" * 10_000_000}, format="json"
    )
    assert response.status_code == 400 and "description" in response.json()
    project.refresh_from_db()
    assert project.description == ""


def test_an_oversized_message_is_refused(api, project):
    run = ExecutionRunFactory(project=project)
    response = api.post(
        f"/api/runs/{run.pk}/message/", {"body": "x" * (MAX_MESSAGE_CHARS + 1)}, format="json"
    )
    assert response.status_code == 400 and "body" in response.json()
    with pytest.raises(ApplicationError, match="body is at most 20,000 characters"):
        run_services.run_message(run=run, body="x" * (MAX_MESSAGE_CHARS + 1))
    assert not RunMessage.objects.exists()


def test_the_services_cap_prompts_and_task_bodies(project):
    with pytest.raises(ApplicationError, match="prompt is at most 200,000 characters"):
        run_services.run_create(project=project, prompt="x" * (MAX_PROMPT_CHARS + 1), enqueue=False)
    with pytest.raises(ApplicationError, match="body is at most 200,000 characters"):
        task_create(project=project, title="T", body="x" * (MAX_TASK_BODY_CHARS + 1))
    task = TaskFactory(project=project)
    with pytest.raises(ApplicationError, match="body is at most 200,000 characters"):
        task_update(task=task, body="x" * (MAX_TASK_BODY_CHARS + 1))
    assert not ExecutionRun.objects.exists() and Task.objects.get().body == ""


# --- No oracle: "exists but not yours" answers exactly like "does not exist" ----------------------------


@pytest.fixture
def theirs():
    """Another project with one of everything; the caller (an operator of `project`) is not a member."""
    other = ProjectFactory()
    blueprint = BlueprintFactory(project=other)
    node = PlanNodeFactory(blueprint=blueprint)
    task = TaskFactory(project=other)
    dependency = TaskDependencyFactory(task=task)
    run = ExecutionRunFactory(project=other, task=task)
    step = ExecutionStepFactory(run=run)
    proposal = ProposalFactory(task=task)
    job = IngestionJobFactory(blueprint=blueprint)
    return {
        "project": other,
        "blueprint": blueprint,
        "node": node,
        "task": task,
        "dependency": dependency,
        "run": run,
        "step": step,
        "proposal": proposal,
        "job": job,
    }


MISSING = 987654321

# (kind of object, method, url template with {id}, body template, query template)
PROBES = [
    ("project", "get", "/api/projects/{id}/", None, None),
    ("project", "patch", "/api/projects/{id}/", {"paused": True}, None),
    ("project", "get", "/api/projects/{id}/members/", None, None),
    ("project", "get", "/api/projects/{id}/runs/", None, None),
    ("project", "post", "/api/projects/{id}/runs/", {"prompt": "x"}, None),
    ("project", "get", "/api/projects/{id}/blueprints/", None, None),
    ("project", "get", "/api/projects/{id}/tasks/ready/", None, None),
    ("project", "get", "/api/projects/{id}/tasks/next/", None, None),
    ("project", "get", "/api/projects/{id}/manager/plan/", None, None),
    ("project", "get", "/api/projects/{id}/proposals/", None, None),
    ("project", "post", "/api/projects/{id}/autopilot_tick/", {}, None),
    ("project", "get", "/api/events/", None, {"project": "{id}"}),
    ("project", "get", "/api/tasks/", None, {"project": "{id}"}),
    ("project", "get", "/api/runs/", None, {"project": "{id}"}),
    ("project", "get", "/api/dependencies/", None, {"task__project": "{id}"}),
    ("project", "post", "/api/queue/clear/", None, {"project": "{id}"}),
    ("project", "post", "/api/tasks/", {"project": "{id}", "title": "T"}, None),
    ("project", "post", "/api/runs/import/", {"project": "{id}", "trajectory": {}}, None),
    ("run", "get", "/api/runs/{id}/", None, None),
    ("run", "get", "/api/runs/{id}/export/", None, None),
    ("run", "get", "/api/runs/{id}/analysis/", None, None),
    ("run", "get", "/api/runs/compare/", None, {"a": "{id}", "b": "{id}"}),
    ("run", "post", "/api/runs/{id}/stop/", {}, None),
    ("run", "post", "/api/runs/{id}/message/", {"body": "hi"}, None),
    ("step", "get", "/api/steps/{id}/", None, None),
    ("step", "post", "/api/steps/{id}/rollback/", {}, None),
    ("task", "get", "/api/tasks/{id}/", None, None),
    ("task", "patch", "/api/tasks/{id}/", {"title": "T"}, None),
    ("task", "get", "/api/runs/", None, {"task": "{id}"}),
    ("task", "get", "/api/dependencies/", None, {"task": "{id}"}),
    ("task", "post", "/api/projects/{own}/runs/", {"prompt": "x", "task": "{id}"}, None),
    ("task", "post", "/api/dependencies/", {"task": "{own_task}", "depends_on": "{id}"}, None),
    ("dependency", "get", "/api/dependencies/{id}/", None, None),
    ("node", "get", "/api/plan_nodes/{id}/", None, None),
    ("node", "post", "/api/plan_nodes/{id}/generate_tasks/", {}, None),
    ("node", "get", "/api/tasks/", None, {"plan_node": "{id}"}),
    ("node", "post", "/api/tasks/", {"project": "{own}", "title": "T", "plan_node": "{id}"}, None),
    ("node", "patch", "/api/projects/{own}/", {"active_phase": "{id}"}, None),
    ("blueprint", "get", "/api/blueprints/{id}/", None, None),
    ("blueprint", "post", "/api/blueprints/{id}/generate_all_tasks/", {}, None),
    ("job", "get", "/api/ingestion_jobs/{id}/", None, None),
    ("proposal", "post", "/api/proposals/{id}/accept/", {}, None),
    ("proposal", "post", "/api/proposals/{id}/dismiss/", {}, None),
]


def _fill(template, values):
    if template is None:
        return None
    if isinstance(template, dict):
        return {key: _fill(value, values) for key, value in template.items()}
    if isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        return values[template[1:-1]]
    return template


def _ask(client, method, url, body, query, values):
    url = url.format(**values)
    query = _fill(query, values)
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    response = getattr(client, method)(url, _fill(body, values) or {}, format="json")
    text = response.content.decode().replace(str(values["id"]), "ID")
    return response.status_code, text


@pytest.mark.parametrize(
    ("kind", "method", "url", "body", "query"),
    PROBES,
    ids=[f"{m.upper()} {u} {q or ''} {b or ''}".strip() for _, m, u, b, q in PROBES],
)
def test_another_projects_object_answers_like_a_missing_one(
    project, owner, theirs, kind, method, url, body, query
):
    own_task = TaskFactory(project=project)
    client = client_for(owner)  # owner of `project`, nothing on theirs["project"]
    common = {"own": project.pk, "own_task": own_task.pk}
    existing = _ask(client, method, url, body, query, {**common, "id": theirs[kind].pk})
    missing = _ask(client, method, url, body, query, {**common, "id": MISSING})
    assert existing[0] < 500 and existing == missing, (existing, missing)
    assert existing[0] in (200, 400, 403, 404), existing
    # and nothing of theirs changed
    theirs["proposal"].refresh_from_db()
    theirs["project"].refresh_from_db()
    assert theirs["proposal"].status == Proposal.Status.PENDING and not theirs["project"].paused
    assert list(ExecutionRun.objects.filter(project=theirs["project"])) == [theirs["run"]]


def test_a_member_of_both_still_learns_a_task_is_of_another_project(project, operator, theirs):
    MembershipFactory(project=theirs["project"], user=operator)
    response = client_for(operator).post(
        f"/api/projects/{project.pk}/runs/", {"prompt": "x", "task": theirs["task"].pk}, format="json"
    )
    assert response.status_code == 400 and "belongs to another project" in response.json()["detail"]


def test_an_unknown_user_sees_nothing_either(theirs):
    stranger = client_for(UserFactory())
    assert stranger.get(f"/api/runs/{theirs['run'].pk}/export/").status_code == 404
    assert stranger.get("/api/runs/").json()["count"] == 0


# --- Errors outside the views are JSON too; the schema documents them ----------------------------------


@pytest.mark.parametrize("path", ["/api/runs/abc/", "/api/projects/-1/runs/", "/api/nowhere/"])
def test_an_unmatched_api_url_is_a_json_404(api, path):
    response = api.get(path)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json() == {"detail": f"No API endpoint at '{path}'."}


def test_pages_outside_the_api_keep_the_html_404(api):
    response = api.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


def test_a_second_open_code_run_for_a_task_is_a_409_not_a_500(api, project):
    task = TaskFactory(project=project)
    first = api.post(f"/api/projects/{project.pk}/runs/", {"task": task.pk}, format="json")
    assert first.status_code == 201
    second = api.post(f"/api/projects/{project.pk}/runs/", {"task": task.pk}, format="json")
    assert second.status_code == 409, second.content
    assert (
        second.json()["detail"]
        == f"Task #{task.pk} already has a queued or active code run; stop it or wait for it."
    )
    assert ExecutionRun.objects.filter(task=task).count() == 1


def test_the_schema_documents_the_error_answers_of_every_operation():
    schema = yaml.safe_load(APIClient().get("/api/schema/").content)
    missing = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            public = operation.get("security") == [] or path == "/api/auth/token/"
            expected = {"400", "403", "429"} | (set() if public else {"401", "404"})
            if method in ("post", "patch", "put"):
                expected |= {"413"} | (set() if public else {"409"})
            if expected - set(operation["responses"]):
                missing[f"{method.upper()} {path}"] = sorted(expected - set(operation["responses"]))
    assert not missing, missing
    error = schema["paths"]["/api/runs/{id}/"]["get"]["responses"]["404"]
    assert error["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
