"""Tick requests: event-driven ticks of one project, enqueued after commit and de-duplicated.

Who asks: the manager's listeners on the lower layers' seams (a run finished, tasks or a project's
autonomy changed; see autopilot.manager.listeners), proposals, plan refinement.
"""

from __future__ import annotations

import logging
import threading

from django.db import transaction
from django_q.tasks import async_task

from autopilot import queues
from autopilot.models import Project

logger = logging.getLogger(__name__)

# Projects whose ticks are driven inline by `drive_full_auto` in this process: no enqueued ticks.
_inline_projects: set[int] = set()
_inline_lock = threading.Lock()


def request_tick(project_id: int, *, reason: str = "") -> None:
    """Enqueue one tick of a project after commit; at most one is pending per project.

    De-duplication: a conditional UPDATE sets Project.tick_pending from false to true; only the
    request that flips it enqueues. The tick clears the flag when it starts, so a change that lands
    while a tick runs gets a tick of its own.
    """
    transaction.on_commit(lambda: _enqueue_tick(project_id, reason))


def _enqueue_tick(project_id: int, reason: str) -> None:
    if project_id in _inline_projects:
        return
    if not Project.objects.filter(pk=project_id, tick_pending=False).update(tick_pending=True):
        return
    try:
        async_task(
            "autopilot.tasks.tick_project_task",
            project_id,
            reason,
            task_name=f"tick-project-{project_id}",
            cluster=queues.CONTROL,
        )
    except Exception:  # noqa: BLE001 - the schedule will tick anyway; don't leave the flag stuck
        Project.objects.filter(pk=project_id).update(tick_pending=False)
        logger.exception("could not enqueue a tick for project %s", project_id)


def is_inline(project_id: int) -> bool:
    """This process drives the project's ticks itself (its runs are executed inline too)."""
    return project_id in _inline_projects


class inline_ticks:
    """Context manager: this process drives the ticks of `project_id` itself (no enqueued ticks)."""

    def __init__(self, project_id: int):
        self.project_id = project_id

    def __enter__(self):
        with _inline_lock:
            _inline_projects.add(self.project_id)
        return self

    def __exit__(self, *exc):
        with _inline_lock:
            _inline_projects.discard(self.project_id)
        return False
