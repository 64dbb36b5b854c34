"""Who is calling the MCP server: an API token (a user) or a run token (an agent Autopilot started).

- A user's API token (the DRF token of `autopilot user token`, `POST /api/token/`): the caller acts as
  that user, with exactly the API's role checks (autopilot.permissions).
- A run token (`aprun.` + a value signed with django.core.signing): minted for one run when its agent
  starts; it carries the run, its project and task and an expiry, and is accepted only while the run
  is active. Its holder acts on that one project as an operator, may change only the run's own task,
  and may not start, stop or message runs.

Every failure is an AuthError with a message that says what to do; nothing here reveals whether a
token exists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import signing
from rest_framework.authtoken.models import Token

from autopilot.errors import ApplicationError
from runs.models import ExecutionRun

RUN_TOKEN_PREFIX = "aprun."
RUN_TOKEN_SALT = "autopilot.mcp.run-token"
TOKEN_ENV = "AUTOPILOT_TOKEN"


class AuthError(ApplicationError):
    status_code = 401


@dataclass(frozen=True)
class Principal:
    """The caller. `run_id` is set for a run token: the server is then scoped to that run."""

    user: Any = None
    run_id: int | None = None
    project_id: int | None = None
    task_id: int | None = None

    @property
    def scoped(self) -> bool:
        return self.run_id is not None


def run_token_ttl() -> int:
    return int(getattr(settings, "AUTOPILOT_MCP_RUN_TOKEN_TTL", 0) or 0) or 24 * 3600


def mint_run_token(run: ExecutionRun, *, ttl: int | None = None) -> str:
    """A short-lived token for the agent of `run` (expires after the run's wall-time limit plus a margin)."""
    seconds = ttl if ttl is not None else min(run_token_ttl(), int(run.max_wall_seconds or 3600) + 600)
    payload = {
        "run": run.pk,
        "project": run.project_id,
        "task": run.task_id,
        "exp": int(time.time()) + seconds,
    }
    return RUN_TOKEN_PREFIX + signing.dumps(payload, salt=RUN_TOKEN_SALT, compress=True)


def _run_principal(token: str) -> Principal:
    try:
        payload = signing.loads(token[len(RUN_TOKEN_PREFIX) :], salt=RUN_TOKEN_SALT)
    except signing.BadSignature:
        raise AuthError("Invalid run token.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("run"), int):
        raise AuthError("Invalid run token.")
    if int(payload.get("exp") or 0) < time.time():
        raise AuthError("This run token has expired.")
    run = (
        ExecutionRun.objects.filter(pk=payload["run"])
        .select_related("created_by")
        .only("pk", "status", "project_id", "task_id", "created_by")
        .first()
    )
    if run is None or run.project_id != payload.get("project"):
        raise AuthError("Invalid run token.")
    if run.status not in ExecutionRun.ACTIVE:
        raise AuthError(f"Run #{run.pk} is {run.status}; its token is accepted only while the run is active.")
    user = run.created_by if run.created_by_id and run.created_by.is_active else None
    return Principal(user=user, run_id=run.pk, project_id=run.project_id, task_id=run.task_id)


def principal_from_token(token: str | None) -> Principal:
    """The caller a token stands for, or AuthError."""
    token = (token or "").strip()
    if not token:
        raise AuthError(
            f"No API token: set {TOKEN_ENV} (stdio) or send 'Authorization: Bearer <token>' (HTTP); "
            "get one with `autopilot user token`."
        )
    if token.startswith(RUN_TOKEN_PREFIX):
        return _run_principal(token)
    found = Token.objects.select_related("user").filter(key=token[:40]).first() if len(token) == 40 else None
    if found is None or not found.user.is_active:
        raise AuthError("Invalid API token.")
    return Principal(user=found.user)


def token_from_authorization(value: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` (or DRF-style `Token <token>`) header."""
    scheme, _, token = (value or "").strip().partition(" ")
    if scheme.lower() not in ("bearer", "token"):
        return ""
    return token.strip()
