"""The manager's reactions to what the lower layers announce; connected in ManagerConfig.ready().

- runs.lifecycle.run_started(run_id): a code run started → its task moves to in_progress.
- runs.lifecycle.run_finished(run_id): the task outcome and learning signals, then a tick.
- autopilot.seams.project_changed(project_id, reason): tasks, dependencies or autonomy changed → tick.

Listeners never raise into the sender (the seam logs a failure): the sender's work is committed
already, and the next tick's reconcile repairs what was missed.
"""

from __future__ import annotations

import logging

from autopilot import seams
from autopilot.manager.outcomes import apply_run_finished, apply_run_started
from autopilot.manager.requests import request_tick
from runs import lifecycle
from runs.models import ExecutionRun

logger = logging.getLogger(__name__)


def on_run_started(run_id: int) -> None:
    apply_run_started(run_id)


def on_run_finished(run_id: int) -> None:
    try:
        apply_run_finished(run_id)
    finally:  # the tick is asked for even when applying the outcome failed (its reconcile retries)
        project_id = ExecutionRun.objects.filter(pk=run_id).values_list("project_id", flat=True).first()
        if project_id is not None:
            request_tick(project_id, reason=f"run #{run_id} finished")


def on_project_changed(project_id: int, reason: str = "") -> None:
    request_tick(project_id, reason=reason or "project changed")


def connect() -> None:
    """Connect every listener (idempotent)."""
    lifecycle.run_started.connect(on_run_started)
    lifecycle.run_finished.connect(on_run_finished)
    seams.project_changed.connect(on_project_changed)
