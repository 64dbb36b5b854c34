"""Run pages (htmx): the project's runs with the new-run form, the run detail page and its actions."""

from __future__ import annotations

import pytest
from django.test import Client

from runs import services
from runs.models import ExecutionRun, ExecutionStep
from runs.worker import execute_run
from tests.factories import ExecutionRunFactory, ExecutionStepFactory, MembershipFactory, UserFactory


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_runs_page_lists_runs_and_labels_the_demo(project, viewer):
    ExecutionRunFactory(project=project, agent_backend="scripted", status="succeeded", prompt="demo prompt")
    page = client_for(viewer).get(f"/projects/{project.pk}/runs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "demo prompt" in html and "scripted (offline demo)" in html and "demo-label" in html
    assert 'id="new-run"' not in html  # viewers cannot start runs


@pytest.mark.django_db
def test_new_run_form_creates_a_run(project, operator, django_capture_on_commit_callbacks):
    client = client_for(operator)
    response = client.post(
        f"/projects/{project.pk}/runs/", {"prompt": "add a README", "agent": "scripted", "budget": "2"}
    )
    run = ExecutionRun.objects.get(project=project)
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert (
        run.prompt == "add a README" and run.agent_backend == "scripted" and str(run.budget_usd) == "2.0000"
    )
    assert run.created_by == operator


@pytest.mark.django_db
def test_new_run_form_shows_errors(project, operator):
    response = client_for(operator).post(
        f"/projects/{project.pk}/runs/", {"prompt": "x", "agent": "scripted", "budget": "-1"}
    )
    assert response.status_code == 400
    assert "budget" in response.content.decode().lower()
    assert not ExecutionRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_run_detail_shows_steps_diffs_and_analysis(project, viewer):
    run = services.run_create(
        project=project,
        prompt="notes",
        enqueue=False,
        run_settings={
            "script": [{"write": "n.txt", "content": "hello\n"}, {"run": "cat n.txt"}, {"finish": "ok"}]
        },
    )
    execute_run(run.pk)
    html = client_for(viewer).get(f"/runs/{run.pk}/").content.decode()
    assert f'data-live-events="project={project.pk}&subject=executionrun.{run.pk}"' in html
    assert '<span class="diff-add">+hello</span>' in html
    assert 'id="analysis"' in html and "Export .rlog" in html
    assert "no AI model is involved" in html
    live = client_for(viewer).get(f"/runs/{run.pk}/?part=live", HTTP_HX_REQUEST="true").content.decode()
    assert live.lstrip().startswith('<div id="run-live-body"') and "<html" not in live


@pytest.mark.django_db
def test_approve_and_reject_from_the_page(project, operator):
    run = ExecutionRunFactory(project=project, status="waiting_approval")
    first = ExecutionStepFactory(
        run=run, seq=1, kind="run_terminal", status="needs_approval", risky=True, input={"command": "rm x"}
    )
    second = ExecutionStepFactory(run=run, seq=2, kind="run_terminal", status="needs_approval", risky=True)
    client = client_for(operator)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert page.count('data-testid="approve"') == 2
    answer = client.post(f"/runs/{run.pk}/approve/", {"step": first.pk}, HTTP_HX_REQUEST="true")
    assert answer.status_code == 200 and 'id="run-live-body"' in answer.content.decode()
    first.refresh_from_db()
    assert first.status == ExecutionStep.Status.RUNNING and first.decided_by == operator
    # a rejection needs a message
    answer = client.post(
        f"/runs/{run.pk}/reject/", {"step": second.pk, "message": ""}, HTTP_HX_REQUEST="true"
    )
    assert "needs a message" in answer.content.decode()
    client.post(f"/runs/{run.pk}/reject/", {"step": second.pk, "message": "not that"})
    second.refresh_from_db()
    assert second.status == ExecutionStep.Status.SKIPPED and second.decision_note == "not that"


@pytest.mark.django_db
def test_viewer_cannot_act_and_outsider_gets_404(project, viewer):
    run = ExecutionRunFactory(project=project, status="running")
    assert client_for(viewer).post(f"/runs/{run.pk}/stop/").status_code == 403
    outsider = UserFactory()
    MembershipFactory(user=outsider)
    assert client_for(outsider).get(f"/runs/{run.pk}/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_replay_page_steps_through(project, viewer):
    run = services.run_create(
        project=project,
        prompt="x",
        enqueue=False,
        run_settings={"script": [{"say": "one"}, {"say": "two"}, {"finish": "three"}]},
    )
    execute_run(run.pk)
    client = client_for(viewer)
    html = client.get(f"/runs/{run.pk}/replay/?step=1").content.decode()
    assert html.count('data-testid="replay-step"') == 1 and "step 1 of 3" in html
    part = client.get(f"/runs/{run.pk}/replay/?step=2", HTTP_HX_REQUEST="true").content.decode()
    assert part.count('data-testid="replay-step"') == 2 and "<html" not in part


@pytest.mark.django_db
def test_runs_table_partial_for_live_refresh(project, viewer):
    ExecutionRunFactory(project=project, status="running", prompt="live one")
    client = client_for(viewer)
    page = client.get(f"/projects/{project.pk}/runs/").content.decode()
    assert f'data-live-events="project={project.pk}"' in page
    part = client.get(f"/projects/{project.pk}/runs/?part=table", HTTP_HX_REQUEST="true").content.decode()
    assert part.lstrip().startswith('<section class="card flush" id="runs">') and "live one" in part
