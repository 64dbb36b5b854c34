"""The sessions history (/sessions/ and the project's Runs tab), compare, usage and the launch dialog,
through the real test client; backend_status and run creation refusing an unconfigured backend."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from autopilot.errors import ApplicationError
from blueprints.models import Task
from runs import services
from runs.backends import backend_status
from runs.budget import usage_record
from runs.models import ExecutionRun, UsageRecord
from runs.worker import execute_run
from tests.factories import (
    ExecutionRunFactory,
    MembershipFactory,
    ProjectFactory,
    TaskFactory,
    UserFactory,
)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def row_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'data-testid="session-row" data-run="(\d+)"', html)]


@pytest.fixture
def no_keys(settings):
    settings.ANTHROPIC_API_KEY = ""
    settings.OPENAI_API_KEY = ""


# --- Scope -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_sessions_show_only_runs_of_visible_projects(project, viewer):
    mine = ExecutionRunFactory(project=project, prompt="visible prompt")
    hidden_project = ProjectFactory(name="Secret project")
    hidden = ExecutionRunFactory(project=hidden_project, prompt="hidden prompt")
    client = client_for(viewer)

    page = client.get("/sessions/")
    html = page.content.decode()
    assert page.status_code == 200
    assert row_ids(html) == [mine.pk] and "visible prompt" in html
    assert "hidden prompt" not in html and "Secret project" not in html

    # naming a project the user cannot see shows nothing, never an error revealing it exists
    page = client.get(f"/sessions/?project={hidden_project.pk}")
    assert page.status_code == 200 and row_ids(page.content.decode()) == []
    assert "Secret project" not in page.content.decode()
    # nor does the API, which filters through the same FilterSet
    api = client.get(f"/api/runs/?project={hidden_project.pk}")
    assert api.status_code == 200 and api.json()["results"] == []
    assert hidden.pk not in [r["id"] for r in client.get("/api/runs/").json()["results"]]


@pytest.mark.django_db
def test_a_user_without_projects_sees_an_empty_history():
    ExecutionRunFactory(prompt="someone else's")
    page = client_for(UserFactory()).get("/sessions/")
    assert page.status_code == 200 and row_ids(page.content.decode()) == []
    assert "0 runs in this selection" in page.content.decode()


# --- Filters, sorting, paging, totals ----------------------------------------------------------------


@pytest.mark.django_db
def test_filters_narrow_the_table_and_the_totals(project, viewer):
    task = TaskFactory(project=project)
    old = ExecutionRunFactory(project=project, status="failed", prompt="old failure", cost_usd=Decimal("1.5"))
    ExecutionRun.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=10))
    tested = ExecutionRunFactory(
        project=project,
        status="succeeded",
        role="test",
        task=task,
        prompt="run the tests",
        cost_usd=Decimal("0.25"),
        turns=3,
        input_tokens=10,
        output_tokens=5,
    )
    summary = ExecutionRunFactory(
        project=project,
        status="succeeded",
        agent_backend="test_worker",
        prompt="plain",
        result_summary="rewrote the PARSER",
        cost_usd=Decimal("2"),
        turns=4,
    )
    client = client_for(viewer)

    def ids(query: str) -> set[int]:
        response = client.get("/sessions/?" + query)
        assert response.status_code == 200, response.content.decode()[:500]
        return set(row_ids(response.content.decode()))

    assert ids("status=succeeded") == {tested.pk, summary.pk}
    # the filter form submits its empty fields: they mean "any"
    assert ids("project=&status=&agent_backend=&role=&task=&since=&until=&q=&sort=") == {
        old.pk,
        tested.pk,
        summary.pk,
    }
    assert ids("status=failed&status=succeeded") == {old.pk, tested.pk, summary.pk}
    assert ids("agent_backend=test_worker") == {summary.pk}
    assert ids("role=test") == {tested.pk}
    assert ids(f"task={task.pk}") == {tested.pk}
    assert ids("q=parser") == {summary.pk}  # the summary, case-insensitive
    assert ids("q=tests") == {tested.pk}  # the prompt
    since = (timezone.localdate() - dt.timedelta(days=2)).isoformat()
    assert ids(f"since={since}") == {tested.pk, summary.pk}
    until = (timezone.localdate() - dt.timedelta(days=5)).isoformat()
    assert ids(f"until={until}") == {old.pk}

    # totals cover the filtered set
    html = client.get("/sessions/?status=succeeded").content.decode()
    assert "2 runs in this selection" in html
    assert re.search(r'data-total="cost">\$2\.2500<', html) and re.search(r'data-total="turns">7<', html)
    assert re.search(r'data-total="tokens">15<', html)


@pytest.mark.django_db
def test_sorting_by_cost_and_paging(project, viewer):
    runs = [
        ExecutionRunFactory(project=project, cost_usd=Decimal(i) / 100, prompt=f"run {i}") for i in range(30)
    ]
    client = client_for(viewer)

    first = client.get("/sessions/?sort=-cost").content.decode()
    assert row_ids(first)[:3] == [runs[29].pk, runs[28].pk, runs[27].pk] and len(row_ids(first)) == 25
    assert "Page 1 of 2" in first and 'aria-sort="descending"' in first
    # the header link toggles the direction and keeps the other parameters, without the page
    assert 'href="?sort=cost"' in first
    second = client.get("/sessions/?sort=-cost&page=2").content.decode()
    assert row_ids(second) == [r.pk for r in reversed(runs[:5])] and "Page 2 of 2" in second
    assert "30 runs in this selection" in second  # the totals are the whole set's, not the page's
    ascending = client.get("/sessions/?sort=cost").content.decode()
    assert row_ids(ascending)[0] == runs[0].pk
    # a page out of range or not a number shows the nearest page, not an error
    assert client.get("/sessions/?page=99").status_code == 200
    assert "Page 1 of 2" in client.get("/sessions/?page=abc").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=exploded", "Status"),
        ("since=yesterday", "From"),
        ("task=abc", "Task"),
        ("sort=password", "Sort"),
        ("agent_backend=gpt", "Backend"),
    ],
    ids=["status", "date", "task", "sort", "backend"],
)
def test_bad_filter_values_show_the_error_not_a_500(project, viewer, query, field):
    ExecutionRunFactory(project=project)
    response = client_for(viewer).get("/sessions/?" + query)
    html = response.content.decode()
    assert response.status_code == 400
    assert 'id="filter-errors"' in html and field in html.split('id="filter-errors"')[1][:300]
    assert row_ids(html) == []
    # the API answers the same values with a 400 naming the field
    api = client_for(viewer).get("/api/runs/?" + query)
    assert api.status_code == 400, api.content
    assert query.split("=")[0] in api.json(), api.json()


@pytest.mark.django_db
def test_api_sorts_by_tokens_and_duration(project, viewer):
    now = timezone.now()
    short = ExecutionRunFactory(
        project=project, started_at=now, ended_at=now + dt.timedelta(seconds=5), input_tokens=500
    )
    long = ExecutionRunFactory(
        project=project, started_at=now, ended_at=now + dt.timedelta(seconds=50), input_tokens=5
    )
    client = client_for(viewer)
    assert [r["id"] for r in client.get("/api/runs/?sort=-tokens").json()["results"]] == [short.pk, long.pk]
    assert [r["id"] for r in client.get("/api/runs/?sort=duration").json()["results"]] == [short.pk, long.pk]
    html = client.get("/sessions/?sort=-duration").content.decode()
    assert row_ids(html) == [long.pk, short.pk] and "50 s" in html and "avg 28 s" in html


@pytest.mark.django_db
def test_project_runs_tab_is_the_same_view_filtered_to_the_project(project, viewer):
    other = ProjectFactory()
    MembershipFactory(project=other, user=viewer, role="viewer")
    elsewhere = ExecutionRunFactory(project=other)
    runs = [ExecutionRunFactory(project=project, turns=i) for i in range(60)]
    client = client_for(viewer)

    html = client.get(f"/projects/{project.pk}/runs/?sort=-turns").content.decode()
    assert row_ids(html)[0] == runs[-1].pk and elsewhere.pk not in row_ids(html)
    assert "Page 1 of 3" in html and "60 runs in this selection" in html
    # the project in the URL wins over a project in the query
    html = client.get(f"/projects/{project.pk}/runs/?project={other.pk}").content.decode()
    assert elsewhere.pk not in row_ids(html) and len(row_ids(html)) == 25
    # the live refresh renders the table alone, keeping the filters
    part = client.get(f"/projects/{project.pk}/runs/?part=table&sort=turns&page=3", HTTP_HX_REQUEST="true")
    text = part.content.decode()
    assert text.lstrip().startswith('<section class="card flush" id="runs">')
    assert row_ids(text) == [r.pk for r in runs[50:]] and "part=table" not in text


# --- Compare ---------------------------------------------------------------------------------------

TWO = [{"write": "a.txt", "content": "a\n"}, {"finish": "done"}]
THREE = [{"write": "a.txt", "content": "a\n"}, {"write": "b.txt", "content": "b\n"}, {"finish": "done"}]


@pytest.mark.django_db(transaction=True)
def test_compare_two_runs_side_by_side(project, viewer):
    a = services.run_create(project=project, prompt="two steps", run_settings={"script": TWO}, enqueue=False)
    b = services.run_create(
        project=project, prompt="three steps", run_settings={"script": THREE}, enqueue=False
    )
    assert execute_run(a.pk) == "succeeded" and execute_run(b.pk) == "succeeded"
    client = client_for(viewer)

    response = client.get(f"/sessions/compare/?run={a.pk}&run={b.pk}")
    html = response.content.decode()
    assert response.status_code == 200
    assert f"Run #{a.pk}" in html and f"Run #{b.pk}" in html and "two steps" in html and "three steps" in html
    for row in ("outcome", "cost", "duration", "turns", "steps"):
        assert f'data-row="{row}"' in html
    assert "<code>write_file</code>" in html  # tool use
    assert "b.txt" in html and "only B" in html  # the aligned steps
    assert client.get(f"/sessions/compare/?a={a.pk}&b={b.pk}").status_code == 200


@pytest.mark.django_db
def test_compare_needs_two_visible_runs(project, viewer):
    a = ExecutionRunFactory(project=project)
    hidden = ExecutionRunFactory(project=ProjectFactory(name="Hidden one"))
    client = client_for(viewer)
    for query in (f"run={a.pk}", f"run={a.pk}&run={a.pk}", "", f"run={a.pk}&run=x&run=y"):
        response = client.get("/sessions/compare/?" + query)
        assert response.status_code == 400 and "Pick exactly two" in response.content.decode()
    response = client.get(f"/sessions/compare/?run={a.pk}&run={hidden.pk}")
    assert response.status_code == 404 and "Hidden one" not in response.content.decode()
    assert client.get(f"/sessions/compare/?run={a.pk}&run=abc").status_code == 404


# --- Usage -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_usage_page_charts_spend_with_values_scoped_to_visible_projects(project, viewer):
    project.daily_budget_usd = Decimal("5")
    project.save(update_fields=["daily_budget_usd"])
    run = ExecutionRunFactory(project=project, agent_backend="native", model="claude-sonnet-4-5")
    usage_record(
        run=run, model="claude-sonnet-4-5", input_tokens=1000, output_tokens=200, cost_usd=Decimal("1.25")
    )
    earlier = usage_record(run=run, model="gpt-5", input_tokens=10, output_tokens=10, cost_usd=Decimal("0.5"))
    UsageRecord.objects.filter(pk=earlier.pk).update(created_at=timezone.now() - dt.timedelta(days=3))
    hidden = ExecutionRunFactory(project=ProjectFactory(name="Hidden spender"))
    usage_record(run=hidden, model="claude-opus-4-6", cost_usd=Decimal("99"))
    client = client_for(viewer)

    response = client.get("/usage/")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('data-testid="chart"') >= 6 and "<svg" in html
    assert 'data-testid="total-spend">$1.7500<' in html
    values = re.findall(r'data-testid="chart-value"[^>]*>([^<]+)<', html)
    assert "$1.25" in values and "$0.50" in values and "$1.75" in values  # per day, per model, per project
    assert "claude-sonnet-4-5" in html and "gpt-5" in html and "native tool-use loop" in html
    assert "daily cap $5.00" in html  # the cap marker
    assert "Hidden spender" not in html and "$99" not in html and "claude-opus-4-6" not in html
    assert 'style="' not in html.split("<main>")[1]

    # a range that leaves the earlier record out
    start = timezone.localdate().isoformat()
    html = client.get(f"/usage/?start={start}&end={start}").content.decode()
    assert 'data-testid="total-spend">$1.2500<' in html and "gpt-5" not in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=2026-13-01", "Enter a valid date"),
        ("start=2026-02-10&end=2026-02-01", "start date is after the end date"),
        ("start=2020-01-01&end=2026-01-01", "at most 366 days"),
    ],
    ids=["bad-date", "reversed", "too-long"],
)
def test_usage_bad_range_shows_the_error(viewer, query, message):
    response = client_for(viewer).get("/usage/?" + query)
    assert response.status_code == 400 and message in response.content.decode()


@pytest.mark.django_db
def test_usage_charts_cycle_time_and_rework_from_the_learning_metrics(project, viewer):
    now = timezone.now()
    TaskFactory(
        project=project,
        status=Task.Status.DONE,
        started_at=now - dt.timedelta(hours=2),
        completed_at=now,
        plan_order=2,
        rework_count=1,
        attempts=2,
    )
    TaskFactory(
        project=project,
        status=Task.Status.DONE,
        started_at=now - dt.timedelta(hours=1),
        completed_at=now,
        plan_order=1,
        attempts=1,
    )
    html = client_for(viewer).get("/usage/").content.decode()
    assert 'data-chart="cycle"' in html and 'data-chart="rework"' in html
    values = re.findall(r'data-testid="chart-value"[^>]*>([^<]+)<', html)
    assert "1.5 h" in values  # mean cycle time of 2 h and 1 h
    assert "50%" in values and "1.50" in values  # one of two reworked; attempts 2 and 1


# --- Backends: configured or not, and why -------------------------------------------------------------


def test_backend_status_names_what_is_missing(settings, no_keys):
    assert backend_status("scripted") == (True, "") and backend_status("test_worker") == (True, "")
    assert backend_status("claude_code") == (False, "no ANTHROPIC_API_KEY configured")
    assert backend_status("native", "claude-sonnet-4-5") == (False, "no ANTHROPIC_API_KEY configured")
    assert backend_status("native", "openai:gpt-5") == (False, "no OPENAI_API_KEY configured")
    assert backend_status("native") == (False, "no ANTHROPIC_API_KEY or OPENAI_API_KEY configured")
    settings.OPENAI_API_KEY = "sk-test"
    assert backend_status("native", "gpt-5") == (True, "")
    assert backend_status("native", "claude-haiku-4-5") == (False, "no ANTHROPIC_API_KEY configured")
    settings.AUTOPILOT_CODEX_CLI = ""
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    assert backend_status("claude_code") == (True, "")
    assert backend_status("nonsense")[0] is False


@pytest.mark.django_db
def test_run_creation_refuses_an_unconfigured_backend_with_the_reason(project, no_keys):
    with pytest.raises(
        ApplicationError, match="Claude Code cannot run here: no ANTHROPIC_API_KEY configured"
    ):
        services.run_create(project=project, prompt="hello", agent_backend="claude_code")
    with pytest.raises(ApplicationError, match="no OPENAI_API_KEY configured"):
        services.run_create(project=project, prompt="hello", agent_backend="native", model="gpt-5")
    assert not ExecutionRun.objects.exists()


# --- Launch ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_launch_form_offers_only_configured_backends(project, operator, no_keys):
    html = client_for(operator).get(f"/runs/new/?project={project.pk}").content.decode()
    options = dict(
        re.findall(r'<option value="(\w+)"([^>]*)>', html.split('name="agent"')[1].split("</select>")[0])
    )
    assert "disabled" not in options["scripted"] and "disabled" not in options["test_worker"]
    assert "disabled" in options["claude_code"] and "disabled" in options["native"]
    assert "no ANTHROPIC_API_KEY configured" in html
    assert project.name in html


@pytest.mark.django_db
def test_launch_a_task_run_from_the_dialog(project, operator, django_capture_on_commit_callbacks):
    task = TaskFactory(project=project, title="Write the parser")
    client = client_for(operator)
    form = client.get(f"/runs/new/?task={task.pk}", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in form and "Run task #" in form and "Write the parser" in form

    response = client.post(
        "/runs/new/",
        {"project": project.pk, "task": task.pk, "agent": "scripted", "budget": "1"},
        HTTP_HX_REQUEST="true",
    )
    run = ExecutionRun.objects.get()
    assert response.status_code == 200 and response["HX-Redirect"] == f"/runs/{run.pk}/"
    assert run.task == task and run.prompt == "Write the parser" and run.created_by == operator
    # without htmx: a plain redirect
    response = client.post(
        "/runs/new/", {"project": project.pk, "prompt": "free prompt", "agent": "scripted"}
    )
    assert response.status_code == 302 and ExecutionRun.objects.filter(prompt="free prompt").exists()

    # the task page lists its runs, with links
    page = client.get(f"/projects/{project.pk}/tasks/{task.pk}/").content.decode()
    assert f'data-testid="task-run" data-run="{run.pk}"' in page and f'href="/runs/{run.pk}/"' in page
    assert "Run this task" in page


@pytest.mark.django_db
def test_launch_errors_are_shown_and_write_nothing(project, operator, no_keys):
    other_task = TaskFactory(project=ProjectFactory())
    client = client_for(operator)
    cases = [
        ({"prompt": "x", "agent": "scripted"}, "Choose a project"),
        ({"project": project.pk, "prompt": "", "agent": "scripted"}, "needs a prompt"),
        ({"project": project.pk, "prompt": "x", "agent": "scripted", "budget": "-2"}, "budget"),
        ({"project": project.pk, "task": other_task.pk, "agent": "scripted"}, "is not a task of"),
        ({"project": project.pk, "prompt": "x", "agent": "claude_code"}, "no ANTHROPIC_API_KEY configured"),
    ]
    for data, message in cases:
        response = client.post("/runs/new/", data, HTTP_HX_REQUEST="true")
        assert response.status_code == 400 and message in response.content.decode(), data
    assert not ExecutionRun.objects.exists()


@pytest.mark.django_db
def test_viewers_see_no_launch_controls_and_cannot_launch(project, viewer):
    task = TaskFactory(project=project)
    client = client_for(viewer)
    assert 'data-testid="launch-button"' not in client.get("/sessions/").content.decode()
    assert (
        'data-testid="launch-button"'
        not in client.get(f"/projects/{project.pk}/tasks/{task.pk}/").content.decode()
    )
    assert 'id="launch-form"' not in client.get(f"/projects/{project.pk}/runs/").content.decode()
    assert 'id="launch-none"' in client.get("/runs/new/").content.decode()
    response = client.post("/runs/new/", {"project": project.pk, "prompt": "x", "agent": "scripted"})
    assert response.status_code == 403 and "operator role" in response.content.decode()
    stranger = client_for(UserFactory())
    response = stranger.post("/runs/new/", {"project": project.pk, "prompt": "x", "agent": "scripted"})
    assert response.status_code == 404 and project.name not in response.content.decode()
    assert not ExecutionRun.objects.exists()
