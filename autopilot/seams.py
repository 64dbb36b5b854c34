"""Seams: explicit registries through which a lower layer announces what an upper layer reacts to.

The layers (see README, Architecture): core (`autopilot`) ← blueprints ← runs ← manager ← doors. A
lower layer never imports an upper one; where it must tell an upper layer that something happened, it
sends on a `Seam` defined in the lower layer, and the upper layer connects its listener in its
AppConfig.ready(). Listeners are plain functions, connected once (connecting twice is a no-op), called
in the order they were connected; a listener that raises is logged and never undoes the sender's work.

Seams of the core:
- `project_changed(project_id, reason)`: something about a project changed that can unblock work
  (autonomy settings, tasks, dependencies). The manager answers with a tick request.
- `model_matrix_backends()` → iterable of known agent backend names, used to validate a project's
  model matrix (filled by runs, which owns the backends). Empty until runs is ready.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction

logger = logging.getLogger(__name__)


class Seam:
    """A named list of listeners; `send` calls each with the same arguments."""

    def __init__(self, name: str, payload: str):
        self.name = name
        self.payload = payload  # documents the arguments every listener receives
        self._listeners: list[Callable] = []

    def connect(self, fn: Callable) -> Callable:
        if fn not in self._listeners:
            self._listeners.append(fn)
        return fn

    def disconnect(self, fn: Callable) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    @property
    def listeners(self) -> tuple[Callable, ...]:
        return tuple(self._listeners)

    def send(self, *args) -> None:
        """Call every listener now; a failing listener is logged, the others still run."""
        for fn in list(self._listeners):
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - a reaction never undoes what the sender committed
                logger.exception("%s listener %s%r failed", self.name, getattr(fn, "__qualname__", fn), args)

    def send_on_commit(self, *args) -> None:
        """Call every listener after the current transaction commits (at once outside one)."""
        transaction.on_commit(lambda: self.send(*args))


project_changed = Seam("project changed", "(project_id: int, reason: str)")


# The agent backends a project's model matrix may name; runs registers its list provider.
_backend_names: list[Callable[[], list[str]]] = []


def provide_backend_names(fn: Callable[[], list[str]]) -> None:
    if fn not in _backend_names:
        _backend_names.append(fn)


def backend_names() -> list[str]:
    return [name for fn in _backend_names for name in fn()]
