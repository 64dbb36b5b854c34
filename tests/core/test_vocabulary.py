"""One vocabulary: the named status sets, the subtree rule and the ranking order are defined once and
every door (dashboard, admin, selectors, ranking, metrics) counts with them."""

from __future__ import annotations

import itertools

import pytest
from django.contrib import admin
from django.db.models import Q
from django.test import RequestFactory
from django.utils import timezone

from autopilot.manager import ranking
from autopilot.manager.tick import LABELS, Code, Decision, decide, reason_text
from autopilot.models import Project
from autopilot.views import _with_overview
from blueprints.filtersets import within_node
from blueprints.models import Task
from blueprints.selectors import ready_tasks
from runs.models import ExecutionRun, ExecutionStep, Integration
from tests.factories import (
    ExecutionRunFactory,
    PlanNodeFactory,
    ProjectFactory,
    TaskDependencyFactory,
    TaskFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

R, T = ExecutionRun.Status, Task.Status


@pytest.mark.parametrize(
    ("named", "members"),
    [
        pytest.param(ExecutionRun.ACTIVE, {R.PREPARING, R.RUNNING, R.WAITING_APPROVAL}, id="run-active"),
        pytest.param(
            ExecutionRun.OPEN, {R.QUEUED, R.PREPARING, R.RUNNING, R.WAITING_APPROVAL}, id="run-open"
        ),
        pytest.param(
            ExecutionRun.TERMINAL, {R.SUCCEEDED, R.FAILED, R.CANCELLED, R.TIMED_OUT}, id="run-terminal"
        ),
        pytest.param(ExecutionRun.FAILED, {R.FAILED, R.TIMED_OUT}, id="run-failed"),
        pytest.param(
            Task.OPEN, {T.TODO, T.READY, T.IN_PROGRESS, T.REVIEW, T.INTEGRATING, T.BLOCKED}, id="task-open"
        ),
        pytest.param(Task.CLOSED, {T.DONE, T.CANCELLED}, id="task-closed"),
        pytest.param(Task.UNSTARTED, {T.TODO, T.READY}, id="task-unstarted"),
        pytest.param(Task.RUNNABLE, {T.READY}, id="task-runnable"),
        pytest.param(Task.SATISFIED, {T.DONE}, id="task-satisfied"),
        pytest.param(Task.DELIVERED, {T.REVIEW, T.INTEGRATING, T.DONE}, id="task-delivered"),
        pytest.param(Integration.IN_FLIGHT, {"merging", "testing"}, id="integration-in-flight"),
        pytest.param(Integration.OPEN, {"queued", "merging", "testing"}, id="integration-open"),
        pytest.param(
            ExecutionStep.FINISHED, {"completed", "failed", "skipped", "rolled_back"}, id="step-finished"
        ),
        pytest.param(ExecutionStep.WAITING, {"needs_approval"}, id="step-waiting"),
    ],
)
def test_a_named_status_set_has_exactly_its_members(named, members):
    assert set(named) == set(members)


def test_run_sets_partition_the_statuses_and_the_database_guard_uses_open():
    assert ExecutionRun.OPEN | ExecutionRun.TERMINAL == set(R)
    assert not ExecutionRun.OPEN & ExecutionRun.TERMINAL
    (guard,) = [c for c in ExecutionRun._meta.constraints if c.name == "run_one_open_code_run_per_task"]
    assert guard.condition == Q(
        role="code", status__in=["queued", "preparing", "running", "waiting_approval"]
    )
    assert set(dict(guard.condition.children)["status__in"]) == ExecutionRun.OPEN
    assert Task.OPEN | Task.CLOSED == set(T) and not Task.OPEN & Task.CLOSED


def test_integration_sets_partition_the_statuses_and_the_database_guards_use_them():
    I = Integration.Status  # noqa: E741
    assert Integration.OPEN | Integration.TERMINAL == set(I) and not Integration.OPEN & Integration.TERMINAL
    guards = {c.name: c for c in Integration._meta.constraints}
    in_flight = guards["integration_one_in_flight_per_project"].condition
    open_ = guards["integration_one_open_per_task"].condition
    assert set(dict(in_flight.children)["status__in"]) == Integration.IN_FLIGHT
    assert set(dict(open_.children)["status__in"]) == Integration.OPEN


def test_the_dashboard_the_admin_and_the_ranking_count_the_same_runs_and_tasks():
    # Given a project with one run in every status and one task in every status
    project = ProjectFactory(max_parallel_runs=20)
    for status in R:
        ExecutionRunFactory(project=project, status=status)
    for status in T:
        TaskFactory(project=project, status=status)

    # When the dashboard, the admin changelist and the manager's capacity count them
    (row,) = _with_overview(Project.objects.filter(pk=project.pk))
    request = RequestFactory().get("/admin/autopilot/project/")
    request.user = UserFactory(is_superuser=True, is_staff=True)
    admin_row = admin.site._registry[Project].get_queryset(request).get(pk=project.pk)
    capacity = ranking.capacities([project])[project.pk]

    # Then "active runs" and "open tasks" are the named sets everywhere
    assert row.active_runs == admin_row.active_run_count == len(ExecutionRun.ACTIVE) == 3
    assert row.open_tasks == admin_row.open_task_count == len(Task.OPEN) == 6
    assert capacity.project_open == len(ExecutionRun.OPEN) == 4
    assert capacity.queue_size == 1


def test_ready_means_every_dependency_done_for_the_selectors_and_the_tick():
    # Given tasks in todo and ready, with done and undone dependencies
    project = ProjectFactory()
    done = TaskFactory(project=project, status=T.DONE)
    undone = TaskFactory(project=project, status=T.IN_PROGRESS)
    ready_free = TaskFactory(project=project, status=T.READY, plan_order=1)
    todo_free = TaskFactory(project=project, status=T.TODO, plan_order=2)
    todo_blocked = TaskFactory(project=project, status=T.TODO, plan_order=3)
    TaskDependencyFactory(task=todo_free, depends_on=done)
    TaskDependencyFactory(task=todo_blocked, depends_on=undone)

    # Then the selector's "ready" (dependencies done, not yet marked) contains the tick's "runnable"
    # (marked ready), and the explanation of a plan lists the same tasks as the selector
    assert set(ready_tasks(project)) == {ready_free, todo_free}
    assert set(ranking.runnable_tasks([project.pk])) == {ready_free}
    assert set(ranking.explained_tasks(project)) == {ready_free, todo_free}


def test_one_ranking_order_for_the_selectors_the_tick_and_the_explanation():
    # Given ready tasks that tie on some ranking keys and not on others
    project = ProjectFactory()
    tasks = [
        TaskFactory(project=project, status=T.READY, priority=p, learned_priority=lp, plan_order=o)
        for p, lp, o in itertools.product((1, 3), (0.0, 2.5), (2, 1))
    ]
    expected = sorted(tasks, key=lambda t: (-t.priority, -t.learned_priority, t.plan_order, t.pk))

    ranked = ranking.ranked_candidates([project], modes={project.pk: "full_auto"}, limits={project.pk: 100})
    assert [c.pk for c in ranked[project.pk]] == [t.pk for t in expected]
    assert list(ready_tasks(project)) == expected
    assert list(ranking.explained_tasks(project)) == expected
    assert sorted(tasks, key=ranking.rank_key) == expected


def test_the_subtree_of_a_plan_node_excludes_archived_nodes_for_the_board_and_the_active_phase():
    # Given a phase with a current child and an archived child of the same anchor prefix
    project = ProjectFactory(autonomy_mode="full_auto")
    phase = PlanNodeFactory(project=project, blueprint__project=project, anchor="phase-1")
    current = PlanNodeFactory(project=project, blueprint=phase.blueprint, anchor="phase-1/api")
    archived = PlanNodeFactory(
        project=project, blueprint=phase.blueprint, anchor="phase-1/old", archived_at=timezone.now()
    )
    other = PlanNodeFactory(project=project, blueprint=phase.blueprint, anchor="phase-10")
    inside = TaskFactory(project=project, status=T.READY, plan_node=current)
    in_archived = TaskFactory(project=project, status=T.READY, plan_node=archived)
    outside = TaskFactory(project=project, status=T.READY, plan_node=other)
    Project.objects.filter(pk=project.pk).update(active_phase=phase)
    project.refresh_from_db()

    # Then the board's filter, the tick's phase filter and the explanation agree on the subtree
    assert set(within_node(Task.objects.all(), phase)) == {inside}
    assert set(Task.objects.filter(ranking.phase_filter([project]))) == {inside}
    explained = {t.pk: t.in_phase for t in ranking.explained_tasks(project)}
    assert explained == {inside.pk: True, in_archived.pk: False, outside.pk: False}


def test_tick_decisions_carry_codes_and_their_text_is_made_from_the_code():
    # Given a project whose limit is reached
    project = ProjectFactory(autonomy_mode="full_auto", max_parallel_runs=1)
    task = TaskFactory(project=project, status=T.READY)
    ExecutionRunFactory(project=project, status=R.RUNNING)
    capacity = ranking.capacities([project])[project.pk]

    # When the tick decides
    (decision,) = decide(
        project, mode="full_auto", capacity=capacity, candidates=[task], failures={}, now=timezone.now()
    )

    # Then the decision's code is what is counted, and its text starts with the code's label
    assert decision.code == Code.CAPACITY
    assert decision.reasons == [reason_text(Code.CAPACITY, decision.detail)]
    assert decision.reasons[0].startswith("capacity: project limit reached (1/1")
    assert set(LABELS) == {v for k, v in vars(Code).items() if not k.startswith("_")}
    assert Decision(task, "skip", Code.PAUSED).as_dict()["code"] == "paused"
