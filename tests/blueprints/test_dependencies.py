"""Adding and removing dependencies by hand: same project, no self-dependency, no cycle (named),
and two concurrent adds that would close a cycle never both succeed."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from autopilot.errors import ApplicationError
from autopilot.models import Event
from blueprints.models import Task, TaskDependency
from blueprints.services import dependency_add, dependency_remove
from tests.factories import ProjectFactory, TaskDependencyFactory, TaskFactory


@pytest.mark.django_db
def test_add_and_remove_a_dependency(project, operator):
    # given two tasks
    api, schema = TaskFactory(project=project, title="API"), TaskFactory(project=project, title="Schema")

    # when API is made to depend on Schema, twice
    first = dependency_add(task=api, depends_on=schema, actor=operator)
    again = dependency_add(task=api, depends_on=schema, actor=operator)

    # then one manual edge exists, recorded with who added it
    assert first.pk == again.pk
    assert first.source == TaskDependency.Source.MANUAL
    assert TaskDependency.objects.filter(task=api, depends_on=schema).count() == 1
    event = Event.objects.get(kind="task.dependency_added")
    assert event.actor == operator and event.data["depends_on"] == schema.pk

    # and when it is removed, it is gone
    dependency_remove(task=api, depends_on=schema, actor=operator)
    assert not TaskDependency.objects.exists()
    assert Event.objects.filter(kind="task.dependency_removed", subject_id=api.pk).exists()


@pytest.mark.django_db
def test_a_task_cannot_depend_on_itself(project):
    task = TaskFactory(project=project, title="Lonely")
    with pytest.raises(ApplicationError, match="'Lonely' .* cannot depend on itself"):
        dependency_add(task=task, depends_on=task)


@pytest.mark.django_db
def test_dependencies_stay_within_one_project():
    # given tasks of two projects
    mine, theirs = TaskFactory(project=ProjectFactory()), TaskFactory(project=ProjectFactory())

    # when one is made to depend on the other, it is refused
    with pytest.raises(ApplicationError, match="another project"):
        dependency_add(task=mine, depends_on=theirs)
    assert not TaskDependency.objects.exists()


@pytest.mark.django_db
def test_a_direct_cycle_is_refused_and_named(project):
    # given A depends on B
    a, b = TaskFactory(project=project, title="A"), TaskFactory(project=project, title="B")
    dependency_add(task=a, depends_on=b)

    # when B is made to depend on A
    with pytest.raises(ApplicationError) as caught:
        dependency_add(task=b, depends_on=a)

    # then the error names the cycle in "depends on" order
    assert caught.value.message == (
        f"This dependency would create a cycle: B (#{b.pk}) → A (#{a.pk}) → B (#{b.pk})."
    )
    assert caught.value.extra["cycle"] == [b.pk, a.pk, b.pk]
    assert TaskDependency.objects.count() == 1


@pytest.mark.django_db
def test_an_indirect_cycle_is_refused_and_named(project):
    # given A → B → C → D (each depends on the next)
    a, b, c, d = (TaskFactory(project=project, title=t) for t in "ABCD")
    for task, dep in ((a, b), (b, c), (c, d)):
        dependency_add(task=task, depends_on=dep)

    # when D is made to depend on B
    with pytest.raises(ApplicationError) as caught:
        dependency_add(task=d, depends_on=b)

    # then the whole loop is named: D → B → C → D
    assert caught.value.extra["cycle_titles"] == ["D", "B", "C", "D"]
    assert f"D (#{d.pk}) → B (#{b.pk}) → C (#{c.pk}) → D (#{d.pk})" in caught.value.message
    # and a dependency that closes no loop is still fine
    dependency_add(task=a, depends_on=d)


@pytest.mark.django_db
def test_a_ready_task_that_gains_an_unfinished_dependency_is_no_longer_ready(project):
    # given a ready task
    task = TaskFactory(project=project, status=Task.Status.READY)
    other = TaskFactory(project=project)

    # when it gets a dependency on an unfinished task
    dependency_add(task=task, depends_on=other)

    # then it goes back to todo
    task.refresh_from_db()
    assert task.status == Task.Status.TODO


@pytest.mark.django_db
def test_removing_a_dependency_by_id(project):
    dependency = TaskDependencyFactory(task__project=project)
    dependency_remove(dependency=dependency)
    assert not TaskDependency.objects.exists()
    with pytest.raises(ApplicationError, match="does not exist"):
        dependency_remove(dependency=dependency)


@pytest.mark.django_db(transaction=True)
def test_concurrent_adds_that_would_form_a_cycle_never_both_succeed():
    # given two tasks in a committed database file, and two threads (two connections) ready to link
    # them in opposite directions at the same moment
    project = ProjectFactory()
    a, b = TaskFactory(project=project, title="A"), TaskFactory(project=project, title="B")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def link(task, depends_on):
        try:
            barrier.wait(timeout=30)
            dependency_add(task=task, depends_on=depends_on)
            outcomes.append("added")
        except ApplicationError as exc:
            outcomes.append(exc.message)
        finally:
            connection.close()

    threads = [threading.Thread(target=link, args=pair) for pair in ((a, b), (b, a))]

    # when both run
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then exactly one succeeded and the other was refused with the cycle named
    assert sorted(outcomes, key=lambda o: o != "added")[0] == "added"
    assert outcomes.count("added") == 1, outcomes
    refused = next(o for o in outcomes if o != "added")
    assert "would create a cycle" in refused and "A (#" in refused and "B (#" in refused
    assert TaskDependency.objects.count() == 1
