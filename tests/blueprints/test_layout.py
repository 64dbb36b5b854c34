"""Versions as layouts: each version's tree in one row, rows written only for what changed, older
versions viewable with their own offsets, version texts stored as pieces, incremental task generation."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from autopilot.errors import ApplicationError
from blueprints.graph import generate_tasks
from blueprints.ingestion import ingest_blueprint, plan_node_update
from blueprints.layout import Layout
from blueprints.models import Blueprint, BlueprintText, PlanLayout, PlanNode, Task, TaskDependency
from blueprints.parsing import parse_blueprint
from blueprints.selectors import current_nodes, version_nodes

pytestmark = pytest.mark.django_db

V1 = """# Phase 1

## Auth

Password login.

## Storage

SQLite first.

- [ ] pick a driver
- [x] write the schema

## Billing

Invoices monthly.

# Phase 2

## Search

Full-text search.

## Export

CSV export.
"""


def _edges(project) -> set[tuple[str, str, str]]:
    return set(
        TaskDependency.objects.filter(task__project=project).values_list(
            "task__source_key", "depends_on__source_key", "source"
        )
    )


def _expected(text: str) -> list[tuple]:
    doc = parse_blueprint(text)
    return [
        (
            n.anchor,
            n.start,
            n.end,
            n.index,
            doc.nodes[n.parent].anchor if n.parent is not None else None,
            n.depth,
            n.level,
            n.title,
        )
        for n in doc.nodes
    ]


def _placed(nodes) -> list[tuple]:
    anchors = {n.pk: n.anchor for n in nodes}
    return [
        (n.anchor, n.start, n.end, n.order, anchors.get(n.parent_id), n.depth, n.level, n.title)
        for n in nodes
    ]


def test_every_version_keeps_its_own_tree_and_offsets(project):
    # given three versions: an edit above most nodes, a removal, an addition, a rename
    v2_text = (
        V1.replace("Password login.", "Password login.\n\nAnd passkeys, with a long explanation.").replace(
            "## Billing\n\nInvoices monthly.\n\n", ""
        )
        + "\n## Audit\n\nLog every action.\n"
    )
    v3_text = v2_text.replace("## Storage", "## Persistence").replace("Full-text search.", "Ranked search.")
    versions = [ingest_blueprint(project=project, text=t).blueprint for t in (V1, v2_text, v3_text)]
    # then each version lists its own nodes, with offsets into its own text, as a full parse of it would
    for blueprint, text in zip(versions, (V1, v2_text, v3_text), strict=True):
        nodes = version_nodes(blueprint, archived=True)
        assert _placed(nodes) == _expected(text)
        assert all(n.blueprint_id == blueprint.pk for n in nodes)
        for node in nodes:
            section = text[node.start : node.end]
            assert section.startswith(f"{'#' * node.level} {node.title}") or node.origin == "checklist"
    # and nodes kept across versions are the same rows: v1's Search is v3's Search
    v1_search = next(n for n in version_nodes(versions[0], archived=True) if n.anchor == "phase-2/search")
    v3_search = next(n for n in version_nodes(versions[2]) if n.anchor == "phase-2/search")
    assert v1_search.pk == v3_search.pk
    assert (v1_search.change, v3_search.change) == ("added", "changed")
    # the removed node is in v1's tree only (archived now, still listed for v1 on request)
    assert "phase-1/billing" in {n.anchor for n in version_nodes(versions[0], archived=True)}
    assert "phase-1/billing" not in {n.anchor for n in version_nodes(versions[0])}
    # the current tree is the active version's
    assert _placed(current_nodes(project)) == _expected(v3_text)


def test_the_api_lists_an_older_version_with_its_offsets(project, operator):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(operator)
    ingest_blueprint(project=project, text=V1, generate_tasks=False)
    ingest_blueprint(project=project, text="Intro added at the top.\n\n" + V1, generate_tasks=False)
    v1 = Blueprint.objects.get(project=project, version=1)
    for blueprint, text in (
        (v1, V1),
        (Blueprint.objects.get(project=project, version=2), "Intro added at the top.\n\n" + V1),
    ):
        nodes = client.get(f"/api/blueprints/{blueprint.pk}/nodes/").json()
        assert [(n["anchor"], n["start"], n["end"]) for n in nodes] == [
            (e[0], e[1], e[2]) for e in _expected(text)
        ]
        assert {n["blueprint"] for n in nodes} == {blueprint.pk}
    # and one node's own endpoint places it in the active version
    auth = PlanNode.objects.get(project=project, anchor="phase-1/auth")
    body = client.get(f"/api/plan_nodes/{auth.pk}/").json()
    active_text = "Intro added at the top.\n\n" + V1
    assert active_text[body["start"] : body["end"]].startswith("## Auth")


def test_unchanged_nodes_are_not_rewritten(project):
    # given a version
    ingest_blueprint(project=project, text=V1)
    before = {
        row[0]: row
        for row in PlanNode.objects.values_list("id", "blueprint_id", "start", "end", "updated_at")
    }
    # when a version edits one section and shifts every node after it
    edited = V1.replace("Password login.", "Password login, and a much longer paragraph about it.")
    with CaptureQueriesContext(connection) as queries:
        result = ingest_blueprint(project=project, text=edited)
    # then only the changed node's row was written; the others still point at version 1 and its offsets
    after = {
        row[0]: row
        for row in PlanNode.objects.values_list("id", "blueprint_id", "start", "end", "updated_at")
    }
    auth = PlanNode.objects.get(project=project, anchor="phase-1/auth").pk
    assert {pk for pk in after if after[pk] != before[pk]} == {auth}
    assert after[auth][1] == result.blueprint.pk
    node_updates = [
        q["sql"]
        for q in queries.captured_queries  # (executemany is logged as "N times: UPDATE …")
        if "UPDATE" in q["sql"] and "blueprints_plannode" in q["sql"].split("SET")[0]
    ]
    assert len(node_updates) == 1 and node_updates[0].startswith("1 times: UPDATE")
    # the layout says where every node is now, and the shifted ones are placed right
    placed = {n.anchor: n for n in current_nodes(project)}
    assert edited[placed["phase-2/search"].start : placed["phase-2/search"].end].startswith("## Search")
    assert placed["phase-1/auth"].change == "changed" and placed["phase-2/search"].change == "unchanged"


def test_a_version_is_stored_as_pieces_of_an_earlier_text(project):
    # given a long version stored whole
    body = "".join(f"## Section {i}\n\n{'Some words. ' * 40}\n\n" for i in range(40))
    v1 = ingest_blueprint(project=project, text="# Spec\n\n" + body, generate_tasks=False).blueprint
    assert BlueprintText.objects.get(blueprint=v1).pieces is None
    # when two versions each edit a section
    v2_text = ("# Spec\n\n" + body).replace("## Section 5\n", "## Section 5\n\nEdited.\n")
    v3_text = v2_text.replace("## Section 30\n", "## Section 30\n\nAlso edited.\n")
    v2 = ingest_blueprint(project=project, text=v2_text, generate_tasks=False).blueprint
    v3 = ingest_blueprint(project=project, text=v3_text, generate_tasks=False).blueprint
    # then they are stored as pieces of version 1, and read back exactly
    for blueprint, text in ((v2, v2_text), (v3, v3_text)):
        stored = BlueprintText.objects.get(blueprint=blueprint)
        assert stored.base_id == v1.pk and stored.pieces and stored.text == ""
        assert Blueprint.objects.get(pk=blueprint.pk).source_text == text
    # and a version that rewrites most of the text is stored whole
    v4 = ingest_blueprint(
        project=project, text="# Other\n\n" + "New text. " * 2000, generate_tasks=False
    ).blueprint
    assert BlueprintText.objects.get(blueprint=v4).pieces is None


DEPS = """# Plan

## Schema

Tables.

## API

Endpoints.

Depends on: Schema

## UI

Screens.

## Docs

Manual.
"""


def test_incremental_generation_recomputes_the_dependencies_of_changed_sections(project):
    # given a version with tasks and a text dependency (API after Schema) and a manual one
    ingest_blueprint(project=project, text=DEPS)
    ui, docs = (Task.objects.get(project=project, plan_node__anchor=f"plan/{a}") for a in ("ui", "docs"))
    TaskDependency.objects.create(task=docs, depends_on=ui, source="manual")
    schema, api = (PlanNode.objects.get(project=project, anchor=f"plan/{a}").pk for a in ("schema", "api"))
    assert (f"node:{api}", f"node:{schema}", "text") in _edges(project)
    # when a version changes only what API depends on, and adds a dependency to UI's text
    v2 = DEPS.replace("Depends on: Schema", "Depends on: UI").replace("Screens.", "Screens.\n\nAfter: Schema")
    result = ingest_blueprint(project=project, text=v2)
    # then only the changed sections were read again, and the edges are what they now state
    assert result.timings["tasks_incremental"] is True
    ui_node = PlanNode.objects.get(project=project, anchor="plan/ui").pk
    docs_node = PlanNode.objects.get(project=project, anchor="plan/docs").pk
    assert _edges(project) == {
        (f"node:{api}", f"node:{ui_node}", "text"),
        (f"node:{ui_node}", f"node:{schema}", "text"),
        (f"node:{docs_node}", f"node:{ui_node}", "manual"),
    }
    assert (result.counts["dependencies"], result.counts["tasks"]) == (2, 0)
    # and the layout records what each section states
    layout = PlanLayout.objects.get(blueprint=result.blueprint)
    assert layout.statements == {str(api): [["line", ["UI"]]], str(ui_node): [["line", ["Schema"]]]}
    # and a whole generation finds nothing to add or remove: the incremental result is the full one
    full = generate_tasks(blueprint=result.blueprint)
    assert (full.tasks_created, full.dependencies_created, full.dependencies_removed) == (0, 0, 0)
    # an edit that introduces a cycle is refused, atomically
    with pytest.raises(ApplicationError, match="cycle"):
        ingest_blueprint(project=project, text=v2.replace("Tables.", "Tables.\n\nDepends on: API"))
    assert Blueprint.objects.filter(project=project).count() == 2


def test_added_sections_get_tasks_and_their_dependencies(project):
    # given a version with tasks, where Docs names a section that does not exist yet
    v1 = DEPS.replace("Manual.", "Manual.\n\nDepends on: Billing")
    first = ingest_blueprint(project=project, text=v1)
    assert first.counts["dependencies"] == 1  # API after Schema
    tasks = Task.objects.filter(project=project).count()
    # when a version adds that section, itself depending on another
    billing_text = "\n## Billing\n\nInvoices.\n\nDepends on: API\n"
    result = ingest_blueprint(project=project, text=v1 + billing_text)
    # then it has a task, with its dependency, the existing statement now resolves to it, and nothing
    # else was created; only the new section's text was read
    billing, api, docs = (
        PlanNode.objects.get(project=project, anchor=f"plan/{a}") for a in ("billing", "api", "docs")
    )
    assert Task.objects.filter(project=project).count() == tasks + 1
    assert {
        (f"node:{billing.pk}", f"node:{api.pk}", "text"),
        (f"node:{docs.pk}", f"node:{billing.pk}", "text"),
    } <= _edges(project)
    assert (result.counts["tasks"], result.counts["dependencies"]) == (1, 2)
    assert result.timings["tasks_incremental"] is True
    # when the section is removed again, the edges to and from it go (the statement stays, unresolved)
    result = ingest_blueprint(project=project, text=v1)
    assert result.counts["removed"] == 1 and result.timings["tasks_incremental"] is True
    assert not any(billing.pk in (int(a[5:]), int(b[5:])) for a, b, _ in _edges(project))
    assert Task.objects.get(plan_node=billing).removed_from_spec


def test_a_failed_reingest_writes_no_version_text_or_layout(project):
    # given a version
    ingest_blueprint(project=project, text=DEPS)
    counts = (Blueprint.objects.count(), BlueprintText.objects.count(), PlanLayout.objects.count())
    layout_before = PlanLayout.objects.get().data
    # when a version fails in task generation (a cycle)
    with pytest.raises(ApplicationError, match="cycle"):
        ingest_blueprint(project=project, text=DEPS.replace("Tables.", "Tables.\n\nDepends on: API"))
    # then nothing of it was written, and the next version is ingested incrementally from version 1
    assert (Blueprint.objects.count(), BlueprintText.objects.count(), PlanLayout.objects.count()) == counts
    assert bytes(PlanLayout.objects.get().data) == bytes(layout_before)
    result = ingest_blueprint(project=project, text=DEPS.replace("Manual.", "Manual, updated."))
    assert result.timings["incremental"] and result.timings["tasks_incremental"]
    assert result.counts["changed"] == 1


def test_a_node_archived_by_hand_leaves_the_tree_and_its_section_comes_back_as_new(project):
    # given a version and a node archived by hand
    ingest_blueprint(project=project, text=V1)
    export = PlanNode.objects.get(project=project, anchor="phase-2/export")
    plan_node_update(node=export, status=PlanNode.Status.ARCHIVED)
    assert "phase-2/export" not in {n.anchor for n in current_nodes(project)}
    # when the spec is ingested again with that section still in it
    result = ingest_blueprint(
        project=project, text=V1.replace("SQLite first.", "SQLite first, then PostgreSQL.")
    )
    # then the section is a new node (the archived one stays archived) and the rest is matched
    assert result.counts["added"] == 1 and result.counts["changed"] == 1
    new_export = PlanNode.objects.get(project=project, anchor="phase-2/export", archived_at__isnull=True)
    assert new_export.pk != export.pk
    assert PlanNode.objects.get(pk=export.pk).archived_at is not None


def test_a_node_archived_while_an_ingestion_parses_is_left_out_as_if_archived_before(project):
    # given a version, and an ingestion whose tree was read before a node got archived by hand
    ingest_blueprint(project=project, text=V1)
    export = PlanNode.objects.get(project=project, anchor="phase-2/export")

    def progress(fraction, stage):
        if stage == "matching":  # after the parse, before the ingestion takes the project's lock
            plan_node_update(node=export, status=PlanNode.Status.ARCHIVED)

    # when that ingestion goes on
    result = ingest_blueprint(
        project=project, text=V1.replace("SQLite first.", "SQLite first, then PostgreSQL."), progress=progress
    )
    # then it matched against the tree as it is now: the archived node stays archived, its section is new
    assert result.counts["added"] == 1
    assert PlanNode.objects.get(pk=export.pk).archived_at is not None
    assert PlanNode.objects.filter(
        project=project, anchor="phase-2/export", archived_at__isnull=True
    ).exists()


def test_layout_encoding_round_trips():
    # given a parsed document with headings, checklist items, unicode titles and empty bodies
    layout = parse_blueprint(
        "# Überblick\n\n- [ ] ein Punkt\n- [x] zwei\n\n## Leer\n\n### Tief\n\ntext\n"
    ).to_layout()
    layout.ids = [7, 8, 9, 10, 11]
    # when encoded and decoded
    decoded = Layout.decode(layout.encode())
    # then every column is the same
    for column in Layout.__slots__:
        assert getattr(decoded, column) == getattr(layout, column), column
    assert [decoded.checked(i) for i in range(5)] == [None, False, True, None, None]
    assert Layout.decode(Layout.from_nodes([]).encode()).ids == []


def test_a_version_that_still_holds_current_nodes_or_texts_cannot_be_deleted(project):
    from django.db.models import RestrictedError

    # given two versions: the second keeps most nodes of the first and stores its text as pieces of it
    body = "".join(f"## Section {i}\n\n{'Words. ' * 30}\n\n" for i in range(20))
    v1 = ingest_blueprint(project=project, text="# Spec\n\n" + body, generate_tasks=False).blueprint
    ingest_blueprint(
        project=project,
        text="# Spec\n\n" + body.replace("## Section 3\n", "## Section 3\n\nMore.\n"),
        generate_tasks=False,
    )
    # when the first version is deleted, then that is refused (its rows are the current nodes' last write)
    with pytest.raises(RestrictedError):
        Blueprint.objects.get(pk=v1.pk).delete()
    # and deleting the project deletes everything
    project.delete()
    assert not (
        Blueprint.objects.exists()
        or PlanNode.objects.exists()
        or BlueprintText.objects.exists()
        or PlanLayout.objects.exists()
    )
