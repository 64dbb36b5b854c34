"""The global run queue: runs in `queued`, ordered by priority (5 first) then age, bounded in size.

A request beyond `AUTOPILOT_QUEUE_MAX` queued runs is refused with CapacityExceeded (HTTP 429),
never silently dropped. Positions are 1-based in that order.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet

from autopilot.errors import CapacityExceeded
from autopilot.events import record_event
from autopilot.models import Project
from runs import locks as run_locks
from runs.models import ExecutionRun, RunKind
from runs.services import run_stop

QUEUE_ORDER = ("-priority", "created_at", "id")


def queued_runs() -> QuerySet[ExecutionRun]:
    return ExecutionRun.objects.filter(status=ExecutionRun.Status.QUEUED).order_by(*QUEUE_ORDER)


def queue_size() -> int:
    return ExecutionRun.objects.filter(status=ExecutionRun.Status.QUEUED).count()


def ensure_queue_room(count: int = 1) -> None:
    """Refuse (429) when `count` more queued runs would exceed the queue's maximum size."""
    size = queue_size()
    limit = settings.AUTOPILOT_QUEUE_MAX
    if size + count > limit:
        raise CapacityExceeded(
            f"The run queue is full ({size} of {limit} queued runs); try again when queued runs have started "
            "or raise AUTOPILOT_QUEUE_MAX.",
            extra={"queue_size": size, "queue_max": limit},
        )


def queue_position(run: ExecutionRun) -> int | None:
    """1-based position of a queued run (None when it isn't queued)."""
    if run.status != ExecutionRun.Status.QUEUED:
        return None
    ahead = ExecutionRun.objects.filter(status=ExecutionRun.Status.QUEUED).filter(
        Q(priority__gt=run.priority)
        | Q(priority=run.priority, created_at__lt=run.created_at)
        | Q(priority=run.priority, created_at=run.created_at, pk__lt=run.pk)
    )
    return ahead.count() + 1


def queue_status(*, projects: QuerySet[Project] | None = None, limit: int = 500) -> dict:
    """The queue with positions. `projects` narrows the listed runs (positions stay global)."""
    rows = []
    visible = None if projects is None else set(projects.values_list("pk", flat=True))
    queued = (
        queued_runs()
        .select_related("project", "task")
        .only(
            "pk",
            "priority",
            "created_at",
            "role",
            "agent_backend",
            "model",
            "project__name",
            "task__title",
            "prompt",
            "autonomy_mode",
        )
    )
    for position, run in enumerate(queued.iterator(chunk_size=500), start=1):
        if visible is not None and run.project_id not in visible:
            continue
        if len(rows) >= limit:
            break
        rows.append(
            {
                "position": position,
                "run": run.pk,
                "project": run.project_id,
                "project_name": run.project.name,
                "task": run.task_id,
                "task_title": run.task.title if run.task_id else "",
                "priority": run.priority,
                "role": run.role,
                "agent_backend": run.agent_backend,
                "model": run.model,
                "autonomy_mode": run.autonomy_mode,
                "created_at": run.created_at,
                "prompt": run.prompt[:200],
            }
        )
    active = (
        ExecutionRun.objects.filter(status__in=ExecutionRun.ACTIVE).exclude(kind=RunKind.INTERACTIVE).count()
    )
    return {
        "size": queue_size(),
        "max": settings.AUTOPILOT_QUEUE_MAX,
        "active_runs": active,
        "max_concurrent_runs": settings.AUTOPILOT_MAX_CONCURRENT_RUNS,
        "runs": rows,
    }


def queue_clear(
    *, actor=None, projects: QuerySet[Project] | None = None, reason: str = "queue cleared"
) -> list[int]:
    """Cancel queued runs (of the given projects, or all). Their tasks are not restarted by themselves."""
    qs = queued_runs()
    if projects is not None:
        qs = qs.filter(project__in=projects)
    cancelled = []
    with transaction.atomic():
        for run in run_locks.lock_runs(qs):  # in primary-key order (the lock order, runs.locks)
            try:
                _cancel(run, actor=actor, reason=reason)
            except Exception:  # noqa: BLE001 - a run that left the queue meanwhile stays as it is
                continue
            cancelled.append(run.pk)
        if cancelled:
            record_event(
                kind="queue.cleared", actor=actor, data={"runs": cancelled[:200], "count": len(cancelled)}
            )
    return cancelled


def _cancel(run: ExecutionRun, *, actor, reason: str) -> None:
    run_stop(run=run, actor=actor, reason=reason)
