"""Task writes (create, edit, delete, transition) and the reads the manager relies on: ready, next,
refresh_ready."""

from __future__ import annotations

import pytest

from autopilot.errors import ApplicationError, InvalidTransition
from autopilot.models import Event
from blueprints.models import Task
from blueprints.selectors import dependency_view, next_task, ready_tasks
from blueprints.services import (
    dependency_add,
    refresh_ready,
    task_create,
    task_delete,
    task_transition,
    task_update,
)
from tests.factories import PlanNodeFactory, ProjectFactory, TaskFactory

pytestmark = pytest.mark.django_db


def test_create_a_task_by_hand(project, operator):
    # when a task is created with a plan node of the project
    node = PlanNodeFactory(blueprint__project=project, order=7)
    task = task_create(
        project=project,
        title="  Write   the docs ",
        body="All of them",
        priority=4,
        complexity=5,
        plan_node=node,
        actor=operator,
    )

    # then it is saved as given, placed at its node in the plan, and the creation is an event
    task.refresh_from_db()
    assert (task.title, task.body, task.priority, task.complexity) == ("Write the docs", "All of them", 4, 5)
    assert task.plan_node == node and task.plan_order == 7 and task.created_by == operator
    assert task.status == Task.Status.TODO and task.kind == Task.Kind.WORK
    assert Event.objects.filter(kind="task.created", subject_id=task.pk, actor=operator).exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": "  "}, "needs a title"),
        ({"title": "x" * 501}, "at most 500"),
        ({"priority": 6}, "priority must be from 0 to 5"),
        ({"priority": "high"}, "priority must be a whole number"),
        ({"complexity": 0}, "complexity must be from 1 to 10"),
        ({"complexity": 11}, "complexity must be from 1 to 10"),
    ],
    ids=[
        "blank-title",
        "long-title",
        "priority-too-high",
        "priority-not-a-number",
        "complexity-0",
        "complexity-11",
    ],
)
def test_bad_task_input_is_refused_with_the_reason(project, fields, message):
    with pytest.raises(ApplicationError, match=message):
        task_create(project=project, **{"title": "Fine", **fields})
    assert not Task.objects.exists()


def test_a_plan_node_of_another_project_is_refused(project):
    other_node = PlanNodeFactory(blueprint__project=ProjectFactory())
    with pytest.raises(ApplicationError, match="belongs to another project"):
        task_create(project=project, title="T", plan_node=other_node)


def test_edit_a_task(project, operator):
    # given a task
    task = TaskFactory(project=project, title="Old", priority=1)

    # when its fields are edited
    task = task_update(task=task, title="New", priority=5, complexity=8, actor=operator)

    # then they change and the change is recorded with before/after
    task.refresh_from_db()
    assert (task.title, task.priority, task.complexity) == ("New", 5, 8)
    event = Event.objects.get(kind="task.updated", subject_id=task.pk)
    assert event.data["changes"]["priority"] == {"from": 1, "to": 5}

    # and the status cannot be edited as a field
    with pytest.raises(ApplicationError, match="transition"):
        task_update(task=task, status="done")


def test_delete_a_task_but_not_one_in_progress(project):
    task = TaskFactory(project=project)
    busy = TaskFactory(project=project, status=Task.Status.IN_PROGRESS)
    task_delete(task=task)
    assert not Task.objects.filter(pk=task.pk).exists()
    with pytest.raises(ApplicationError, match="in progress"):
        task_delete(task=busy)


def test_transitions_go_through_the_state_machine(project, operator):
    # given a task with no dependencies
    task = TaskFactory(project=project)

    # when it moves todo → in_progress → review → done
    for status in ("in_progress", "review", "done"):
        task = task_transition(task=task, to=status, actor=operator, reason=f"to {status}")

    # then each move is stamped and recorded; a disallowed move is refused
    task.refresh_from_db()
    assert task.status == Task.Status.DONE and task.started_at and task.completed_at
    assert Event.objects.filter(kind="task.status", subject_id=task.pk).count() == 3
    with pytest.raises(InvalidTransition):
        task_transition(task=task, to="blocked")
    with pytest.raises(ApplicationError, match="Unknown task status"):
        task_transition(task=task, to="finished")


def test_a_task_cannot_be_made_ready_while_a_dependency_is_unfinished(project):
    task, dep = TaskFactory(project=project), TaskFactory(project=project, title="Schema")
    dependency_add(task=task, depends_on=dep)
    with pytest.raises(ApplicationError, match="waits for 1 unfinished dependency: 'Schema'"):
        task_transition(task=task, to="ready")


def test_ready_means_all_dependencies_done(project):
    # given tasks with none, some and all dependencies done
    done_1 = TaskFactory(project=project, title="done 1", status=Task.Status.DONE)
    done_2 = TaskFactory(project=project, title="done 2", status=Task.Status.DONE)
    open_dep = TaskFactory(project=project, title="open dep", status=Task.Status.IN_PROGRESS)
    TaskFactory(project=project, title="free")
    all_done = TaskFactory(project=project, title="all done")
    partly = TaskFactory(project=project, title="partly")
    for dep in (done_1, done_2):
        dependency_add(task=all_done, depends_on=dep)
    dependency_add(task=partly, depends_on=done_1)
    dependency_add(task=partly, depends_on=open_dep)
    TaskFactory(project=project, title="removed", removed_from_spec=True)
    TaskFactory(project=project, title="milestone", kind=Task.Kind.MILESTONE)
    TaskFactory(project=ProjectFactory(), title="elsewhere")

    # when the ready tasks are read
    ready = {t.title for t in ready_tasks(project)}

    # then only tasks whose every dependency is done, still in the spec, and real work are ready
    assert ready == {"free", "all done"}
    view = dependency_view(partly)
    assert [d.depends_on.title for d in view.blocking] == ["open dep"] and not view.is_ready


def test_next_task_ranks_by_priority_then_learned_priority_then_plan_order(project):
    # given ready tasks
    TaskFactory(project=project, title="low", priority=1, plan_order=1)
    TaskFactory(project=project, title="late", priority=3, plan_order=9)
    early = TaskFactory(project=project, title="early", priority=3, plan_order=2)

    # when the next task is asked for
    task, reason = next_task(project)

    # then the highest priority wins, ties go to plan order, and the reason says so
    assert task == early
    assert "ties at priority P3" in reason and "first in plan order" in reason and "3 ready tasks" in reason

    # and a learned priority breaks a priority tie before plan order
    Task.objects.filter(title="late").update(learned_priority=0.8)
    task, reason = next_task(project)
    assert task.title == "late" and "highest learned priority (0.80)" in reason

    # and a clear priority lead is named as such
    Task.objects.filter(title="low").update(priority=5)
    task, reason = next_task(project)
    assert task.title == "low" and "highest priority (P5)" in reason and "no dependencies" in reason


def test_next_task_when_nothing_is_ready_says_why(project):
    # given one task in progress and one waiting for it
    busy = TaskFactory(project=project, status=Task.Status.IN_PROGRESS)
    waiting = TaskFactory(project=project)
    dependency_add(task=waiting, depends_on=busy)

    # when the next task is asked for
    task, reason = next_task(project)

    # then there is none, and the reason explains
    assert task is None
    assert reason == "No task is ready: 1 waits for unfinished dependencies, 1 in progress."
    assert next_task(ProjectFactory())[1].startswith("No task is ready: there are no tasks yet")


def test_refresh_ready_promotes_completes_milestones_and_demotes(project):
    # given: a todo task whose dependency is done, a milestone over done work, a task behind the
    # milestone, and a ready task whose dependency is not done
    done = TaskFactory(project=project, status=Task.Status.DONE)
    promoted = TaskFactory(project=project, title="promoted")
    dependency_add(task=promoted, depends_on=done)
    gate = TaskFactory(project=project, title="gate", kind=Task.Kind.MILESTONE)
    dependency_add(task=gate, depends_on=done)
    behind_gate = TaskFactory(project=project, title="behind gate")
    dependency_add(task=behind_gate, depends_on=gate)
    stale = TaskFactory(project=project, title="stale", status=Task.Status.READY)
    blocker = TaskFactory(project=project, title="blocker", status=Task.Status.IN_PROGRESS)
    Task.objects.filter(pk=blocker.pk).update(status=Task.Status.IN_PROGRESS)
    dependency_add(task=stale, depends_on=blocker)  # the service already demotes it …
    Task.objects.filter(pk=stale.pk).update(status=Task.Status.READY)  # … so force the stale state

    # when readiness is refreshed
    counts = refresh_ready(project)

    # then in one pass: the milestone is done, both tasks behind done work are ready, the stale one is todo
    statuses = dict(Task.objects.filter(project=project).values_list("title", "status"))
    assert statuses["gate"] == "done"
    assert statuses["promoted"] == "ready" and statuses["behind gate"] == "ready"
    assert statuses["stale"] == "todo"
    assert counts == {"milestones_done": 1, "milestones_reopened": 0, "ready": 2, "unready": 1}
    assert refresh_ready(project) == {
        "milestones_done": 0,
        "milestones_reopened": 0,
        "ready": 0,
        "unready": 0,
    }
