"""runs_create_many: the tick's bulk path — same validation, defaults and redaction as run_create,
one queue check for the batch, all or nothing, the DB guard intact."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import IntegrityError, transaction

from autopilot.errors import ApplicationError, CapacityExceeded
from autopilot.models import Event
from runs.models import ExecutionRun
from runs.services import runs_create_many
from tests.factories import TaskFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_creates_every_run_with_defaults_redaction_mode_and_one_created_event_each(project):
    from django_q.models import OrmQ

    # Given a project whose .env holds a secret, and two of its tasks
    Path(project.repo_path, ".env").write_text("API_TOKEN=s3cret-value-123\n")
    first, second = TaskFactory(project=project), TaskFactory(project=project)
    # When both runs are created in one batch
    with transaction.atomic():
        runs = runs_create_many(
            specs=[
                {
                    "project": project,
                    "prompt": "use s3cret-value-123",
                    "task": first,
                    "agent_backend": "scripted",
                    "autonomy_mode": "semi_auto",
                },
                {
                    "project": project,
                    "prompt": "",
                    "task": second,
                    "agent_backend": "scripted",
                    "priority": 5,
                },
            ],
            enqueue=True,
        )
    # Then both exist, queued, with the defaults, the redacted prompt and the given mode
    stored = {r.pk: r for r in ExecutionRun.objects.filter(pk__in=[r.pk for r in runs])}
    assert len(stored) == 2
    assert stored[runs[0].pk].prompt == "use [REDACTED:env_value]"
    assert stored[runs[0].pk].autonomy_mode == "semi_auto"
    assert stored[runs[1].pk].prompt == second.title and stored[runs[1].pk].priority == 5
    assert stored[runs[1].pk].autonomy_mode == project.autonomy_mode
    assert all(r.status == "queued" and r.model == "scripted" and r.queued_at for r in stored.values())
    # And one executionrun.created event per run; each run was enqueued on commit
    events = Event.objects.filter(kind="executionrun.created", subject_id__in=list(stored))
    assert sorted(e.subject_id for e in events) == sorted(stored)
    queued = [(q.func(), q.args()) for q in OrmQ.objects.all()]
    assert all(("runs.tasks.execute_run", (pk,)) in queued for pk in stored)


def test_a_bad_spec_or_a_full_queue_writes_nothing(project, settings):
    # Given a queue with room for one run
    settings.AUTOPILOT_QUEUE_MAX = 1
    tasks = [TaskFactory(project=project) for _ in range(2)]
    # When a batch of two is asked for, or a batch with a bad priority
    with pytest.raises(CapacityExceeded, match="room for 1 more runs"):
        runs_create_many(specs=[{"project": project, "prompt": "x", "task": t} for t in tasks])
    with pytest.raises(ApplicationError, match="priority must be 0–5"):
        runs_create_many(specs=[{"project": project, "prompt": "x", "priority": 9}])
    # Then nothing was written
    assert not ExecutionRun.objects.exists()
    assert not Event.objects.filter(kind="executionrun.created").exists()


def test_the_db_guard_refuses_a_second_open_code_run_and_leaves_the_transaction_usable(project):
    # Given a task that already has a queued code run
    task = TaskFactory(project=project)
    runs_create_many(specs=[{"project": project, "prompt": "x", "task": task}])
    other = TaskFactory(project=project)
    with transaction.atomic():
        # When a batch includes that task again
        with pytest.raises(IntegrityError):
            runs_create_many(
                specs=[
                    {"project": project, "prompt": "x", "task": other},
                    {"project": project, "prompt": "x", "task": task},
                ]
            )
        # Then the whole batch is refused, and the caller's transaction still works
        runs_create_many(specs=[{"project": project, "prompt": "x", "task": other}])
    assert ExecutionRun.objects.filter(task=task).count() == 1
    assert ExecutionRun.objects.filter(task=other).count() == 1
