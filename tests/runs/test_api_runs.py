"""REST doors for runs: create/list per project, detail with steps, actions, permissions, clear 400s."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from runs.models import ExecutionRun, ExecutionStep
from runs.worker import execute_run
from tests.factories import ExecutionRunFactory, MembershipFactory, ProjectFactory, UserFactory
from tests.runs.helpers import run_in_thread, run_now, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_create_and_list_runs(project, operator):
    from django_q.models import OrmQ

    api = client_for(operator)
    response = api.post(
        f"/api/projects/{project.pk}/runs/", {"prompt": "hello", "agent": "scripted"}, format="json"
    )
    assert response.status_code == 201, response.data
    assert response.data["status"] == "queued" and response.data["agent_label"] == "scripted (offline demo)"
    queued = [(q.func(), q.args()) for q in OrmQ.objects.all()]
    assert ("runs.tasks.execute_run", (response.data["id"],)) in queued, "the run is enqueued on commit"
    listing = api.get(f"/api/projects/{project.pk}/runs/").data
    assert [r["id"] for r in listing["results"]] == [response.data["id"]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "A run needs a prompt (or a task)."),
        ({"prompt": "x", "agent": "gpt"}, None),
        ({"prompt": "x", "budget_usd": "-1"}, None),
        ({"prompt": "x", "task": 999999}, "No task #999999."),
        (
            {"prompt": "x", "agent": "scripted", "settings": {"script": [{"dance": 1}]}},
            "settings.script: script[0] is not a known action",
        ),
    ],
    ids=["no-prompt", "bad-agent", "negative-budget", "unknown-task", "bad-script"],
)
def test_create_rejects_bad_input_clearly(project, operator, body, message):
    response = client_for(operator).post(f"/api/projects/{project.pk}/runs/", body, format="json")
    assert response.status_code == 400
    if message:
        assert response.data["detail"].startswith(message)
    assert ExecutionRun.objects.count() == 0


def test_viewers_read_but_cannot_act_and_strangers_see_nothing(project, viewer):
    run = run_now(project, [{"finish": "ok"}])
    api = client_for(viewer)
    detail = api.get(f"/api/runs/{run.pk}/")
    assert detail.status_code == 200 and [s["kind"] for s in detail.data["steps"]] == ["finish"]
    assert api.post(f"/api/runs/{run.pk}/retry/").status_code == 403
    assert api.post(f"/api/projects/{project.pk}/runs/", {"prompt": "x"}, format="json").status_code == 403
    stranger = client_for(UserFactory())
    assert stranger.get(f"/api/runs/{run.pk}/").status_code == 404
    assert stranger.get(f"/api/projects/{project.pk}/runs/").status_code == 404


def test_approve_reject_stop_message_through_the_api():
    project = ProjectFactory(autonomy_mode="semi_auto")
    user = MembershipFactory(project=project, role="operator").user
    api = client_for(user)
    script = [{"run": "curl http://a"}, {"run": "wget http://b"}, {"sleep": 30}]
    created = api.post(
        f"/api/projects/{project.pk}/runs/",
        {"prompt": "p", "agent": "scripted", "settings": {"script": script}},
        format="json",
    )
    run_id = created.data["id"]
    thread = run_in_thread(run_id)

    wait_for(lambda: ExecutionStep.objects.filter(run_id=run_id, status="needs_approval", seq=1).exists())
    approved = api.post(f"/api/runs/{run_id}/approve/", {"note": "ok once"}, format="json")
    assert approved.status_code == 200 and approved.data["decided_by"] == user.username

    wait_for(lambda: ExecutionStep.objects.filter(run_id=run_id, status="needs_approval", seq=2).exists())
    assert api.post(f"/api/runs/{run_id}/reject/", {}, format="json").status_code == 400
    rejected = api.post(f"/api/runs/{run_id}/reject/", {"step": 2, "message": "no"}, format="json")
    assert rejected.status_code == 200 and rejected.data["status"] == "skipped"

    assert api.post(f"/api/runs/{run_id}/message/", {"body": "hi"}, format="json").status_code == 201
    stopped = api.post(f"/api/runs/{run_id}/stop/", {"reason": "enough"}, format="json")
    assert stopped.status_code == 200
    thread.join(30)
    detail = api.get(f"/api/runs/{run_id}/").data
    assert (
        detail["status"] == "cancelled" and detail["status_reason"] == f"stopped by {user.username}: enough"
    )
    assert api.post(f"/api/runs/{run_id}/stop/").status_code == 409


def test_retry_resume_rollback_and_step_rollback(project, operator):
    api = client_for(operator)
    run = run_now(project, [{"write": "a.txt", "content": "a"}, {"finish": "ok"}])
    retry = api.post(f"/api/runs/{run.pk}/retry/")
    assert retry.status_code == 201 and retry.data["attempt"] == 2 and retry.data["retry_of"] == run.pk
    resume = api.post(f"/api/runs/{run.pk}/resume/", {"prompt": "continue"}, format="json")
    assert resume.status_code == 201 and resume.data["resumed_from"] == run.pk
    assert api.post(f"/api/runs/{run.pk}/resume/", {}, format="json").status_code == 400
    step = run.steps.get(kind="write_file")
    rolled = api.post(f"/api/steps/{step.pk}/rollback/")
    assert rolled.status_code == 200 and rolled.data["verified"] is True
    assert api.post(f"/api/steps/{step.pk}/rollback/").status_code == 409
    whole = api.post(f"/api/runs/{run.pk}/rollback/")
    assert whole.status_code == 200 and whole.data["verified"] is True


def test_advance_releases_one_pending_step_at_a_time(project, operator):
    api = client_for(operator)
    created = api.post(
        f"/api/projects/{project.pk}/runs/",
        {
            "prompt": "p",
            "agent": "scripted",
            "settings": {"step_through": True, "script": [{"write": "a.txt", "content": "a"}, {"list": "."}]},
        },
        format="json",
    )
    run_id = created.data["id"]
    thread = run_in_thread(run_id)
    wait_for(lambda: ExecutionStep.objects.filter(run_id=run_id, status="pending").exists())
    assert ExecutionStep.objects.get(run_id=run_id, seq=1).status == "pending"
    first = api.post(f"/api/runs/{run_id}/advance/")
    assert first.status_code == 200 and first.data["seq"] == 1
    wait_for(lambda: ExecutionStep.objects.filter(run_id=run_id, seq=2, status="pending").exists())
    assert ExecutionStep.objects.get(run_id=run_id, seq=1).status == "completed"
    api.post(f"/api/runs/{run_id}/advance/")
    thread.join(30)
    assert api.get(f"/api/runs/{run_id}/").data["status"] == "succeeded"
    assert api.post(f"/api/runs/{run_id}/advance/").status_code == 409


def test_run_list_has_no_query_per_row(project, operator, django_assert_max_num_queries):
    ExecutionRunFactory.create_batch(5, project=project)
    api = client_for(operator)
    with django_assert_max_num_queries(8):
        response = api.get(f"/api/projects/{project.pk}/runs/")
    assert response.data["count"] == 5
    run = ExecutionRunFactory(project=project)
    execute_run(run.pk)
    with django_assert_max_num_queries(10):
        assert api.get(f"/api/runs/{run.pk}/").status_code == 200
