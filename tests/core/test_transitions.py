"""Every status transition map, exhaustively: each (from, to) pair of each stateful model either
succeeds through autopilot.state.transition (with an Event) or is refused and leaves the row alone."""

from __future__ import annotations

import itertools

import pytest
from django.utils import timezone

from autopilot.errors import Conflict, InvalidTransition
from autopilot.manager.models import Proposal
from autopilot.models import Event
from autopilot.state import allowed_targets, transition
from blueprints.models import Blueprint, IngestionJob, PlanNode, SummaryJob, Task
from runs.models import ExecutionRun, ExecutionStep, Integration
from tests.factories import (
    BlueprintFactory,
    ExecutionRunFactory,
    ExecutionStepFactory,
    IngestionJobFactory,
    IntegrationFactory,
    PlanNodeFactory,
    ProjectFactory,
    ProposalFactory,
    TaskFactory,
    UserFactory,
)

NO_REPO = "/nonexistent/transition-tests"  # transitions never touch the repository: skip creating one


def _project():
    return ProjectFactory(repo_path=NO_REPO)


BUILDERS = {
    Proposal: lambda status: ProposalFactory(task=TaskFactory(project=_project()), status=status),
    Blueprint: lambda status: BlueprintFactory(project=_project(), status=status),
    IngestionJob: lambda status: IngestionJobFactory(
        blueprint=BlueprintFactory(project=_project()), status=status
    ),
    SummaryJob: lambda status: SummaryJob.objects.create(project=_project(), status=status),
    PlanNode: lambda status: PlanNodeFactory(blueprint=BlueprintFactory(project=_project()), status=status),
    Task: lambda status: TaskFactory(project=_project(), status=status),
    ExecutionRun: lambda status: ExecutionRunFactory(project=_project(), status=status),
    ExecutionStep: lambda status: ExecutionStepFactory(
        run=ExecutionRunFactory(project=_project()), status=status
    ),
    Integration: lambda status: IntegrationFactory(project=_project(), status=status),
}


def _pairs():
    for model in BUILDERS:
        for source, target in itertools.product(model.Status.values, repeat=2):
            allowed = target in allowed_targets(model, source)
            verdict = "allowed" if allowed else "refused"
            yield pytest.param(
                model, source, target, allowed, id=f"{model.__name__}:{source}->{target}:{verdict}"
            )


def test_every_stateful_model_is_covered():
    from django.apps import apps

    stateful = {m for m in apps.get_models() if hasattr(m, "TRANSITIONS") and hasattr(m, "Status")}
    assert stateful == set(BUILDERS)


@pytest.mark.parametrize("model", list(BUILDERS), ids=lambda m: m.__name__)
def test_transition_map_mentions_only_known_statuses(model):
    values = set(model.Status.values)
    assert set(model.TRANSITIONS) == values
    for source, targets in model.TRANSITIONS.items():
        assert set(targets) <= values, source
        assert source not in targets, f"{source} → itself: use allow_same instead"


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "source", "target", "allowed"), list(_pairs()))
def test_transition_pair(model, source, target, allowed):
    # Given a row in `source`
    obj = BUILDERS[model](source)
    actor = UserFactory()
    events_before = Event.objects.count()
    # When it is asked to move to `target`
    if allowed:
        result = transition(obj, target, actor=actor, reason="test")
        # Then the row moved and an Event records from/to and who
        assert result is obj and obj.status == target
        assert model.objects.get(pk=obj.pk).status == target
        event = Event.objects.get(kind=f"{model._meta.model_name}.status", subject_id=obj.pk)
        assert event.data["from"] == source and event.data["to"] == target and event.data["reason"] == "test"
        assert event.actor == actor and event.subject_type == model._meta.model_name
        assert event.project_id is not None
    else:
        # Then it is refused as a conflict naming the states, and nothing changed
        with pytest.raises(InvalidTransition) as refused:
            transition(obj, target, actor=actor)
        assert isinstance(refused.value, Conflict) and refused.value.status_code == 409
        assert f"'{source}'" in refused.value.message and f"'{target}'" in refused.value.message
        assert refused.value.extra == {
            "current": source,
            "target": target,
            "allowed": sorted(allowed_targets(model, source)),
        }
        assert model.objects.get(pk=obj.pk).status == source
        assert obj.status == source
        assert Event.objects.count() == events_before


@pytest.mark.django_db
@pytest.mark.parametrize("model", list(BUILDERS), ids=lambda m: m.__name__)
def test_allow_same_is_an_idempotent_no_op(model):
    # Given a row in its default status
    status = model._meta.get_field("status").default
    obj = BUILDERS[model](status)
    # When it is moved to the status it already has, with allow_same
    transition(obj, status, allow_same=True)
    transition(obj, status, allow_same=True)
    # Then nothing happened, twice; without allow_same it is refused
    assert model.objects.get(pk=obj.pk).status == status
    assert not Event.objects.filter(kind=f"{model._meta.model_name}.status").exists()
    with pytest.raises(InvalidTransition):
        transition(obj, status)


@pytest.mark.django_db
def test_allow_same_refreshes_a_stale_object():
    # Given an in-memory run that still says queued while the row is already preparing
    run = ExecutionRunFactory(project=_project())
    ExecutionRun.objects.filter(pk=run.pk).update(status=ExecutionRun.Status.PREPARING)
    # When a duplicate delivery asks for preparing with allow_same
    transition(run, ExecutionRun.Status.PREPARING, allow_same=True)
    # Then it is a no-op that brings the object up to date
    assert run.status == ExecutionRun.Status.PREPARING
    assert not Event.objects.filter(kind="executionrun.status").exists()


@pytest.mark.django_db
def test_stale_object_is_checked_against_the_locked_row():
    # Given a task loaded as "todo", then finished by someone else behind its back
    task = TaskFactory(project=_project())
    Task.objects.filter(pk=task.pk).update(status=Task.Status.DONE)
    assert task.status == Task.Status.TODO
    # When the stale object is moved to "cancelled" (allowed from todo, not from done)
    with pytest.raises(InvalidTransition) as refused:
        transition(task, Task.Status.CANCELLED)
    # Then the check used the row's real status
    assert refused.value.extra["current"] == Task.Status.DONE
    assert Task.objects.get(pk=task.pk).status == Task.Status.DONE


@pytest.mark.django_db
def test_stale_object_transition_records_the_real_from_state():
    # Given a run loaded as queued but already preparing in the database
    run = ExecutionRunFactory(project=_project())
    ExecutionRun.objects.filter(pk=run.pk).update(status=ExecutionRun.Status.PREPARING, lease_owner="w1")
    # When the stale object moves to running (allowed from preparing, not from queued)
    transition(run, ExecutionRun.Status.RUNNING)
    # Then the event says preparing → running and the object carries the row's other changes too
    event = Event.objects.get(kind="executionrun.status")
    assert (event.data["from"], event.data["to"]) == ("preparing", "running")
    assert run.status == ExecutionRun.Status.RUNNING and run.lease_owner == "w1"


@pytest.mark.django_db
def test_extra_fields_are_saved_with_the_status():
    run = ExecutionRunFactory(project=_project(), status=ExecutionRun.Status.RUNNING)
    ended = timezone.now()
    transition(
        run,
        ExecutionRun.Status.FAILED,
        fields={"ended_at": ended, "status_reason": "boom"},
        event_data={"code": 7},
    )
    row = ExecutionRun.objects.get(pk=run.pk)
    assert (row.status, row.ended_at, row.status_reason) == ("failed", ended, "boom")
    assert Event.objects.get(kind="executionrun.status").data["code"] == 7
