import pytest
from django.test import Client

from autopilot.manager.models import Proposal
from autopilot.models import Event
from runs.models import ExecutionRun
from tests.factories import ExecutionRunFactory
from tests.manager.conftest import make_task, set_mode

pytestmark = pytest.mark.django_db


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_header_controls_change_mode_pause_and_parallelism_through_htmx(project, owner):
    operator = owner  # the mode and parallelism are an owner's (autopilot.permissions.FIELD_ROLES)
    client = login(operator)
    page = client.get(f"/projects/{project.pk}/")
    assert b'id="autopilot-controls"' in page.content and b'name="autonomy_mode"' in page.content
    url = f"/projects/{project.pk}/manager/autonomy/"
    response = client.post(
        url, {"autonomy_mode": "semi_auto", "max_parallel_runs": "4"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and b"Semi-auto" in response.content
    client.post(url, {"paused": "1"}, HTTP_HX_REQUEST="true")
    project.refresh_from_db()
    assert (project.autonomy_mode, project.max_parallel_runs, project.paused) == ("semi_auto", 4, True)
    event = Event.objects.filter(kind="project.autonomy").latest("id")
    assert event.actor == operator
    bad = client.post(url, {"max_parallel_runs": "0"}, HTTP_HX_REQUEST="true")
    assert b'role="alert"' in bad.content


def test_a_viewer_cannot_change_the_mode(project, viewer):
    response = login(viewer).post(
        f"/projects/{project.pk}/manager/autonomy/", {"autonomy_mode": "full_auto"}, HTTP_HX_REQUEST="true"
    )
    project.refresh_from_db()
    assert project.autonomy_mode == "off" and b"needs the owner role" in response.content
    assert response.status_code == 403


def test_manager_page_shows_plan_queue_proposals_and_metrics(project, operator):
    set_mode(project, "suggest")
    task = make_task(project, title="Write the parser")
    ExecutionRunFactory(project=project, status="queued")
    client = login(operator)
    client.post(f"/projects/{project.pk}/manager/tick/")
    proposal = Proposal.objects.get(task=task)
    page = client.get(f"/projects/{project.pk}/manager/")
    html = page.content.decode()
    assert page.status_code == 200
    for marker in (
        'id="manager-plan"',
        'id="queue"',
        'id="pending-proposals"',
        "Learning metrics",
        "Write the parser",
    ):
        assert marker in html
    # Accepting from the page starts the run
    response = client.post(f"/manager/proposals/{proposal.pk}/accept/")
    assert response.status_code == 302
    assert ExecutionRun.objects.filter(task=task, status="queued").exists()


def test_manager_page_partial_for_htmx(project, viewer):
    response = login(viewer).get(
        f"/projects/{project.pk}/manager/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="manager-queue"
    )
    assert b"Run queue" in response.content and b"<html" not in response.content


def test_strangers_get_404(project, user):
    assert login(user).get(f"/projects/{project.pk}/manager/").status_code == 404


def test_admin_action_ticks_the_selected_projects(project, client):
    from tests.factories import UserFactory

    admin_user = UserFactory(username="boss", is_superuser=True, is_staff=True)
    set_mode(project, "full_auto")
    task = make_task(project)
    client.force_login(admin_user)
    response = client.post(
        "/admin/autopilot/project/", {"action": "tick_now", "_selected_action": [project.pk]}, follow=True
    )
    assert response.status_code == 200 and b"1 run(s) started" in response.content
    assert ExecutionRun.objects.filter(task=task).exists()
