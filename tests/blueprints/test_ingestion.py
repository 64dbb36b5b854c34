"""Ingesting a blueprint into a persisted plan tree."""

from __future__ import annotations

import pytest

from autopilot.models import Event
from blueprints.ingestion import ingest_blueprint
from blueprints.models import Blueprint, PlanNode, Task

SPEC = """# Phase 1: Foundation

Set up the basics.

## Auth

### Login

Users log in with a password.

- [ ] login form
- [x] password hashing

### Logout

Users log out.

## Storage

Keep data in SQLite.

# Phase 2: Features

## Search

Full-text search.
"""


def _tree(blueprint):
    return list(PlanNode.objects.filter(blueprint=blueprint, archived_at__isnull=True).order_by("order"))


def test_ingest_creates_an_active_version_with_its_tree(project, operator):
    # given a project without a blueprint
    # when a spec is ingested
    progress = []
    result = ingest_blueprint(
        project=project,
        text=SPEC,
        title="Plan",
        actor=operator,
        generate_tasks=False,
        progress=lambda fraction, stage: progress.append((fraction, stage)),
    )
    # then version 1 is active, with one node per heading and checklist item, in document order
    bp = result.blueprint
    assert (bp.version, bp.status, bp.title, bp.parent_id) == (1, Blueprint.Status.ACTIVE, "Plan", None)
    nodes = _tree(bp)
    assert [n.anchor for n in nodes] == [
        "phase-1-foundation",
        "phase-1-foundation/auth",
        "phase-1-foundation/auth/login",
        "phase-1-foundation/auth/login/login-form",
        "phase-1-foundation/auth/login/password-hashing",
        "phase-1-foundation/auth/logout",
        "phase-1-foundation/storage",
        "phase-2-features",
        "phase-2-features/search",
    ]
    by_anchor = {n.anchor: n for n in nodes}
    login = by_anchor["phase-1-foundation/auth/login"]
    assert (login.kind, login.level, login.depth, login.parent.anchor) == (
        "feature",
        3,
        3,
        "phase-1-foundation/auth",
    )
    assert SPEC[login.start : login.end].startswith("### Login\n")
    assert SPEC[login.start : login.end].endswith("- [x] password hashing\n\n")
    item = by_anchor["phase-1-foundation/auth/login/password-hashing"]
    assert (item.origin, item.kind, item.checked) == ("checklist", "task_spec", True)
    assert all(n.change == PlanNode.Change.ADDED for n in nodes)
    assert result.counts == {
        "nodes": 9,
        "headings": 7,
        "checklist_items": 2,
        "added": 9,
        "changed": 0,
        "removed": 0,
        "moved": 0,
        "unchanged": 0,
        "tasks": 0,
        "dependencies": 0,
    }
    assert len(result.diff["added"]) == 9 and result.diff["from_version"] is None
    assert bp.counts["nodes"] == 9 and bp.diff == result.diff
    assert progress[0] == (0.0, "validating") and progress[-1] == (1.0, "done")
    assert [f for f, _ in progress] == sorted(f for f, _ in progress)
    assert Event.objects.filter(kind="blueprint.ingested", subject_id=bp.pk, actor=operator).exists()


def test_ingest_generates_tasks_through_the_graph(project):
    # when a spec is ingested with task generation (the default)
    result = ingest_blueprint(project=project, text=SPEC)
    # then the graph's tasks exist, linked to plan nodes of this version
    assert result.counts["tasks"] > 0
    assert result.counts["tasks"] == Task.objects.filter(project=project).count()
    assert (
        not Task.objects.filter(project=project, plan_node__isnull=False)
        .exclude(plan_node__blueprint=result.blueprint)
        .exists()
    )


def test_real_500k_word_spec_is_ingested(project, rust_rfcs_text):
    # given the 500k-word corpus
    # when ingested (without tasks, to keep the test focused)
    result = ingest_blueprint(project=project, text=rust_rfcs_text, generate_tasks=False)
    # then all 4,062 headings are nodes, each section slice starts at its heading and nests in its parent's
    assert result.counts["headings"] == 4062
    rows = PlanNode.objects.filter(blueprint=result.blueprint).values_list(
        "start", "end", "title", "parent_id", "id"
    )
    assert len(rows) == 4062
    ids = {row[4]: row for row in rows}
    for start, end, title, parent_id, _ in rows:
        key = "".join(c for c in title if c.isalnum())[:8]
        # the section starts on its heading: the title (markup aside) is on its first lines
        assert key in "".join(c for c in rust_rfcs_text[start : start + 400] if c.isalnum()), (title, start)
        if parent_id:
            parent = ids[parent_id]
            assert parent[0] <= start <= end <= parent[1]


def test_plain_text_spec_is_ingested_as_text(project):
    result = ingest_blueprint(
        project=project, text="OVERVIEW\nA tool.\n\nDESIGN\nIt works.\n", generate_tasks=False
    )
    assert result.blueprint.format == Blueprint.Format.TEXT
    assert [n.title for n in _tree(result.blueprint)] == ["OVERVIEW", "DESIGN"]


def test_versions_chain_and_only_one_is_active(project):
    # given two ingestions
    first = ingest_blueprint(project=project, text=SPEC, generate_tasks=False).blueprint
    second = ingest_blueprint(project=project, text=SPEC + "\n# Phase 3\n", generate_tasks=False).blueprint
    first.refresh_from_db()
    # then the second is version 2, child of the first, active; the first is superseded
    assert (second.version, second.parent_id, second.status) == (2, first.pk, Blueprint.Status.ACTIVE)
    assert first.status == Blueprint.Status.SUPERSEDED
    assert second.title == first.title == "Phase 1: Foundation"
    assert Blueprint.objects.filter(project=project, status=Blueprint.Status.ACTIVE).count() == 1


@pytest.mark.django_db(transaction=True)
def test_bytes_input_and_events_are_pushed_after_commit(project):
    # given UTF-8 bytes with a BOM
    result = ingest_blueprint(
        project=project, text="\ufeff# Überblick\n\n- [ ] ein Punkt\n".encode(), generate_tasks=False
    )
    # then the text is stored decoded, without the BOM, and the nodes' offsets are characters
    bp = Blueprint.objects.get(pk=result.blueprint.pk)
    assert bp.source_text.startswith("# Überblick")
    node = PlanNode.objects.get(blueprint=bp, origin="checklist")
    assert bp.source_text[node.start : node.end] == "- [ ] ein Punkt\n"
