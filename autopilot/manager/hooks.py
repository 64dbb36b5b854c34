"""Hooks other apps call on commit when something happens that the manager reacts to.

Contract (callers: runs.services, blueprints.services):
- on_run_started(run_id): a run moved to running (task → in_progress).
- on_run_finished(run_id): a run reached a terminal status (task outcome, learning signals, tick).
- on_tasks_changed(project_id, reason): tasks or dependencies changed (tick).

Hooks never raise into the caller: the caller's work is committed already; a failure here is logged
and the next tick's reconcile repairs what was missed.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def on_run_started(run_id: int) -> None:
    from autopilot.manager.outcomes import apply_run_started

    try:
        apply_run_started(run_id)
    except Exception:  # noqa: BLE001
        logger.exception("manager: on_run_started(%s) failed", run_id)


def on_run_finished(run_id: int) -> None:
    from autopilot.manager.outcomes import apply_run_finished
    from autopilot.manager.tick import request_tick
    from runs.models import ExecutionRun

    try:
        apply_run_finished(run_id)
    except Exception:  # noqa: BLE001
        logger.exception("manager: on_run_finished(%s) failed", run_id)
    project_id = ExecutionRun.objects.filter(pk=run_id).values_list("project_id", flat=True).first()
    if project_id is not None:
        request_tick(project_id, reason=f"run #{run_id} finished")


def on_tasks_changed(project_id: int, reason: str = "") -> None:
    from autopilot.manager.tick import request_tick

    try:
        request_tick(project_id, reason=reason or "tasks changed")
    except Exception:  # noqa: BLE001
        logger.exception("manager: on_tasks_changed(%s) failed", project_id)
