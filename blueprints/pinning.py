"""Pinned project context: plan sections every agent of the project receives (runs.bundle).

`PlanNode.pinned`: True — always included; False — never (even if its name says otherwise); None (the
default) — decided by the heading's name: a heading (not a checklist item) at depth 1 or 2 whose title,
after any numbering ("2.", "2.1", "IV."), is one of DEFAULT_PINNED_TITLES (case-insensitive, an optional
trailing colon). A "Glossary" deeper down belongs to its own feature, not to the whole project.

Who pins: the owner. What is pinned goes into every agent's prompt for the whole project — it shapes
every run's context and its cost, like the model matrix and the context budget (owner settings) — so
operators and viewers see the pins and cannot change them. Every door (plan page, API, CLI) goes
through `plan_node_pin`.
"""

from __future__ import annotations

import functools
import re

from django.db import transaction

from autopilot.errors import ApplicationError
from autopilot.events import record_event
from autopilot.models import Role
from autopilot.permissions import require_role
from blueprints.layout import CHECKLIST, Layout
from blueprints.models import PlanNode

DEFAULT_PINNED_TITLES = (
    "conventions",
    "coding conventions",
    "code conventions",
    "naming conventions",
    "style guide",
    "code style",
    "architecture",
    "system architecture",
    "glossary",
    "terminology",
    "definitions",
    "constraints",
    "technical constraints",
    "principles",
    "design principles",
    "tech stack",
    "technology stack",
)
DEFAULT_PINNED_MAX_DEPTH = 2
PINNED_TITLE_RE = re.compile(
    r"^(?:[\d.]+\s*|[ivx]+\.\s*)?(?:" + "|".join(re.escape(t) for t in DEFAULT_PINNED_TITLES) + r")\s*:?$",
    re.I,
)
# What the doors accept for a pin (CLI `plan pin|unpin`, the plan page's buttons, API `pinned`).
PIN_VALUES = {"on": True, "true": True, "off": False, "false": False, "default": None, "auto": None}


@functools.lru_cache(maxsize=1 << 16)
def pinned_by_name(title: str, depth: int, checklist: bool = False) -> bool:
    return depth <= DEFAULT_PINNED_MAX_DEPTH and not checklist and bool(PINNED_TITLE_RE.match(title.strip()))


def explicit_pins(project_id: int) -> dict[int, bool]:
    """Node id → pinned, for the nodes of the current tree whose pin was set by hand."""
    return dict(
        PlanNode.objects.filter(
            project_id=project_id, archived_at__isnull=True, pinned__isnull=False
        ).values_list("id", "pinned")
    )


def pinned_indexes(project_id: int, layout: Layout, archived: frozenset[int] = frozenset()) -> list[int]:
    """Layout indexes of the project's pinned sections, in document order."""
    explicit = explicit_pins(project_id)
    found = []
    for i, node_id in enumerate(layout.ids):
        choice = explicit.get(node_id)
        if choice is None:
            choice = pinned_by_name(layout.titles[i], layout.depths[i], bool(layout.flags[i] & CHECKLIST))
        if choice and node_id not in archived:
            found.append(i)
    return found


def parse_pin(value) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    key = str(value).strip().lower()
    if key not in PIN_VALUES:
        raise ApplicationError(f"A pin is on, off or default, got '{value}'.")
    return PIN_VALUES[key]


def plan_node_pin(*, node: PlanNode, pinned, actor=None) -> PlanNode:
    """Pin a plan node into every agent's context (True), keep it out (False), or go back to the default
    by its heading's name (None). Needs the owner role (`actor=None`: the server itself)."""
    pinned = parse_pin(pinned)
    if actor is not None:
        require_role(actor, node.project, Role.OWNER)
    if node.archived_at is not None:
        raise ApplicationError(f"'{node.title}' is archived: it is in no agent's context.")
    with transaction.atomic():
        locked = PlanNode.objects.select_for_update().get(pk=node.pk)
        if locked.pinned != pinned:
            before = locked.pinned
            locked.pinned = pinned
            locked.save(update_fields=["pinned", "updated_at"])
            record_event(
                kind="plannode.updated",
                subject=locked,
                project=locked.project_id,
                actor=actor,
                data={"changes": {"pinned": {"from": before, "to": pinned}}},
            )
    node.pinned = pinned
    return node
