"""The manager: autonomy, the tick, the queue, proposals, explanations and learning metrics.

The functions below are thin lazy entry points so that importing this package never touches the
models before Django is set up (autopilot.services imports `request_tick` from here).
"""

from __future__ import annotations


def request_tick(project_id: int, *, reason: str = "") -> None:
    """Ask for a tick of one project after the current transaction commits (de-duplicated)."""
    from autopilot.manager.tick import request_tick as _request_tick

    _request_tick(project_id, reason=reason)


def tick_project(project, *, reason: str, actor=None, **kwargs):
    from autopilot.manager.tick import tick_project as _tick_project

    return _tick_project(project, reason=reason, actor=actor, **kwargs)


def tick_all(*, reason: str, **kwargs):
    from autopilot.manager.tick import tick_all as _tick_all

    return _tick_all(reason=reason, **kwargs)
