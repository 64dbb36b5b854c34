"""The current tree of a project: its active blueprint version's text and layout, and the nodes
archived by hand since. Read by ingestion (to match a new version against it) and by task generation
(blueprints.graph)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from blueprints.layout import Layout
from blueprints.models import Blueprint, PlanLayout, PlanNode, StoredText
from blueprints.parsing import PreviousParse
from blueprints.texts import read_text


@dataclass
class CurrentTree:
    """The active version of a project and its tree: text, layout, and which of its nodes were archived
    by hand since (they are not part of the current tree, and are not matched)."""

    blueprint_id: int
    format: str
    stored: StoredText
    layout: Layout
    statements: dict | None
    policy: str
    archived: frozenset[int]

    @property
    def text(self) -> str:
        return self.stored.text

    def previous_parse(self) -> PreviousParse | None:
        if self.format != Blueprint.Format.MARKDOWN:
            return None
        return PreviousParse(self.text, self.layout)


def current_tree(project_id: int) -> CurrentTree | None:
    """The active version's text and layout, read in one snapshot (three rows and an indexed lookup)."""
    with transaction.atomic():
        active = (
            Blueprint.objects.filter(project_id=project_id, status=Blueprint.Status.ACTIVE)
            .values_list("pk", "format")
            .first()
        )
        if active is None:
            return None
        row = (
            PlanLayout.objects.filter(blueprint_id=active[0])
            .values_list("data", "statements", "policy")
            .first()
        )
        if row is None:
            return None
        stored = read_text(active[0])
        archived = archived_by_hand(project_id)
    return CurrentTree(active[0], active[1], stored, Layout.decode(row[0]), row[1], row[2], archived)


def archived_by_hand(project_id: int) -> frozenset[int]:
    """Nodes archived by hand (not by an ingestion): left out of the current tree."""
    return frozenset(
        PlanNode.objects.filter(project_id=project_id, archived_at__isnull=False)
        .exclude(change=PlanNode.Change.REMOVED)
        .values_list("id", flat=True)
    )
