"""Hooks other apps call on commit when something happens that the manager reacts to.

Contract (callers: runs.services, blueprints.services):
- on_run_started(run_id): a run moved to running (task → in_progress).
- on_run_finished(run_id): a run reached a terminal status (task outcome, learning signals, tick).
- on_tasks_changed(project_id, reason): tasks or dependencies changed (tick).
"""

from __future__ import annotations


def on_run_started(run_id: int) -> None:
    return None


def on_run_finished(run_id: int) -> None:
    return None


def on_tasks_changed(project_id: int, reason: str = "") -> None:
    return None
