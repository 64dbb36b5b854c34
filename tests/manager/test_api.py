import pytest
from rest_framework.test import APIClient

from autopilot.manager.models import Proposal
from autopilot.models import Event
from blueprints.models import Task
from runs.models import ExecutionRun
from tests.factories import (
    BlueprintFactory,
    ExecutionRunFactory,
    PlanNodeFactory,
    ProjectFactory,
)
from tests.manager.conftest import make_task, set_mode

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_plan_explains_what_would_start_and_why_not(project, viewer):
    # Given a full-auto project with room for one run, a phase, and tasks in several situations
    blueprint = BlueprintFactory(project=project)
    phase = PlanNodeFactory(blueprint=blueprint, anchor="phase-1", title="Phase 1")
    other = PlanNodeFactory(blueprint=blueprint, anchor="phase-2")
    set_mode(project, "full_auto", max_parallel_runs=2, active_phase=phase)
    best = make_task(project, plan_node=phase, priority=5)
    second = make_task(project, plan_node=phase, priority=1)
    outside = make_task(project, plan_node=other)
    running = make_task(project, plan_node=phase)
    ExecutionRunFactory(project=project, task=running, status="running")
    # When a viewer asks for the manager plan
    response = client_for(viewer).get(f"/api/projects/{project.pk}/manager/plan/")
    # Then it lists what the next tick starts and a reason for every other ready task
    assert response.status_code == 200
    data = response.json()
    assert [row["task"] for row in data["would_start"]] == [best.pk]
    reasons = {row["task"]: " ".join(row["reasons"]) for row in data["not_started"]}
    assert "capacity" in reasons[second.pk]
    assert "outside the active phase 'Phase 1'" in reasons[outside.pk]
    assert "already running" in reasons[running.pk]
    assert data["capacity"]["project_open_runs"] == 1


def test_plan_says_paused_and_mode_off(project, viewer):
    make_task(project)
    data = client_for(viewer).get(f"/api/projects/{project.pk}/manager/plan/").json()
    assert data["not_started"][0]["reasons"] == ["autonomy mode is off"]
    set_mode(project, "full_auto", paused=True)
    data = client_for(viewer).get(f"/api/projects/{project.pk}/manager/plan/").json()
    assert data["not_started"][0]["reasons"] == ["project is paused"]


def test_tick_endpoint_needs_an_operator_and_starts_work(project, viewer, operator):
    set_mode(project, "full_auto")
    task = make_task(project)
    assert client_for(viewer).post(f"/api/projects/{project.pk}/autopilot_tick/").status_code == 403
    response = client_for(operator).post(f"/api/projects/{project.pk}/autopilot_tick/")
    assert response.status_code == 200
    assert response.json()["started"][0]["task"] == task.pk
    decision = Event.objects.filter(kind="tick.decision").latest("id")
    assert decision.actor == operator


def test_strangers_get_404(project, user):
    assert client_for(user).get(f"/api/projects/{project.pk}/manager/plan/").status_code == 404


def test_proposals_list_accept_and_dismiss(project, operator):
    set_mode(project, "suggest", max_parallel_runs=2)
    first, second = make_task(project, priority=3), make_task(project, priority=2)
    client = client_for(operator)
    client.post(f"/api/projects/{project.pk}/autopilot_tick/")
    listed = client.get(f"/api/projects/{project.pk}/proposals/?status=pending").json()
    assert {p["task"] for p in listed} == {first.pk, second.pk}
    by_task = {p["task"]: p["id"] for p in listed}
    accepted = client.post(f"/api/proposals/{by_task[first.pk]}/accept/")
    assert accepted.status_code == 201 and accepted.json()["status"] == "accepted"
    assert ExecutionRun.objects.get(pk=accepted.json()["run"]).task_id == first.pk
    dismissed = client.post(f"/api/proposals/{by_task[second.pk]}/dismiss/", {"note": "not now"})
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"
    again = client.post(f"/api/proposals/{by_task[second.pk]}/dismiss/")
    assert again.status_code == 409


def test_accept_beyond_the_queue_maximum_is_429(project, operator, settings):
    settings.AUTOPILOT_QUEUE_MAX = 1
    ExecutionRunFactory(project=project, status="queued")
    proposal = Proposal.objects.create(project=project, task=make_task(project))
    response = client_for(operator).post(f"/api/proposals/{proposal.pk}/accept/")
    assert response.status_code == 429
    assert "queue is full" in response.json()["detail"]


def test_queue_lists_positions_and_owners_clear_it(project, owner, operator):
    low = ExecutionRunFactory(project=project, status="queued", priority=1)
    high = ExecutionRunFactory(project=project, status="queued", priority=4)
    hidden = ExecutionRunFactory(project=ProjectFactory(), status="queued", priority=5)
    data = client_for(operator).get("/api/queue/").json()
    assert [(r["run"], r["position"]) for r in data["runs"]] == [(high.pk, 2), (low.pk, 3)]
    assert data["size"] == 3
    assert client_for(operator).post("/api/queue/clear/").status_code == 403
    cleared = client_for(owner).post("/api/queue/clear/")
    assert cleared.status_code == 200 and sorted(cleared.json()["cancelled"]) == sorted([low.pk, high.pk])
    hidden.refresh_from_db()
    assert hidden.status == "queued"


def test_refine_plan_ranks_unblocking_work_first_and_records_changes(project, operator):
    from tests.manager.conftest import depend

    blocker = make_task(project)
    loner = make_task(project)
    for _ in range(3):
        depend(make_task(project, status=Task.Status.TODO), blocker)
    response = client_for(operator).post(f"/api/projects/{project.pk}/refine_plan/")
    assert response.status_code == 200
    blocker.refresh_from_db()
    loner.refresh_from_db()
    assert blocker.learned_priority == 3.0 and loner.learned_priority == 0
    event = Event.objects.get(kind="plan.refined")
    assert event.data["changes"][0]["task"] == blocker.pk and event.actor == operator


def test_learning_metrics(project, viewer):
    from django.utils import timezone

    from autopilot.manager.models import FileStat

    now = timezone.now()
    node = PlanNodeFactory(
        blueprint=BlueprintFactory(project=project), failure_count=2, rework_count=1, difficulty=1.6
    )
    make_task(
        project,
        status="done",
        plan_order=2,
        started_at=now - timezone.timedelta(seconds=100),
        completed_at=now - timezone.timedelta(seconds=50),
        plan_node=node,
        attempts=2,
        rework_count=1,
    )
    make_task(
        project,
        status="done",
        plan_order=1,
        started_at=now - timezone.timedelta(seconds=40),
        completed_at=now,
        attempts=1,
    )
    FileStat.objects.create(project=project, path="src/app.py", failures=3, reworks=1, runs=5)
    ExecutionRunFactory(project=project, task=Task.objects.first(), status="succeeded", cost_usd="0.5")
    data = client_for(viewer).get(f"/api/projects/{project.pk}/learning_metrics/").json()
    assert data["avg_cycle_time_s"] == 45.0
    assert data["fragile_nodes"][0]["id"] == node.pk and data["fragile_files"][0]["path"] == "src/app.py"
    assert data["plan_deviation_rate"] == 0.5  # the reworked task also finished before an earlier one
    assert data["cost_per_task_usd"] == "0.500000"
    assert data["avg_difficulty"] == 1.6
