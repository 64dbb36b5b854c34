"""Incremental readiness: what marks a task stale, what a pass re-derives, and what it leaves alone."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from blueprints.models import Task
from blueprints.readiness import refresh_readiness
from blueprints.services import dependency_add, dependency_remove, refresh_ready, task_delete, task_transition
from tests.factories import ProjectFactory, TaskDependencyFactory, TaskFactory

STALE, CURRENT = Task.READINESS_STALE, Task.READINESS_CURRENT


def task(project, status=Task.Status.TODO, **kwargs) -> Task:
    return TaskFactory(project=project, status=status, **kwargs)


def depend(dependent: Task, on: Task) -> None:
    TaskDependencyFactory(task=dependent, depends_on=on)


def marks(*tasks: Task) -> list[int]:
    by_pk = dict(Task.objects.filter(pk__in=[t.pk for t in tasks]).values_list("pk", "readiness_mark"))
    return [by_pk[t.pk] for t in tasks]


def status(t: Task) -> str:
    return Task.objects.values_list("status", flat=True).get(pk=t.pk)


def settle(project) -> None:
    """Derive everything once, so the test starts with no stale task."""
    refresh_readiness([project.pk])
    assert not Task.objects.filter(project=project, readiness_mark=STALE).exists()


@pytest.mark.django_db
def test_a_new_task_is_stale_and_a_pass_derives_it_and_clears_the_mark(project):
    # Given a new task with no dependencies
    lone = task(project)
    assert marks(lone) == [STALE]
    # When a pass runs
    result = refresh_readiness([project.pk])
    # Then it is ready and no longer stale
    assert status(lone) == Task.Status.READY and marks(lone) == [CURRENT]
    assert result["promoted"] == 1 and result["checked"] == 1


@pytest.mark.django_db
def test_finishing_a_task_re_derives_only_its_dependents(project):
    # Given A, B depending on A, C depending on A and on an unfinished X, and an unrelated D
    a, x = task(project, Task.Status.READY), task(project)
    b, c = task(project), task(project)
    depend(b, a), depend(c, a), depend(c, x)
    unrelated = task(project)
    depend(unrelated, x)
    settle(project)
    # When A is done
    task_transition(task=a, to=Task.Status.DONE)
    # Then exactly its dependents are stale, and a pass looks at those two only
    assert marks(b, c, unrelated, x) == [STALE, STALE, CURRENT, CURRENT]
    result = refresh_readiness([project.pk])
    assert result["checked"] == 2
    assert status(b) == Task.Status.READY  # its only dependency is done
    assert status(c) == Task.Status.TODO  # X is not
    assert marks(b, c) == [CURRENT, CURRENT]


@pytest.mark.django_db
def test_reopening_a_done_task_sends_its_ready_dependents_back_to_todo(project):
    # Given B ready because A is done
    a = task(project, Task.Status.DONE)
    b = task(project)
    depend(b, a)
    settle(project)
    assert status(b) == Task.Status.READY
    # When A is reopened and a pass runs
    task_transition(task=a, to=Task.Status.TODO)
    result = refresh_readiness([project.pk])
    # Then B waits again
    assert status(b) == Task.Status.TODO
    assert result["demoted"] == 1


@pytest.mark.django_db
def test_removing_the_last_unfinished_dependency_makes_the_task_ready(project):
    # Given B waiting on an unfinished X
    x, b = task(project), task(project)
    dependency_add(task=b, depends_on=x)
    settle(project)
    assert status(b) == Task.Status.TODO
    # When the dependency is removed
    dependency_remove(task=b, depends_on=x)
    # Then B is stale and the next pass makes it ready
    assert marks(b) == [STALE]
    refresh_readiness([project.pk])
    assert status(b) == Task.Status.READY


@pytest.mark.django_db
def test_deleting_an_unfinished_dependency_frees_its_dependents(project):
    # Given B waiting on an unfinished X
    x, b = task(project), task(project)
    depend(b, x)
    settle(project)
    # When X is deleted
    task_delete(task=x)
    # Then B becomes ready on the next pass
    assert marks(b) == [STALE]
    refresh_readiness([project.pk])
    assert status(b) == Task.Status.READY


@pytest.mark.django_db
def test_a_milestone_completed_by_a_pass_unblocks_its_dependents_in_the_same_pass(project):
    # Given A -> milestone M1 -> milestone M2 -> work W (each waits on the previous)
    a = task(project, Task.Status.READY)
    m1 = task(project, kind=Task.Kind.MILESTONE)
    m2 = task(project, kind=Task.Kind.MILESTONE)
    w = task(project)
    depend(m1, a), depend(m2, m1), depend(w, m2)
    settle(project)
    assert [status(t) for t in (m1, m2, w)] == [Task.Status.TODO] * 3
    # When A is done and ONE pass runs
    task_transition(task=a, to=Task.Status.DONE)
    result = refresh_readiness([project.pk])
    # Then both milestones completed and W is ready: the cascade happened within the pass
    assert [status(t) for t in (m1, m2, w)] == [Task.Status.DONE, Task.Status.DONE, Task.Status.READY]
    assert result["milestones"] == 2 and result["promoted"] == 1
    assert marks(m1, m2, w) == [CURRENT] * 3


@pytest.mark.django_db
def test_a_full_pass_repairs_a_change_written_behind_the_services_back(project):
    # Given B waiting on X, and X marked done by a raw UPDATE that bypasses the services
    x, b = task(project), task(project)
    depend(b, x)
    settle(project)
    Task.objects.filter(pk=x.pk).update(status=Task.Status.DONE)
    # When an incremental pass runs, it does not know (nothing is stale)
    assert refresh_readiness([project.pk])["checked"] == 0
    assert status(b) == Task.Status.TODO
    # But a full pass (`autopilot task refresh`) re-derives every task
    counts = refresh_ready(project)
    assert counts["ready"] == 1 and status(b) == Task.Status.READY


@pytest.mark.django_db
def test_the_hourly_sweep_repairs_every_project_and_records_what_changed(project):
    from django_q.models import Schedule

    from autopilot.models import Event
    from autopilot.schedules import ensure_schedules
    from blueprints.tasks import readiness_sweep

    # Given two projects, each with a task whose blocker was marked done behind the services' back
    other = ProjectFactory()
    waiting = []
    for p in (project, other):
        blocker, dependent = task(p), task(p)
        depend(dependent, blocker)
        settle(p)
        Task.objects.filter(pk=blocker.pk).update(status=Task.Status.DONE)
        waiting.append(dependent)
    # When the scheduled sweep runs (it is registered hourly)
    ensure_schedules()
    schedule = Schedule.objects.get(name="blueprints-readiness-sweep")
    assert schedule.func == "blueprints.tasks.readiness_sweep" and schedule.minutes == 60
    result = readiness_sweep()
    # Then both dependents are ready, and each project has an event saying so
    assert [status(t) for t in waiting] == [Task.Status.READY] * 2
    assert result["changed"] == {
        p.pk: {"milestones_done": 0, "milestones_reopened": 0, "ready": 1, "unready": 0}
        for p in (project, other)
    }
    assert Event.objects.filter(kind="tasks.readiness", project_id__in=[project.pk, other.pk]).count() == 2


@pytest.mark.django_db
def test_a_pass_only_touches_the_projects_it_is_given(project):
    # Given a stale task in another project
    other = ProjectFactory()
    theirs = task(other)
    settle(project)
    # When this project's pass runs
    refresh_readiness([project.pk])
    # Then the other project's task is still stale and untouched
    assert marks(theirs) == [STALE] and status(theirs) == Task.Status.TODO


@pytest.mark.django_db
def test_the_number_of_statements_of_a_pass_does_not_grow_with_the_stale_tasks(project):
    def statements(count: int) -> int:
        roots = [task(project, Task.Status.READY) for _ in range(count)]
        for root in roots:
            depend(task(project), root)
        settle(project)
        for root in roots:
            task_transition(task=root, to=Task.Status.DONE)
        with CaptureQueriesContext(connection) as ctx:
            assert refresh_readiness([project.pk])["promoted"] == count
        return len(ctx.captured_queries)

    assert statements(3) == statements(30)


@pytest.mark.postgres
@pytest.mark.skipif(
    not settings.IS_POSTGRES, reason="row locks held by another transaction: PostgreSQL (DATABASE_URL)"
)
@pytest.mark.django_db(transaction=True)
def test_a_pass_skips_a_task_another_transaction_holds_and_leaves_it_stale():
    # Given two stale tasks, one of them locked by a writer's open transaction
    project = ProjectFactory()
    held, free = task(project), task(project)
    locked, release = threading.Event(), threading.Event()

    def writer():
        try:
            with transaction.atomic():
                Task.objects.select_for_update().get(pk=held.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert locked.wait(timeout=30)
        # When a pass runs meanwhile, it does not wait for the writer
        result = refresh_readiness([project.pk])
        # Then it derived the free task and left the held one stale for a later pass
        assert result["promoted"] == 1
        assert status(free) == Task.Status.READY and status(held) == Task.Status.TODO
        assert marks(held, free) == [STALE, CURRENT]
    finally:
        release.set()
        thread.join(timeout=30)
    # And once the writer is gone, the next pass derives it
    refresh_readiness([project.pk])
    assert status(held) == Task.Status.READY and marks(held) == [CURRENT]
