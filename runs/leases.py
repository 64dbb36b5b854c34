"""Run leases: who holds a claimed run and until when (the worker renews, the reaper expires).

A lease owner is `host:pid:token`; the lease expires AUTOPILOT_LEASE_SECONDS after the last renewal.
"""

from __future__ import annotations

import os
import socket
import uuid

from django.conf import settings


def lease_seconds() -> int:
    return int(settings.AUTOPILOT_LEASE_SECONDS)


def new_lease_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def parse_lease_owner(owner: str) -> tuple[str, int | None]:
    """(host, pid) of a lease owner; ("", None) when it is not one."""
    parts = (owner or "").split(":")
    if len(parts) >= 3 and parts[-2].isdigit():
        return ":".join(parts[:-2]), int(parts[-2])
    return "", None


def is_local(owner: str) -> bool:
    """The lease is held by a process on this machine."""
    host, _ = parse_lease_owner(owner)
    return host == socket.gethostname()
