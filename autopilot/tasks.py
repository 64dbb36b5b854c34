"""django-q2 entry points of the core app: fetch by id, call a service, inside the one job wrapper
(`autopilot.jobs`). Nothing else lives here."""

from __future__ import annotations

import logging

from autopilot.jobs import call_job
from autopilot.manager.tick import tick_all, tick_project
from autopilot.models import Project

logger = logging.getLogger(__name__)


def ping(token: str) -> str:
    return token


def scheduled_tick() -> dict:
    """Every minute: one tick over every project (reconcile leases, start ready work)."""
    return call_job("scheduled tick", lambda: tick_all(reason="schedule").as_dict(projects=False))


def tick_project_task(project_id: int, reason: str = "") -> dict:
    """An event-driven tick of one project (enqueued on commit, de-duplicated by Project.tick_pending)."""

    def tick() -> dict:
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            return {"skipped": f"project {project_id} is gone"}
        return tick_project(project, reason=reason or "event").as_dict(projects=False)

    return call_job(f"tick of project {project_id}", tick)
