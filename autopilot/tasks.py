"""django-q2 entry points of the core app: fetch by id, call a service. Nothing else lives here."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def ping(token: str) -> str:
    return token


def scheduled_tick() -> dict:
    """Every minute: one tick over every project (reconcile leases, start ready work)."""
    try:
        from autopilot.manager import tick_all
    except ImportError:  # the manager arrives with its own issue
        return {"skipped": "manager not installed"}
    return tick_all(reason="schedule")
