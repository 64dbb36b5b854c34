"""The dashboard (session cards), the needs-input badge, the projects page and the error pages, through
Django's test client against the real database (browser behaviour: tests/browser/test_dashboard.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.views.defaults import server_error

from autopilot.manager.dashboard import is_demo_project
from autopilot.manager.explain import manager_plan
from autopilot.models import AutonomyMode, Event, Project
from runs import services
from runs.models import ExecutionRun, ExecutionStep
from tests.factories import (
    ExecutionRunFactory,
    ExecutionStepFactory,
    MembershipFactory,
    ProjectFactory,
    TaskFactory,
    UserFactory,
    grant_register,
)
from tests.factories import (
    repo_root_for_tests as repo_root_dir,
)
from tests.gitrepo import make_repo

S = ExecutionRun.Status


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def cards(html: str) -> list[str]:
    """Run ids of the cards in page order."""
    return re.findall(r'data-testid="run-card" data-run="(\d+)"', html)


def world(projects: int, runs_per_project: int, user):
    made = []
    for i in range(projects):
        project = ProjectFactory()
        MembershipFactory(project=project, user=user, role="operator" if i % 2 == 0 else "viewer")
        for j in range(runs_per_project):
            status = (S.RUNNING, S.QUEUED, S.WAITING_APPROVAL, S.SUCCEEDED)[j % 4]
            run = ExecutionRunFactory(project=project, status=status, task=TaskFactory(project=project))
            if status == S.WAITING_APPROVAL:
                ExecutionStepFactory(run=run, status=ExecutionStep.Status.NEEDS_APPROVAL)
            made.append(run)
    return made


@pytest.mark.django_db
def test_dashboard_orders_cards_waiting_first_then_running_then_queued_with_positions():
    user = UserFactory()
    project = ProjectFactory()
    MembershipFactory(project=project, user=user, role="operator")
    queued_late = ExecutionRunFactory(project=project, status=S.QUEUED, priority=2)
    queued_urgent = ExecutionRunFactory(project=project, status=S.QUEUED, priority=5)
    running = ExecutionRunFactory(project=project, status=S.RUNNING)
    waiting = ExecutionRunFactory(project=project, status=S.WAITING_APPROVAL)
    step = ExecutionStepFactory(run=waiting, status=ExecutionStep.Status.NEEDS_APPROVAL)
    done = ExecutionRunFactory(project=project, status=S.SUCCEEDED)
    other = ExecutionRunFactory(status=S.RUNNING)  # a project the user cannot see

    html = client_for(user).get("/").content.decode()

    assert cards(html) == [str(r.pk) for r in (waiting, running, queued_urgent, queued_late, done)]
    assert str(other.pk) not in cards(html)
    assert "#1 in queue" in html and "#2 in queue" in html
    assert f'name="step" value="{step.pk}"' in html  # Approve on the waiting card names its step
    assert html.count('data-testid="card-stop"') == 4  # every active card, not the finished one
    assert "scripted (demo)" in html and ">scripted<" not in html


@pytest.mark.django_db
def test_dashboard_shows_no_controls_to_a_viewer():
    user = UserFactory()
    project = ProjectFactory()
    MembershipFactory(project=project, user=user, role="viewer")
    waiting = ExecutionRunFactory(project=project, status=S.WAITING_APPROVAL)
    ExecutionStepFactory(run=waiting, status=ExecutionStep.Status.NEEDS_APPROVAL)
    ExecutionRunFactory(project=project, status=S.RUNNING)

    html = client_for(user).get("/dashboard/").content.decode()

    assert len(cards(html)) == 2
    assert "card-stop" not in html and "card-approve" not in html
    assert 'data-testid="card-view"' in html


@pytest.mark.django_db
def test_dashboard_filters_by_project_and_status_and_counts_what_is_hidden():
    user = UserFactory()
    runs = world(2, 4, user)
    first = runs[0].project
    client = client_for(user)

    html = client.get("/", {"project": first.pk}).content.decode()
    assert set(cards(html)) == {str(r.pk) for r in runs if r.project_id == first.pk}
    assert "3 hidden by the filters" in html  # the other project's three active runs

    html = client.get("/", {"status": "waiting"}).content.decode()
    assert set(cards(html)) == {str(r.pk) for r in runs if r.status == S.WAITING_APPROVAL}
    assert "4 hidden by the filters" in html

    partial = client.get("/", {"status": "queued", "part": "board"}, HTTP_HX_REQUEST="true")
    assert partial.content.decode().lstrip().startswith('<div id="board"')
    assert set(cards(partial.content.decode())) == {str(r.pk) for r in runs if r.status == S.QUEUED}


@pytest.mark.django_db
def test_dashboard_runs_a_constant_number_of_queries(django_assert_max_num_queries):
    user = UserFactory()
    client = client_for(user)
    client.get("/")  # warm the session
    with django_assert_max_num_queries(12) as small:
        client.get("/")
    world(2, 4, user)
    with django_assert_max_num_queries(12) as few:
        client.get("/")
    world(10, 12, user)
    with django_assert_max_num_queries(len(few.captured_queries)) as many:
        response = client.get("/")
    assert len(cards(response.content.decode())) > 100
    assert len(many.captured_queries) == len(few.captured_queries) >= len(small.captured_queries)


@pytest.mark.django_db
def test_needs_input_badge_counts_waiting_runs_of_visible_projects_only():
    user = UserFactory()
    project = ProjectFactory()
    MembershipFactory(project=project, user=user, role="viewer")
    ExecutionRunFactory(project=project, status=S.WAITING_APPROVAL)
    ExecutionRunFactory(project=project, status=S.RUNNING)
    ExecutionRunFactory(status=S.WAITING_APPROVAL)  # another project

    html = client_for(user).get("/needs-input/").content.decode()

    assert 'data-count="1"' in html and "1</span> needs input" in html
    assert reverse("needs-input") in client_for(user).get(f"/projects/{project.pk}/").content.decode()


# --- The projects page ---------------------------------------------------------------------------------


@pytest.fixture
def roots(settings, tmp_path):
    root = repo_root_dir().resolve()
    root.mkdir(parents=True, exist_ok=True)
    settings.AUTOPILOT_REPO_ROOTS = [root]
    return root


@pytest.mark.django_db
def test_projects_table_lists_visible_projects_with_their_figures():
    user = UserFactory()
    mine = ProjectFactory(name="Mine")
    MembershipFactory(project=mine, user=user, role="owner")
    ExecutionRunFactory(project=mine, status=S.RUNNING, cost_usd="0.25")
    ExecutionRunFactory(project=mine, status=S.SUCCEEDED, cost_usd="0.50")
    ProjectFactory(name="Hidden")

    html = client_for(user).get("/projects/").content.decode()

    assert "Mine" in html and "Hidden" not in html
    assert "$0.75" in html  # spend today
    assert 'data-testid="remove-project"' in html  # the owner may remove it
    assert 'id="add-project"' not in html  # no right to register repositories: no form


@pytest.mark.django_db
def test_add_project_detects_the_branch_and_refuses_bad_paths_in_the_form(roots):
    user = grant_register(UserFactory())
    repo = make_repo(Path(tempfile.mkdtemp(dir=roots)) / "web-added")
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "-b", "trunk"], check=True)
    client = client_for(user)
    assert 'id="add-project"' in client.get("/projects/").content.decode()

    hint = client.get("/projects/branch/", {"repo_path": str(repo)}).content.decode()
    assert "trunk" in hint
    outside = client.get("/projects/branch/", {"repo_path": str(Path(settings.BASE_DIR))}).content.decode()
    assert "detected" not in outside  # outside the repository roots nothing is looked at

    bad = client.post("/projects/", {"name": "Nope", "repo_path": str(roots / "missing")})
    assert bad.status_code == 400
    assert "does not exist" in bad.content.decode() and not Project.objects.filter(name="Nope").exists()

    response = client.post(
        "/projects/", {"name": "Web added", "repo_path": str(repo), "test_command": "pytest -q"}
    )
    project = Project.objects.get(name="Web added")
    assert response.status_code == 302 and response["Location"] == f"/projects/{project.pk}/"
    assert project.base_branch == "trunk" and project.test_command == "pytest -q"
    assert project.memberships.get().user == user


@pytest.mark.django_db
def test_add_project_without_the_right_is_refused(roots):
    user = UserFactory()
    repo = make_repo(Path(tempfile.mkdtemp(dir=roots)) / "no-right")
    response = client_for(user).post("/projects/", {"name": "X", "repo_path": str(repo)})
    assert response.status_code == 403 and "register repositories" in response.content.decode()
    assert not Project.objects.filter(name="X").exists()
    hint = client_for(user).get("/projects/branch/", {"repo_path": str(repo)}).content.decode()
    assert "detected" not in hint  # nothing learnt about the server's disk without the right


@pytest.mark.django_db
def test_remove_project_unregisters_it_and_keeps_the_files():
    user = UserFactory()
    project = ProjectFactory()
    MembershipFactory(project=project, user=user, role="owner")
    repo = Path(project.repo_path)
    client = client_for(user)

    response = client.post(f"/projects/{project.pk}/remove/", follow=True)

    assert not Project.objects.filter(pk=project.pk).exists()
    assert (repo / ".git").is_dir()  # the repository is untouched
    assert "was not touched" in response.content.decode()


@pytest.mark.django_db
def test_remove_project_needs_the_owner_role(operator, project):
    response = client_for(operator).post(f"/projects/{project.pk}/remove/")
    assert response.status_code == 403 and Project.objects.filter(pk=project.pk).exists()


# --- Consistency, human names, error pages ----------------------------------------------------------------


@pytest.mark.django_db
def test_notices_are_messages_not_url_parameters(operator, project):
    client = client_for(operator)
    response = client.post(f"/projects/{project.pk}/manager/tick/")
    assert response.status_code == 302 and "notice" not in response["Location"]
    page = client.get(response["Location"]).content.decode()
    assert "Tick: 0 started" in page
    spoofed = client.get(f"/projects/{project.pk}/manager/?notice=Your+account+is+locked").content.decode()
    assert "Your account is locked" not in spoofed


@pytest.mark.django_db
def test_mode_change_tells_every_panel_and_the_header_offers_only_allowed_controls(owner, viewer, project):
    response = client_for(owner).post(
        f"/projects/{project.pk}/manager/autonomy/", {"autonomy_mode": "semi_auto"}, HTTP_HX_REQUEST="true"
    )
    assert response["HX-Trigger"] == "autopilot:project-changed"
    plan = client_for(owner).get(f"/projects/{project.pk}/manager/").content.decode()
    assert 'data-testid="plan-mode">Semi-auto<' in plan
    header = client_for(viewer).get(f"/projects/{project.pk}/manager/autonomy/").content.decode()
    assert "Semi-auto" in header and 'name="autonomy_mode"' not in header and "pause" not in header
    for path in ("tasks/", "runs/", "plan/", "blueprints/"):
        page = client_for(viewer).get(f"/projects/{project.pk}/{path}").content.decode()
        assert 'name="autonomy_mode"' not in page and 'data-testid="pause"' not in page, path


@pytest.mark.django_db
def test_a_todo_task_is_not_promised_ready_while_the_mode_is_off(project):
    TaskFactory(project=project, status="todo")
    assert project.autonomy_mode == AutonomyMode.OFF
    reasons = [
        r
        for row in manager_plan(project)["not_started"] + manager_plan(project)["would_start"]
        for r in row["reasons"]
    ]
    assert not any("the next tick marks it ready" in r for r in reasons), reasons


@pytest.mark.django_db
def test_replay_shows_human_kinds_and_inputs_as_key_value_rows(operator, project):
    run = ExecutionRunFactory(project=project, status=S.SUCCEEDED)
    ExecutionStepFactory(
        run=run,
        kind=ExecutionStep.Kind.LLM_TURN,
        input={"messages": 3, "note": "hi"},
        status=ExecutionStep.Status.COMPLETED,
    )
    html = client_for(operator).get(f"/runs/{run.pk}/replay/?step=1").content.decode()
    assert "LLM turn" in html and "llm_turn</span>" not in html
    assert "<dt>messages</dt>" in html and "{&#x27;messages&#x27;" not in html


@pytest.mark.django_db
def test_demo_label_only_for_the_demo_project(operator, project):
    project.model_matrix = {"code": {"agent": "scripted", "model": "scripted"}}
    project.save()
    assert "demo-label" not in client_for(operator).get(f"/projects/{project.pk}/").content.decode()
    Path(settings.DATA_DIR).mkdir(parents=True, exist_ok=True)
    demo_repo = make_repo(Path(tempfile.mkdtemp(dir=settings.DATA_DIR, prefix="demo-repo-")))
    try:
        demo = Project.objects.create(name="Demo", slug="demo", repo_path=str(demo_repo))
        MembershipFactory(project=demo, user=operator, role="viewer")
        assert "demo-label" in client_for(operator).get(f"/projects/{demo.pk}/").content.decode()
        # a user's own project named "Demo" elsewhere is not the demo
        demo.repo_path = project.repo_path
        assert not is_demo_project(demo)
    finally:
        shutil.rmtree(demo_repo)


@pytest.mark.django_db
def test_error_pages_are_inside_the_layout(operator, settings):
    settings.DEBUG = False
    page = client_for(operator).get("/no-such-page/")
    text = page.content.decode()
    assert page.status_code == 404 and 'class="topbar"' in text and "Not found" in text
    # Django's handler renders 500.html without the request: no user, session or database needed
    with CaptureQueriesContext(connection) as queries:
        response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500 and 'class="topbar"' in response.content.decode()
    assert "Something went wrong" in response.content.decode() and len(queries) == 0


@pytest.mark.django_db
def test_events_pushed_for_a_card_exist_for_every_run_status_change(project):
    run = ExecutionRunFactory(project=project, status=S.QUEUED)
    services.run_stop(run=run, actor=None, reason="test")
    assert Event.objects.filter(project=project, subject_type="executionrun", subject_id=run.pk).exists()
