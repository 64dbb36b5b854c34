"""Re-ingesting an edited spec: identity, the diff, flags on tasks, atomicity."""

from __future__ import annotations

import pytest

from autopilot.errors import ApplicationError
from blueprints.ingestion import ingest_blueprint, regenerate_plan
from blueprints.models import Blueprint, PlanNode, Task
from blueprints.selectors import current_nodes, version_nodes

V1 = """# Phase 1

## Auth

Password login.

## Storage

SQLite first.

## Billing

Invoices monthly.

# Phase 2

## Search

Full-text search.

## Export

CSV export.
"""


def _current(project):
    """The current tree as the API and the CLI show it: each node placed by the active version's layout."""
    return {n.anchor: n for n in current_nodes(project)}


def _ids_by_anchor(project):
    return {anchor: node.pk for anchor, node in _current(project).items()}


def test_reingest_keeps_identity_and_reports_the_diff(project):
    # given version 1 with tasks
    first = ingest_blueprint(project=project, text=V1)
    before = _ids_by_anchor(project)
    tasks_before = dict(Task.objects.filter(project=project).values_list("plan_node_id", "id"))
    assert tasks_before
    # when version 2 edits Auth, removes Billing, adds Audit, and moves Export under Phase 1
    v2 = (
        V1.replace("Password login.", "Password login and passkeys.")
        .replace("## Billing\n\nInvoices monthly.\n\n", "")
        .replace("## Export\n\nCSV export.\n", "")
        .replace("## Storage\n", "## Export\n\nCSV export.\n\n## Storage\n")
        + "\n## Audit\n\nLog every action.\n"
    )
    result = ingest_blueprint(project=project, text=v2)
    after = _current(project)
    # then unchanged nodes keep their rows and tasks, and now belong to version 2
    assert after["phase-1/storage"].pk == before["phase-1/storage"]
    assert after["phase-2/search"].pk == before["phase-2/search"]
    assert after["phase-2/search"].change == PlanNode.Change.UNCHANGED
    assert all(n.blueprint_id == result.blueprint.pk for n in after.values())
    assert (
        Task.objects.get(plan_node_id=before["phase-2/search"]).pk == tasks_before[before["phase-2/search"]]
    )
    # changed: same row, flagged, its task needs review
    auth = after["phase-1/auth"]
    assert auth.pk == before["phase-1/auth"] and auth.change == PlanNode.Change.CHANGED
    assert Task.objects.get(plan_node=auth).needs_review
    assert not Task.objects.get(plan_node_id=before["phase-2/search"]).needs_review
    # removed: archived, never deleted, its task flagged
    billing = PlanNode.objects.get(pk=before["phase-1/billing"])
    assert billing.archived_at is not None and billing.status == "archived" and billing.change == "removed"
    assert Task.objects.get(plan_node=billing).removed_from_spec
    # moved: same row under its new parent with its new anchor
    export = after["phase-1/export"]
    assert export.pk == before["phase-2/export"] and export.change == PlanNode.Change.MOVED
    assert export.parent_id == before["phase-1"]
    # added
    assert after["phase-2/audit"].change == PlanNode.Change.ADDED
    assert after["phase-2/audit"].pk not in before.values()
    # and the diff says so
    diff = result.diff
    assert [d["anchor"] for d in diff["changed"]] == ["phase-1/auth"]
    assert [d["anchor"] for d in diff["removed"]] == ["phase-1/billing"]
    assert [(d["anchor"], d["from_anchor"]) for d in diff["moved"]] == [("phase-1/export", "phase-2/export")]
    assert [d["anchor"] for d in diff["added"]] == ["phase-2/audit"]
    assert (diff["from_version"], diff["to_version"]) == (1, 2)
    assert {k: result.counts[k] for k in ("added", "changed", "removed", "moved", "unchanged")} == {
        "added": 1,
        "changed": 1,
        "removed": 1,
        "moved": 1,
        "unchanged": 4,
    }
    # the phases are unchanged: a node's hash covers its own text, not its subsections
    assert after["phase-1"].pk == before["phase-1"] and after["phase-1"].change == PlanNode.Change.UNCHANGED
    assert first.blueprint.pk != result.blueprint.pk


def test_unchanged_reingest_changes_nothing(project):
    # given a version
    ingest_blueprint(project=project, text=V1)
    before = {n.pk: (n.start, n.end, n.content_hash) for n in _current(project).values()}
    tasks = Task.objects.filter(project=project).count()
    # when the same text is ingested again
    result = ingest_blueprint(project=project, text=V1)
    # then every node is unchanged, with the same identity, and no task is created
    assert result.counts["unchanged"] == len(before) and result.counts["tasks"] == 0
    assert {n.pk: (n.start, n.end, n.content_hash) for n in _current(project).values()} == before
    assert Task.objects.filter(project=project).count() == tasks


def test_renamed_section_keeps_identity(project):
    # given a section
    ingest_blueprint(project=project, text=V1, generate_tasks=False)
    storage = _current(project)["phase-1/storage"].pk
    # when only its title changes
    result = ingest_blueprint(
        project=project, text=V1.replace("## Storage", "## Persistence"), generate_tasks=False
    )
    # then it is the same node, changed, under its new anchor
    node = _current(project)["phase-1/persistence"]
    assert node.pk == storage and node.change == PlanNode.Change.CHANGED
    assert result.diff["changed"][0]["from_anchor"] == "phase-1/storage"


def test_offsets_follow_edits_before_a_node(project):
    # given a version
    ingest_blueprint(project=project, text=V1, generate_tasks=False)
    # when text is inserted near the top
    v2 = V1.replace("Password login.", "Password login.\n\nA long new paragraph about sessions.")
    ingest_blueprint(project=project, text=v2, generate_tasks=False)
    # then every later node's slice still starts at its own heading
    for node in _current(project).values():
        assert v2[node.start : node.end].startswith("#" * node.level + " " + node.title)


def test_failed_reingest_leaves_the_previous_version_active(project):
    # given an active version 1 with its tree and tasks
    first = ingest_blueprint(project=project, text=V1).blueprint
    nodes_before = set(PlanNode.objects.values_list("id", "blueprint_id", "change", "start"))
    tasks_before = set(Task.objects.values_list("id", "needs_review"))
    # when version 2 fails late (its dependencies form a cycle, refused by task generation)
    cyclic = V1.replace("Password login.", "Password login.\n\nDepends on: Storage").replace(
        "SQLite first.", "SQLite first.\n\nDepends on: Auth"
    )
    with pytest.raises(ApplicationError, match="cycle"):
        ingest_blueprint(project=project, text=cyclic)
    # then nothing of it remains: version 1 is active, its nodes and tasks untouched
    first.refresh_from_db()
    assert first.status == Blueprint.Status.ACTIVE
    assert list(Blueprint.objects.filter(project=project).values_list("version", flat=True)) == [1]
    assert set(PlanNode.objects.values_list("id", "blueprint_id", "change", "start")) == nodes_before
    assert set(Task.objects.values_list("id", "needs_review")) == tasks_before


def test_regenerate_plan_is_idempotent_and_reactivates_old_versions(project):
    # given two versions
    v1 = ingest_blueprint(project=project, text=V1, generate_tasks=False).blueprint
    ingest_blueprint(project=project, text=V1 + "\n# Phase 3\n", generate_tasks=False)
    # when the active version's plan is regenerated
    active = Blueprint.objects.get(project=project, status="active")
    again = regenerate_plan(blueprint=active)
    # then nothing changes
    assert again.counts["unchanged"] == again.counts["nodes"]
    # when version 1 is regenerated, it becomes active and Phase 3 is archived
    back = regenerate_plan(blueprint=v1)
    assert [d["anchor"] for d in back.diff["removed"]] == ["phase-3"]
    v1.refresh_from_db()
    assert v1.status == Blueprint.Status.ACTIVE
    assert set(_current(project)) == {n.anchor for n in version_nodes(v1)}


def _big_spec(rfcs: int = 30) -> str:
    parts = []
    for r in range(rfcs):
        parts.append(
            f"# RFC {r}\n\nIntro {r}.\n\n## Summary\n\nSummary of {r}.\n\n## Motivation\n\nBecause {r}.\n\n"
            f"```sh\n# not a heading {r}\n```\n\n### Detail\n\n"
            f"- [ ] step one of {r}\n- [x] step two of {r}\n\n"
            "## Drawbacks\n\nNone.\n\n"
        )
    return "".join(parts)


def _assert_tree_is_the_full_parse_of(project, text, blueprint):
    from blueprints.parsing import parse_blueprint

    expected = parse_blueprint(text).nodes
    nodes = current_nodes(project)
    anchors = {n.pk: n.anchor for n in nodes}
    rows = [
        (n.anchor, n.start, n.end, n.order, anchors.get(n.parent_id), n.blueprint_id, n.depth) for n in nodes
    ]
    assert rows == [
        (
            n.anchor,
            n.start,
            n.end,
            n.index,
            expected[n.parent].anchor if n.parent is not None else None,
            blueprint.pk,
            n.depth,
        )
        for n in expected
    ]


def test_reingest_stores_the_new_offsets_order_and_version_of_every_node(project):
    # given a version with many repeated sections
    v1 = _big_spec()
    ingest_blueprint(project=project, text=v1, generate_tasks=False)
    # when a version edits a few sections, removes one, adds one
    v2 = (
        v1.replace("Because 3.", "Because 3, and more words.\n\nA new paragraph.")
        .replace("## Drawbacks\n\nNone.\n\n# RFC 10", "# RFC 10")
        .replace("Summary of 20.", "Summary of 20.\n\n## Extra\n\nAdded.")
        .replace("- [ ] step one of 25", "- [x] step one of 25")
    )
    second = ingest_blueprint(project=project, text=v2, generate_tasks=False)
    # then every current node has the offsets, order, parent and version of a full parse of the new text
    _assert_tree_is_the_full_parse_of(project, v2, second.blueprint)
    assert (second.counts["removed"], second.counts["added"], second.counts["changed"]) == (1, 1, 3)
    # and again after one more small edit, where only that node changes
    v3 = v2.replace("Intro 1.", "Intro 1, longer.")
    third = ingest_blueprint(project=project, text=v3, generate_tasks=False)
    _assert_tree_is_the_full_parse_of(project, v3, third.blueprint)
    assert third.counts["changed"] == 1 and third.counts["unchanged"] == third.counts["nodes"] - 1
