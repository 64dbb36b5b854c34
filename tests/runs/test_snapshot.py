"""The project snapshot (runs.snapshot): its parts on a real ingested blueprint, its query count, the
stored ProjectSnapshot and the plain-text rendering used in agent prompts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from autopilot.errors import PermissionDenied
from autopilot.models import Event
from autopilot.state import transition
from blueprints.ingestion import ingest_blueprint
from blueprints.models import PlanNode, Task
from runs import snapshot
from runs.models import ExecutionRun, Integration, ProjectSnapshot
from tests.factories import (
    ExecutionRunFactory,
    IntegrationFactory,
    MembershipFactory,
    TaskFactory,
    UsageRecordFactory,
)

pytestmark = pytest.mark.django_db

SPEC = """# Phase One

Intro.

## Storage

### Write the store

Put `runs/store.py` in place.

### Read the store

Words.

# Phase Two

## Api

### Serve it

Words.

### Document it

Words.

### Cache it

Words.
"""


def _tasks_by_title(project) -> dict[str, Task]:
    return {t.title: t for t in Task.objects.filter(project=project, kind=Task.Kind.WORK)}


@pytest.fixture
def spec_project(project):
    ingest_blueprint(project=project, text=SPEC, title="Spec")
    return project


def _set(task: Task, status: str, **fields) -> None:
    Task.objects.filter(pk=task.pk).update(status=status, **fields)


def test_progress_per_phase_counts_work_tasks_by_status(spec_project):
    # Given the five checklist tasks of two phases in various states, and a task with no section
    tasks = _tasks_by_title(spec_project)
    assert len(tasks) == 5
    _set(tasks["Write the store"], Task.Status.DONE)
    _set(tasks["Read the store"], Task.Status.INTEGRATING)
    _set(tasks["Serve it"], Task.Status.REVIEW)
    _set(tasks["Document it"], Task.Status.BLOCKED)
    TaskFactory(project=spec_project, title="Loose end")
    TaskFactory(project=spec_project, title="Gate", kind=Task.Kind.MILESTONE, status=Task.Status.DONE)

    # When the snapshot is computed
    data = snapshot.snapshot_data(spec_project)

    # Then each phase has its counts (milestones left out), in document order, and the loose task last
    phases = {p["title"]: p for p in data["phases"]}
    assert [p["title"] for p in data["phases"]] == ["Phase One", "Phase Two", snapshot.NO_SECTION]
    one, two = phases["Phase One"], phases["Phase Two"]
    assert (one["done"], one["integrating"], one["review"], one["total"], one["percent_done"]) == (
        1,
        1,
        0,
        2,
        50,
    )
    assert (two["review"], two["blocked"], two["todo"], two["total"], two["remaining"]) == (1, 1, 1, 3, 3)
    assert phases[snapshot.NO_SECTION]["total"] == 1
    assert data["totals"]["total"] == 6 and data["totals"]["done"] == 1


def test_blocked_tasks_carry_the_reason_of_their_latest_transition(spec_project, operator):
    task = _tasks_by_title(spec_project)["Serve it"]
    transition(task, Task.Status.BLOCKED, actor=operator, reason="waiting for the API key")

    data = snapshot.snapshot_data(spec_project)

    assert data["blocked"]["count"] == 1
    [row] = data["blocked"]["tasks"]
    assert row["task"] == task.pk and row["reason"] == "waiting for the API key"
    assert row["since"] is not None


def test_in_flight_merges_spend_and_velocity(spec_project):
    now = timezone.now()
    tasks = list(_tasks_by_title(spec_project).values())
    # in flight: one running, one queued; a finished run is not in flight
    running = ExecutionRunFactory(project=spec_project, task=tasks[0], status=ExecutionRun.Status.RUNNING)
    ExecutionRunFactory(project=spec_project, task=tasks[1], status=ExecutionRun.Status.QUEUED)
    ExecutionRunFactory(project=spec_project, status=ExecutionRun.Status.SUCCEEDED)
    # merges: one merged, one in conflict
    IntegrationFactory(
        project=spec_project,
        task=tasks[2],
        status=Integration.Status.MERGED,
        merge_commit="abc123",
        finished_at=now,
    )
    IntegrationFactory(project=spec_project, task=tasks[3], status=Integration.Status.CONFLICT)
    # spend: $1.50 today, $2 yesterday, a daily cap of $5
    UsageRecordFactory(run=running, cost_usd=Decimal("1.5"))
    old = UsageRecordFactory(run=running, cost_usd=Decimal("2"))
    type(old).objects.filter(pk=old.pk).update(created_at=now - dt.timedelta(days=1, hours=1))
    spec_project.daily_budget_usd = Decimal("5")
    spec_project.save()
    # velocity: two tasks done in the last week, one done long ago
    _set(
        tasks[2],
        Task.Status.DONE,
        started_at=now - dt.timedelta(hours=4),
        completed_at=now - dt.timedelta(hours=1),
    )
    _set(
        tasks[3],
        Task.Status.DONE,
        started_at=now - dt.timedelta(days=2, hours=2),
        completed_at=now - dt.timedelta(days=2),
    )
    _set(
        tasks[4],
        Task.Status.DONE,
        started_at=now - dt.timedelta(days=30, hours=6),
        completed_at=now - dt.timedelta(days=30),
    )

    data = snapshot.snapshot_data(spec_project, now=now)

    assert data["in_flight"]["count"] == 2
    assert {r["status"] for r in data["in_flight"]["runs"]} == {"running", "queued"}
    assert data["in_flight"]["active"] == 1
    assert [m["merge_commit"] for m in data["recent_merges"]] == ["abc123"]
    spend = data["spend"]
    assert (spend["today_usd"], spend["total_usd"], spend["daily_cap_usd"]) == ("1.5000", "3.5000", "5.0000")
    assert spend["daily_remaining_usd"] == "3.5000" and spend["daily_used_percent"] == 30
    assert spend["over_daily_cap"] is False
    assert data["velocity"]["done"] == 2 and data["velocity"]["per_day"] == round(2 / 7, 2)
    assert sum(d["done"] for d in data["velocity"]["by_day"]) == 2


def test_projection_is_remaining_times_median_cycle_over_parallelism(spec_project):
    now = timezone.now()
    tasks = list(_tasks_by_title(spec_project).values())
    # cycle times 1 h, 2 h, 9 h → median 2 h; 2 tasks remain; 2 parallel runs → 2 h
    for task, hours in zip(tasks[:3], (1, 2, 9), strict=True):
        _set(task, Task.Status.DONE, started_at=now - dt.timedelta(hours=hours), completed_at=now)
    spec_project.max_parallel_runs = 2
    spec_project.save()

    projection = snapshot.snapshot_data(spec_project, now=now)["projection"]

    assert projection["status"] == "projected"
    assert projection["remaining"] == 2 and projection["median_cycle_hours"] == 2.0
    assert projection["parallelism"] == 2 and projection["eta_hours"] == 2.0
    assert projection["finish_at"] == (now + dt.timedelta(hours=2)).isoformat()
    assert any("max parallel runs = 2" in a for a in projection["assumptions"])


def test_projection_without_any_finished_task_says_so(spec_project):
    projection = snapshot.snapshot_data(spec_project)["projection"]
    assert projection["status"] == "unknown" and "no cycle time" in projection["note"]


def test_fragile_areas_are_plan_nodes_with_failures_or_rework(spec_project):
    storage = PlanNode.objects.get(project=spec_project, title="Storage")
    api = PlanNode.objects.get(project=spec_project, title="Api")
    PlanNode.objects.filter(pk=storage.pk).update(failure_count=1, rework_count=3)
    PlanNode.objects.filter(pk=api.pk).update(failure_count=4)

    fragile = snapshot.snapshot_data(spec_project)["fragile_areas"]

    assert [(f["title"], f["failures"], f["rework"]) for f in fragile] == [("Api", 4, 0), ("Storage", 1, 3)]


def test_the_snapshot_is_computed_with_a_bounded_number_of_queries(project, django_assert_max_num_queries):
    # Given a large project: 40 phases × 10 tasks, runs, merges, usage, blocked tasks with events
    spec = "\n".join(
        f"# Phase {p}\n\n## Part {p}\n\n" + "\n".join(f"### Item {p}.{i}\n\nWords.\n" for i in range(10))
        for p in range(40)
    )
    ingest_blueprint(project=project, text=spec, title="Big")
    tasks = list(Task.objects.filter(project=project, kind=Task.Kind.WORK).order_by("id"))
    assert len(tasks) == 400
    for task in tasks[:30]:
        transition(task, Task.Status.BLOCKED, reason=f"blocked {task.pk}")
    for task in tasks[30:60]:
        ExecutionRunFactory(project=project, task=task, status=ExecutionRun.Status.RUNNING)
        IntegrationFactory(
            project=project, task=task, status=Integration.Status.MERGED, finished_at=timezone.now()
        )
    for task in tasks[60:120]:
        _set(
            task,
            Task.Status.DONE,
            started_at=timezone.now() - dt.timedelta(hours=3),
            completed_at=timezone.now(),
        )

    # Then a snapshot takes a fixed number of queries (the same for 400 tasks as for 5)
    with django_assert_max_num_queries(12):
        data = snapshot.snapshot_data(project)
    assert data["totals"]["total"] == 400 and len(data["phases"]) == 40
    assert data["blocked"]["count"] == 30 and len(data["blocked"]["tasks"]) == snapshot.LIST_LIMIT
    assert data["in_flight"]["count"] == 30 and data["in_flight"]["more"] is True


def test_refresh_stores_a_snapshot_and_latest_reads_it(spec_project, operator):
    first = snapshot.snapshot_refresh(spec_project, actor=operator)
    assert first.pk and first.created_by == operator and first.data["totals"]["total"] == 5
    assert first.narrative == "" and first.narrative_error == ""
    assert snapshot.snapshot_latest(spec_project).pk == first.pk
    event_count = Event.objects.count()
    second = snapshot.snapshot_refresh(spec_project, actor=operator)
    assert snapshot.snapshot_latest(spec_project).pk == second.pk
    assert Event.objects.count() == event_count  # reading state writes no events


def test_latest_computes_one_when_none_is_stored(spec_project):
    assert not ProjectSnapshot.objects.filter(project=spec_project).exists()
    latest = snapshot.snapshot_latest(spec_project)
    assert ProjectSnapshot.objects.filter(project=spec_project).count() == 1
    assert latest.data["project"]["id"] == spec_project.pk


def test_refresh_keeps_only_the_newest_snapshots(spec_project, settings, monkeypatch):
    monkeypatch.setattr(snapshot, "KEEP_SNAPSHOTS", 3)
    made = [snapshot.snapshot_refresh(spec_project).pk for _ in range(5)]
    assert (
        sorted(ProjectSnapshot.objects.filter(project=spec_project).values_list("pk", flat=True)) == made[-3:]
    )


def test_a_viewer_cannot_refresh(spec_project):
    viewer = MembershipFactory(project=spec_project, role="viewer").user
    with pytest.raises(PermissionDenied, match="operator role"):
        snapshot.snapshot_refresh(spec_project, actor=viewer)
    assert not ProjectSnapshot.objects.filter(project=spec_project).exists()


def test_narrative_without_a_model_says_why(spec_project):
    # The default manager role is the scripted backend: no model, the snapshot is still stored
    stored = snapshot.snapshot_refresh(spec_project, narrative=True)
    assert stored.narrative == "" and "scripted" in stored.narrative_error
    assert stored.data["totals"]["total"] == 5


def test_snapshot_text_is_short_and_names_the_essentials(spec_project, operator):
    task = _tasks_by_title(spec_project)["Serve it"]
    transition(task, Task.Status.BLOCKED, actor=operator, reason="needs a decision")

    text = snapshot.snapshot_text(spec_project)

    assert text.startswith(f"Project {spec_project.name}: 0/5 work tasks done")
    assert "Phase One 0/2; Phase Two 0/3" in text
    assert f"#{task.pk} Serve it (needs a decision)" in text
    assert "(no daily cap)" in text
    assert len(text) <= 2000


def test_snapshot_text_reuses_a_fresh_stored_snapshot(spec_project, django_assert_max_num_queries):
    snapshot.snapshot_refresh(spec_project)
    with django_assert_max_num_queries(1):
        text = snapshot.snapshot_text(spec_project)
    assert "0/5 work tasks done" in text
