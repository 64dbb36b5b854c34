"""Size caps of free-text inputs, shared by the API serializers and the services (so the CLI, the MCP
server and the web pages get the same error as the API).

Characters, not bytes. Chosen so that real use never meets them and a 10 MB paste does:
a run's prompt and a task's body can hold a long spec section (200,000 characters is ~30,000 words);
messages, descriptions, notes and summaries are a few screens at most.
"""

from __future__ import annotations

from typing import Any

from autopilot.errors import ApplicationError

BIGINT_MAX = 2**63 - 1  # the largest id / integer the database columns hold

MAX_TITLE_CHARS = 500
MAX_PROMPT_CHARS = 200_000  # run prompts (create, resume)
MAX_TASK_BODY_CHARS = 200_000
MAX_MESSAGE_CHARS = 20_000  # messages to a run, rejection messages
MAX_DESCRIPTION_CHARS = 20_000  # project descriptions, plan node summaries
MAX_NOTE_CHARS = 2_000  # approval notes, stop and transition reasons
MAX_SEARCH_QUERY_CHARS = 1_000  # spec search queries
MAX_SETTINGS_CHARS = 1_000_000  # a run's settings as JSON (the scripted backend's script lives there)
MAX_RUN_TURNS = 10_000
MAX_RUN_WALL_SECONDS = 7 * 24 * 3600  # a week


def check_length(value: Any, name: str, limit: int) -> None:
    """ApplicationError naming the field and the limit when `value` (a string) is longer than `limit`."""
    if isinstance(value, str) and len(value) > limit:
        raise ApplicationError(
            f"{name} is at most {limit:,} characters (got {len(value):,}).",
            extra={"field": name, "limit": limit},
        )
