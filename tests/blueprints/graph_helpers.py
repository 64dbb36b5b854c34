"""Build a real plan tree for the task-graph tests: a real ingestion without task generation, so each
test calls generate_tasks itself (and can count what it does)."""

from __future__ import annotations

from blueprints.ingestion import ingest_blueprint
from blueprints.models import Blueprint, PlanNode


def build_plan(project, text: str, *, title: str = "Spec") -> Blueprint:
    return ingest_blueprint(project=project, text=text, title=title, generate_tasks=False).blueprint


def node(blueprint, title: str) -> PlanNode:
    return PlanNode.objects.get(blueprint=blueprint, title=title, archived_at__isnull=True)
