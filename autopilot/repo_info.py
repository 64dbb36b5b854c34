"""What the projects page may learn about a repository before it is registered: its current branch.

The location rules come first (AUTOPILOT_REPO_ROOTS, as `autopilot.services.check_repository` applies
them), so nobody probes the server's disk through the form; and the branch is read from `.git/HEAD`
as a file, never by running git in a directory a user named (its config could run commands).
"""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

from autopilot.permissions import may_register_anywhere

HEAD_REF = re.compile(r"ref: refs/heads/([^\s]{1,200})\s*\Z")


def current_branch(*, actor, repo_path: str) -> str | None:
    """The branch checked out in `repo_path`, or None (not allowed to look, not a repository, detached)."""
    raw = Path(repo_path or "").expanduser()
    if not raw.is_absolute():
        return None
    path = raw.resolve()
    if not may_register_anywhere(actor):
        roots = [Path(root).expanduser().resolve() for root in settings.AUTOPILOT_REPO_ROOTS]
        if not any(path == root or path.is_relative_to(root) for root in roots):
            return None
    head = path / ".git" / "HEAD"
    try:
        if not head.is_file() or head.stat().st_size > 1024:
            return None
        match = HEAD_REF.match(head.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    return match.group(1) if match else None
