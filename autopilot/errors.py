"""Domain errors. Every door (API, CLI, views, MCP) turns these into a clear message."""

from __future__ import annotations


class ApplicationError(Exception):
    """A request the domain refuses. `message` is meant for the user; `extra` for machines."""

    status_code = 400

    def __init__(self, message: str, *, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class NotFound(ApplicationError):
    status_code = 404


class PermissionDenied(ApplicationError):
    status_code = 403


class Conflict(ApplicationError):
    """The request is valid but collides with the current state (e.g. a disallowed transition)."""

    status_code = 409


class CapacityExceeded(ApplicationError):
    """A queue or capacity limit refused the request: retry later."""

    status_code = 429


class InvalidTransition(Conflict):
    def __init__(self, obj, current: str, target: str, allowed):
        label = obj._meta.verbose_name
        allowed_text = ", ".join(sorted(allowed)) or "none (terminal state)"
        super().__init__(
            f"{label} #{obj.pk} cannot go from '{current}' to '{target}'; "
            f"allowed from '{current}': {allowed_text}.",
            extra={"current": current, "target": target, "allowed": sorted(allowed)},
        )
