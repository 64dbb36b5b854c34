"""One lock order (Project → Task → Run → Step, rows of one table by pk): two services locking the same
run and step at the same moment wait in a line, never in a circle (PostgreSQL row locks, real
transactions in threads)."""

from __future__ import annotations

import threading
import time

import pytest
from django.conf import settings
from django.db import connection, connections, transaction

from runs import locks
from runs.models import ExecutionRun, ExecutionStep
from runs.services import run_reject
from tests.factories import ExecutionRunFactory, ExecutionStepFactory, ProjectFactory

Status, StepStatus = ExecutionRun.Status, ExecutionStep.Status


def _waiting_for_a_lock() -> int:
    """Backends of this database waiting for a row lock right now (seen from a third connection)."""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.skipif(
    not settings.IS_POSTGRES, reason="row locks held by another transaction: PostgreSQL (DATABASE_URL)"
)
@pytest.mark.django_db(transaction=True)
def test_deciding_a_step_while_another_service_holds_its_run_waits_instead_of_deadlocking():
    # Given a run waiting for the approval of one of its steps
    run = ExecutionRunFactory(project=ProjectFactory(), status=Status.WAITING_APPROVAL)
    step = ExecutionStepFactory(
        run=run, status=StepStatus.NEEDS_APPROVAL, kind=ExecutionStep.Kind.RUN_TERMINAL
    )
    holding, go_on = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    done: list[str] = []

    def run_side():
        """A service of the run lifecycle (stop, advance, the worker): the run, then its step."""
        try:
            with transaction.atomic():
                locks.lock_run(run.pk)
                holding.set()
                assert go_on.wait(timeout=30)
                locks.lock_step(step.pk)
            done.append("run side")
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    def step_side():
        """A human rejects the step at the same moment (the real service)."""
        try:
            assert holding.wait(timeout=30)
            run_reject(step=ExecutionStep.objects.get(pk=step.pk), message="use the test command instead")
            done.append("step side")
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run_side), threading.Thread(target=step_side)]
    for thread in threads:
        thread.start()
    try:
        # When the step side is blocked on a lock the run side holds, the run side goes on to the step
        assert holding.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _waiting_for_a_lock() < 1:
            assert time.monotonic() < deadline, "the step side never waited for the run side's lock"
            time.sleep(0.02)
    finally:
        go_on.set()
        for thread in threads:
            thread.join(timeout=60)

    # Then both finish, one after the other: no deadlock was detected and broken
    assert not errors, errors
    assert done == ["run side", "step side"]
    step.refresh_from_db()
    run.refresh_from_db()
    assert step.status == StepStatus.SKIPPED and run.status == Status.RUNNING


def test_locks_of_one_table_are_taken_in_primary_key_order(django_assert_num_queries, db):
    # Given runs created in an order the queue would not use
    project = ProjectFactory()
    runs = [ExecutionRunFactory(project=project, priority=p) for p in (1, 5, 3)]
    # When they are locked through the helper, from a queryset in queue order
    with transaction.atomic():
        locked = locks.lock_runs(ExecutionRun.objects.filter(project=project).order_by("-priority"))
    # Then the rows come (and are locked) by primary key
    assert [r.pk for r in locked] == sorted(r.pk for r in runs)
