"""Proposals (suggest mode): accept → a run starts; dismiss → remembered until the task changes."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from autopilot.errors import Conflict
from autopilot.manager import ranking
from autopilot.manager.models import Proposal
from autopilot.manager.queue import ensure_queue_room
from autopilot.manager.requests import request_tick
from autopilot.manager.tick import _global_lock, start_run_for_task
from autopilot.models import AutonomyMode, Project
from autopilot.state import transition
from blueprints.models import Task


def proposals_for(project: Project, *, status: str | None = None) -> QuerySet[Proposal]:
    qs = Proposal.objects.filter(project=project).select_related("task", "run", "decided_by")
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def proposal_accept(*, proposal: Proposal, actor=None):
    """Start the proposed run now (a human's decision: the queue's size limit still applies)."""
    with transaction.atomic():
        _global_lock()
        project = Project.objects.select_for_update(no_key=True).get(pk=proposal.project_id)
        locked = Proposal.objects.select_for_update().get(pk=proposal.pk)
        if locked.status != Proposal.Status.PENDING:
            raise Conflict(f"Proposal #{locked.pk} is {locked.status}, not pending.")
        task = Task.objects.select_related("plan_node").get(pk=locked.task_id)
        if not ranking.runnable_tasks([project.pk]).filter(pk=task.pk).exists():
            raise Conflict(
                f"Task #{task.pk} can't start now (status {task.status}, or unfinished dependencies, "
                "or it already has a run); dismiss the proposal instead."
            )
        ensure_queue_room(1)
        mode = project.autonomy_mode if project.autonomy_mode != AutonomyMode.OFF else AutonomyMode.SUGGEST
        try:
            run = start_run_for_task(
                project=project, task=task, mode=mode, actor=actor, expire_proposals=False
            )
        except IntegrityError as exc:
            raise Conflict(f"Task #{task.pk} already has a queued or active run.") from exc
        transition(
            locked,
            Proposal.Status.ACCEPTED,
            actor=actor,
            reason="accepted",
            fields={
                "run": run,
                "decided_by": actor if getattr(actor, "is_authenticated", False) else None,
                "decided_at": timezone.now(),
            },
            event_data={"task": task.pk, "run": run.pk},
        )
    return run


def proposal_dismiss(*, proposal: Proposal, actor=None, note: str = "") -> Proposal:
    """Dismiss: the manager won't propose this task again until the task changes."""
    with transaction.atomic():
        locked = Proposal.objects.select_for_update().get(pk=proposal.pk)
        if locked.status != Proposal.Status.PENDING:
            raise Conflict(f"Proposal #{locked.pk} is {locked.status}, not pending.")
        transition(
            locked,
            Proposal.Status.DISMISSED,
            actor=actor,
            reason=note or "dismissed",
            fields={
                "decided_by": actor if getattr(actor, "is_authenticated", False) else None,
                "decided_at": timezone.now(),
            },
            event_data={"task": locked.task_id},
        )
        request_tick(locked.project_id, reason="proposal dismissed")
    return locked
