"""The context bundle's doors: the prompt as sent on the run page, in the run API and in `autopilot session
show`; pinning from the plan page, the API and `autopilot plan pin|unpin|pins`; the project's context
budget from the API and the CLI. Permissions (viewer / operator / owner / non-member) and bad input."""

from __future__ import annotations

import html

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from blueprints.ingestion import ingest_blueprint
from blueprints.models import PlanNode, Task
from runs import services
from runs.context import TASK_INSTRUCTION
from runs.worker import execute_run
from tests.cli.cli_runs_support import assert_usage_error, autopilot, last_json, ok
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

SPEC = """# Phase 1

Everything runs on Python 3.12.

## Conventions

Use snake_case.

## Greeting

Write greet.py that prints hello.

- [ ] `python3 greet.py` prints hello

## Farewell

Write bye.py.
"""


@pytest.fixture
def world(db):
    project = ProjectFactory(name="Ctx")
    ingest_blueprint(project=project, text=SPEC)
    users = {"non-member": UserFactory(username="stranger")}
    for role in ("viewer", "operator", "owner"):
        users[role] = MembershipFactory(project=project, role=role, user=UserFactory(username=role)).user
    return project, users


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def node(project, title) -> PlanNode:
    return PlanNode.objects.get(project=project, title=title, archived_at__isnull=True)


def finished_run(project, *, budget=None):
    """A scripted task run executed by the real worker (its prompt parts recorded as sent)."""
    if budget:
        type(project).objects.filter(pk=project.pk).update(context_budget_tokens=budget)
    task = Task.objects.get(project=project, title="Greeting")
    run = services.run_create(
        project=project,
        task=task,
        prompt=TASK_INSTRUCTION,
        agent_backend="scripted",
        enqueue=False,
        run_settings={"script": [{"finish": "done"}]},
    )
    assert execute_run(run.pk) == "succeeded"
    run.refresh_from_db()
    return run


# --- the prompt as sent ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_run_api_and_page_show_the_prompt_part_by_part(world, client):
    project, users = world
    run = finished_run(project)

    # the API: the prompt as sent and its parts, for a viewer; nothing for a non-member
    body = api(users["viewer"]).get(f"/api/runs/{run.pk}/").json()
    assert [p["name"] for p in body["prompt_parts"]] == [
        "task",
        "ancestry",
        "pinned",
        "snapshot",
        "instruction",
    ]
    assert body["sent_prompt"] == "\n\n".join(p["text"] for p in body["prompt_parts"])
    assert body["sent_prompt"].startswith(f"## Task\n\nTask #{run.task_id}: Greeting")
    assert body["prompt"] == TASK_INSTRUCTION
    assert api(users["non-member"]).get(f"/api/runs/{run.pk}/").status_code == 404

    # the page: one collapsible part each, with its size
    client.force_login(users["viewer"])
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert 'id="run-prompt"' in page and "Prompt as sent" in page
    for name in ("task", "ancestry", "pinned", "snapshot", "instruction"):
        assert f'data-testid="prompt-part-{name}"' in page
    assert "Pinned project context" in page and "Use snake_case." in page
    assert "data-live-events" not in page.split('id="run-prompt"')[1].split(">")[0]  # recorded: no refresh


@pytest.mark.django_db(transaction=True)
def test_the_page_lists_what_the_budget_left_out(world, client):
    project, users = world
    Task.objects.filter(project=project, title="Greeting").update(body="Write greet.py. " + "Detail. " * 250)
    run = finished_run(project, budget=500)
    states = {p["name"]: p["state"] for p in run.prompt_parts}
    assert states["pinned"] == "dropped" and states["ancestry"] == "dropped"
    client.force_login(users["viewer"])
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert "left out to fit the budget: Place in the spec, Pinned project context" in page


@pytest.mark.django_db(transaction=True)
def test_session_show_prints_the_parts_and_the_prompt(world, subprocess_env, tmp_path):
    project, users = world
    run = finished_run(project)
    text = ok(autopilot(subprocess_env, "session", "show", run.pk, "--user", "viewer", cwd=tmp_path)).stdout
    assert "prompt as sent: 5 of 5 parts" in text
    assert "Pinned project context" in text and "included" in text
    assert "Use snake_case." not in text  # the texts only with --prompt
    full = ok(
        autopilot(subprocess_env, "session", "show", run.pk, "--prompt", "--user", "viewer", cwd=tmp_path)
    ).stdout
    assert "Use snake_case." in full and f"Task #{run.task_id}: Greeting" in full
    data = last_json(autopilot(subprocess_env, "session", "show", run.pk, "--json", cwd=tmp_path))
    assert [p["name"] for p in data["prompt_parts"]] == [
        "task",
        "ancestry",
        "pinned",
        "snapshot",
        "instruction",
    ]
    assert data["sent_prompt"].endswith(TASK_INSTRUCTION)


# --- pinning ---------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "status"), [("owner", 200), ("operator", 403), ("viewer", 403), ("non-member", 404)]
)
def test_pin_through_the_api_needs_the_owner(world, who, status):
    project, users = world
    farewell = node(project, "Farewell")
    response = api(users[who]).patch(f"/api/plan_nodes/{farewell.pk}/", {"pinned": True}, format="json")
    assert response.status_code == status, response.content
    farewell.refresh_from_db()
    assert farewell.pinned is (True if status == 200 else None)
    if status == 200:
        assert response.json()["pinned"] is True


@pytest.mark.django_db
def test_pin_api_bad_input_and_nothing_half_written(world):
    project, users = world
    farewell = node(project, "Farewell")
    bad = api(users["owner"]).patch(f"/api/plan_nodes/{farewell.pk}/", {"pinned": "maybe"}, format="json")
    assert bad.status_code == 400 and "pinned" in bad.json()
    # an operator changing the priority and the pin at once: refused as a whole
    both = api(users["operator"]).patch(
        f"/api/plan_nodes/{farewell.pk}/", {"pinned": True, "priority": 5}, format="json"
    )
    assert both.status_code == 403 and "owner" in both.json()["detail"]
    farewell.refresh_from_db()
    assert (farewell.pinned, farewell.priority) == (None, 2)
    # back to the default with null
    owner = api(users["owner"])
    owner.patch(f"/api/plan_nodes/{farewell.pk}/", {"pinned": False}, format="json")
    reset = owner.patch(f"/api/plan_nodes/{farewell.pk}/", {"pinned": None}, format="json")
    assert reset.status_code == 200 and reset.json()["pinned"] is None


@pytest.mark.django_db
def test_plan_page_pins_for_owners_only(world, client):
    project, users = world
    farewell, conventions = node(project, "Farewell"), node(project, "Conventions")
    url = reverse("plan-pin", args=[project.pk])

    # the owner sees the buttons and the default pin; pins Farewell, unpins Conventions
    client.force_login(users["owner"])
    page = client.get(reverse("plan-tree", args=[project.pk])).content.decode()
    assert 'id="pin-form"' in page and f'data-testid="pin-{farewell.pk}"' in page
    assert "1 section pinned" in page
    assert client.post(url, {"pin": f"{farewell.pk}:on"}).status_code == 302
    assert client.post(url, {"pin": f"{conventions.pk}:off"}).status_code == 302
    farewell.refresh_from_db()
    conventions.refresh_from_db()
    assert (farewell.pinned, conventions.pinned) == (True, False)

    # bad input: a clear message, nothing changed, no error page
    for value, says in ((f"{farewell.pk}:sideways", "on, off or default"), ("abc:on", "No plan node 'abc'")):
        response = client.post(url, {"pin": value}, follow=True)
        assert response.status_code == 200 and says in html.unescape(response.content.decode())
    farewell.refresh_from_db()
    assert farewell.pinned is True

    # an operator sees the pins but no buttons, and cannot post one
    client.force_login(users["operator"])
    page = client.get(reverse("plan-tree", args=[project.pk])).content.decode()
    assert 'id="pin-form"' not in page and "pinned</span>" in page
    assert client.post(url, {"pin": f"{farewell.pk}:off"}).status_code == 403
    client.force_login(users["non-member"])
    assert client.post(url, {"pin": f"{farewell.pk}:off"}).status_code == 404
    farewell.refresh_from_db()
    assert farewell.pinned is True


@pytest.mark.django_db(transaction=True)
def test_plan_pin_unpin_and_pins_from_the_cli(world, subprocess_env, tmp_path):
    project, users = world

    def cli(*args):
        return autopilot(subprocess_env, "plan", *args, cwd=tmp_path)

    pinned = last_json(cli("pin", "Ctx", "Farewell", "--user", "owner", "--json"))
    assert (pinned["title"], pinned["pinned"], pinned["in_context"]) == ("Farewell", True, True)
    assert "Conventions" in ok(cli("unpin", "Ctx", "Conventions", "--user", "owner")).stdout
    listing = last_json(cli("pins", "Ctx", "--json"))
    assert [p["title"] for p in listing["pinned"]] == ["Farewell"]
    back = last_json(cli("unpin", "Ctx", "Conventions", "--default", "--user", "owner", "--json"))
    assert (back["pinned"], back["in_context"]) == (None, True)
    assert "by name" in ok(cli("pins", "Ctx")).stdout

    # refused and bad input: one line naming the problem, nothing changed
    assert_usage_error(cli("pin", "Ctx", "Greeting", "--user", "operator"), "owner role")
    assert_usage_error(
        cli("pin", "Ctx", "No such section", "--user", "owner"), "No plan node 'No such section'"
    )
    assert node(project, "Greeting").pinned is None


# --- the project's context budget --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("who", "status"), [("owner", 200), ("operator", 403), ("viewer", 403)])
def test_context_budget_through_the_api(world, who, status):
    project, users = world
    response = api(users[who]).patch(
        f"/api/projects/{project.pk}/", {"context_budget_tokens": 4000}, format="json"
    )
    assert response.status_code == status, response.content
    project.refresh_from_db()
    assert project.context_budget_tokens == (4000 if status == 200 else None)


@pytest.mark.django_db
def test_context_budget_bad_input(world):
    project, users = world
    owner = api(users["owner"])
    for value in (100, -1, "lots", 3_000_000):
        response = owner.patch(
            f"/api/projects/{project.pk}/", {"context_budget_tokens": value}, format="json"
        )
        assert response.status_code == 400 and "context_budget_tokens" in response.json(), value
    project.refresh_from_db()
    assert project.context_budget_tokens is None


@pytest.mark.django_db(transaction=True)
def test_context_budget_from_the_cli(world, subprocess_env, tmp_path):
    project, users = world
    ok(
        autopilot(
            subprocess_env,
            "project",
            "edit",
            "Ctx",
            "--context-budget",
            "6000",
            "--user",
            "owner",
            cwd=tmp_path,
        )
    )
    project.refresh_from_db()
    assert project.context_budget_tokens == 6000
    assert_usage_error(
        autopilot(
            subprocess_env,
            "project",
            "edit",
            "Ctx",
            "--context-budget",
            "10",
            "--user",
            "owner",
            cwd=tmp_path,
        ),
        "500",
    )
    assert_usage_error(
        autopilot(
            subprocess_env,
            "project",
            "edit",
            "Ctx",
            "--no-context-budget",
            "--user",
            "operator",
            cwd=tmp_path,
        ),
        "owner",
    )
    ok(
        autopilot(
            subprocess_env, "project", "edit", "Ctx", "--no-context-budget", "--user", "owner", cwd=tmp_path
        )
    )
    project.refresh_from_db()
    assert project.context_budget_tokens is None
