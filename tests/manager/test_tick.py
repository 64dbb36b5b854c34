from decimal import Decimal

import pytest
from django.utils import timezone

from autopilot.errors import CapacityExceeded
from autopilot.manager import proposals
from autopilot.manager.models import Proposal
from autopilot.manager.tick import tick_all, tick_project
from autopilot.models import Event, Project
from blueprints.models import Task
from blueprints.services import task_transition
from runs.models import ExecutionRun
from tests.factories import (
    BlueprintFactory,
    ExecutionRunFactory,
    PlanNodeFactory,
    ProjectFactory,
    UsageRecordFactory,
)
from tests.manager.conftest import depend, make_task, set_mode

pytestmark = pytest.mark.django_db


def started_tasks(project) -> list[int]:
    return sorted(ExecutionRun.objects.filter(project=project).values_list("task_id", flat=True))


def test_full_auto_starts_best_ranked_ready_tasks_up_to_the_project_limit(project):
    # Given a full-auto project allowing 2 parallel runs and 4 ready tasks of different priority
    set_mode(project, "full_auto", max_parallel_runs=2)
    low = make_task(project, priority=1, plan_order=1)
    high = make_task(project, priority=5, plan_order=4)
    learned = make_task(project, priority=3, learned_priority=2.0, plan_order=3)
    plain = make_task(project, priority=3, plan_order=2)
    # When the manager ticks
    report = tick_project(project, reason="test")
    # Then the two best (priority, then learned priority) are started, the others wait for capacity
    assert [s["task"] for s in report.started] == [high.pk, learned.pk]
    assert started_tasks(project) == sorted([high.pk, learned.pk])
    assert report.projects[project.pk].skipped == {"capacity": 2}
    run = ExecutionRun.objects.get(task=high)
    assert run.status == "queued" and run.autonomy_mode == "full_auto" and run.priority == 5
    decision = Event.objects.filter(kind="tick.decision", project=project).latest("id")
    assert [s["task"] for s in decision.data["started"]] == [high.pk, learned.pk]
    assert {low.pk, plain.pk}.isdisjoint(started_tasks(project))


def test_a_second_tick_never_starts_a_task_twice(project):
    # Given a full-auto project whose ready task was just started
    set_mode(project, "full_auto", max_parallel_runs=5)
    task = make_task(project)
    tick_project(project, reason="first")
    # When the manager ticks again
    report = tick_project(project, reason="second")
    # Then nothing new starts: the task already has a queued run
    assert report.started == []
    assert ExecutionRun.objects.filter(task=task).count() == 1


def test_only_tasks_whose_dependencies_are_all_done_become_ready_and_start(project):
    # Given a task depending on one done and one unfinished task
    set_mode(project, "full_auto", max_parallel_runs=5)
    done = make_task(project, status=Task.Status.DONE)
    pending = make_task(project, status=Task.Status.REVIEW)
    waiting = make_task(project, status=Task.Status.TODO)
    depend(waiting, done)
    depend(waiting, pending)
    # When the manager ticks
    tick_project(project, reason="test")
    # Then the waiting task stays to-do and nothing starts
    waiting.refresh_from_db()
    assert waiting.status == Task.Status.TODO
    assert started_tasks(project) == []
    # When its last dependency is reviewed and done and the manager ticks again
    task_transition(task=pending, to=Task.Status.DONE)
    report = tick_project(project, reason="test")
    # Then it became ready and started
    waiting.refresh_from_db()
    assert report.promoted == 1 and waiting.status == Task.Status.READY
    assert started_tasks(project) == [waiting.pk]


def test_a_ready_task_that_gains_an_unfinished_dependency_goes_back_to_todo(project):
    set_mode(project, "full_auto")
    first = make_task(project, status=Task.Status.TODO)
    second = make_task(project, status=Task.Status.READY)
    depend(second, first)
    report = tick_project(project, reason="test")
    second.refresh_from_db()
    assert report.demoted == 1 and second.status == Task.Status.TODO
    assert started_tasks(project) == [first.pk]


def test_milestones_complete_by_themselves_and_never_run(project):
    set_mode(project, "full_auto", max_parallel_runs=5)
    gate = make_task(project, status=Task.Status.TODO, kind=Task.Kind.MILESTONE)
    after = make_task(project, status=Task.Status.TODO)
    depend(after, gate)
    tick_project(project, reason="test")
    gate.refresh_from_db()
    assert gate.status == Task.Status.DONE
    assert started_tasks(project) == [after.pk]


@pytest.mark.parametrize("mode,paused", [("off", False), ("full_auto", True)], ids=["off", "paused"])
def test_off_and_paused_projects_start_nothing(project, mode, paused):
    set_mode(project, mode, paused=paused)
    make_task(project)
    report = tick_project(project, reason="test")
    assert report.started == [] and started_tasks(project) == []
    assert report.projects[project.pk].note == (
        "autonomy mode is off" if mode == "off" else "project is paused"
    )


def test_paused_project_still_reconciles_expired_leases(project):
    # Given a paused project with a running run whose worker lease expired
    set_mode(project, "full_auto", paused=True)
    task = make_task(project, status=Task.Status.IN_PROGRESS)
    run = ExecutionRunFactory(
        project=project,
        task=task,
        status="running",
        lease_owner="gone:1",
        lease_expires_at=timezone.now() - timezone.timedelta(minutes=5),
    )
    # When the manager ticks
    report = tick_project(project, reason="test")
    # Then the run is failed and its task goes back to ready for a retry (attempt 1 of 3)
    run.refresh_from_db()
    task.refresh_from_db()
    assert report.reaped == [run.pk] and run.status == "failed"
    assert task.status == Task.Status.READY and task.attempts == 1
    assert report.started == []


def test_global_concurrency_limit_spans_projects(settings):
    settings.AUTOPILOT_MAX_CONCURRENT_RUNS = 3
    first, second = ProjectFactory(), ProjectFactory()
    for p in (first, second):
        set_mode(p, "full_auto", max_parallel_runs=2)
        make_task(p)
        make_task(p)
    report = tick_all(reason="test")
    assert len(report.started) == 3
    assert ExecutionRun.objects.count() == 3
    assert report.projects[second.pk].skipped == {"capacity": 1}


def test_daily_budget_counts_todays_spend_and_reserved_runs(project):
    # Given a $3 daily cap, $1 per run, $1 spent today and one open run reserving $1
    set_mode(
        project,
        "full_auto",
        max_parallel_runs=5,
        daily_budget_usd=Decimal("3"),
        default_run_budget_usd=Decimal("1"),
    )
    UsageRecordFactory(run=ExecutionRunFactory(project=project, status="succeeded"), cost_usd=Decimal("1"))
    ExecutionRunFactory(
        project=project,
        task=make_task(project, status=Task.Status.IN_PROGRESS),
        status="running",
        budget_usd=Decimal("1"),
    )
    for _ in range(3):
        make_task(project)
    # When the manager ticks
    report = tick_project(project, reason="test")
    # Then only one more run fits into the day's budget
    assert len(report.started) == 1
    assert report.projects[project.pk].skipped == {"budget": 2}


def test_only_tasks_inside_the_active_phase_subtree_are_picked(project):
    blueprint = BlueprintFactory(project=project)
    phase1 = PlanNodeFactory(blueprint=blueprint, anchor="phase-1")
    inner = PlanNodeFactory(blueprint=blueprint, anchor="phase-1/login", parent=phase1, level=2)
    phase10 = PlanNodeFactory(blueprint=blueprint, anchor="phase-10")
    set_mode(project, "full_auto", max_parallel_runs=5, active_phase=phase1)
    inside = make_task(project, plan_node=inner)
    at_phase = make_task(project, plan_node=phase1)
    make_task(project, plan_node=phase10)
    make_task(project)
    tick_project(project, reason="test")
    assert started_tasks(project) == sorted([inside.pk, at_phase.pk])


def test_semi_auto_runs_carry_the_mode_so_risky_steps_wait_for_approval(project):
    set_mode(project, "semi_auto")
    make_task(project)
    tick_project(project, reason="test")
    assert ExecutionRun.objects.get(project=project).autonomy_mode == "semi_auto"


def test_suggest_mode_proposes_and_a_dismissal_is_remembered_until_the_task_changes(project, operator):
    # Given a suggest-mode project with one ready task
    set_mode(project, "suggest")
    task = make_task(project)
    # When the manager ticks
    report = tick_project(project, reason="test")
    # Then it proposes the task and starts nothing
    proposal = Proposal.objects.get(task=task, status="pending")
    assert report.proposed[0]["proposal"] == proposal.pk and started_tasks(project) == []
    # When a human dismisses it, further ticks don't propose it again
    proposals.proposal_dismiss(proposal=proposal, actor=operator)
    tick_project(project, reason="test")
    assert not Proposal.objects.filter(task=task, status="pending").exists()
    # Until the task changes
    task.refresh_from_db()
    task.body = "clarified"
    task.save()
    tick_project(project, reason="test")
    again = Proposal.objects.get(task=task, status="pending")
    # And accepting starts its run
    run = proposals.proposal_accept(proposal=again, actor=operator)
    again.refresh_from_db()
    assert again.status == "accepted" and again.run_id == run.pk and again.decided_by == operator
    assert run.task_id == task.pk and run.status == "queued"


def test_accepting_beyond_the_queue_maximum_is_refused(project, operator, settings):
    settings.AUTOPILOT_QUEUE_MAX = 1
    set_mode(project, "suggest")
    ExecutionRunFactory(project=project, status="queued")
    task = make_task(project)
    proposal = Proposal.objects.create(project=project, task=task)
    with pytest.raises(CapacityExceeded, match="queue is full"):
        proposals.proposal_accept(proposal=proposal, actor=operator)
    proposal.refresh_from_db()
    assert proposal.status == "pending"
    assert not ExecutionRun.objects.filter(task=task).exists()


def test_a_failed_task_waits_for_its_retry_backoff(project, settings):
    settings.AUTOPILOT_RETRY_BACKOFF_SECONDS = 600
    set_mode(project, "full_auto")
    task = make_task(project, attempts=1)
    ExecutionRunFactory(project=project, task=task, status="failed", ended_at=timezone.now())
    report = tick_project(project, reason="test")
    assert report.started == []
    assert list(report.projects[project.pk].skipped) == ["retry_backoff"]
    settings.AUTOPILOT_RETRY_BACKOFF_SECONDS = 0
    report = tick_project(project, reason="test")
    run = ExecutionRun.objects.get(task=task, status="queued")
    assert run.attempt == 2 and run.retry_of is not None


def test_the_database_refuses_a_second_open_run_for_a_task(project):
    from django.db import IntegrityError, transaction

    task = make_task(project)
    ExecutionRunFactory(project=project, task=task, status="running")
    with pytest.raises(IntegrityError), transaction.atomic():
        ExecutionRunFactory(project=project, task=task, status="queued")


def test_identical_idle_ticks_are_not_logged_twice(project):
    set_mode(project, "full_auto")
    tick_project(project, reason="a")
    tick_project(project, reason="b")
    assert Event.objects.filter(kind="tick.decision", project=project).count() == 1
    project.refresh_from_db()
    assert project.last_tick_summary["summary"]["note"] == "no ready task"
    assert Project.objects.get(pk=project.pk).tick_pending is False


def test_a_full_queue_holds_new_starts_back_with_the_reason(project, settings):
    settings.AUTOPILOT_QUEUE_MAX = 1
    set_mode(project, "full_auto")
    ExecutionRunFactory(status="queued")
    make_task(project)
    report = tick_project(project, reason="test")
    assert report.started == [] and report.projects[project.pk].note == "queue full"
    from autopilot.manager.explain import manager_plan

    assert manager_plan(project)["not_started"][0]["reasons"][0].startswith("queue full: 1/1")


def test_dry_run_computes_decisions_without_writing(project):
    set_mode(project, "full_auto")
    first = make_task(project, status=Task.Status.TODO)
    report = tick_project(project, reason="test", dry_run=True)
    assert [s["task"] for s in report.started] == [first.pk] and report.started[0]["run"] is None
    first.refresh_from_db()
    assert first.status == Task.Status.TODO and not ExecutionRun.objects.exists()
