"""Spec search (blueprints.search): the index written by ingestion, incremental re-ingest, what is
found, ranking basics, hostile queries. Runs on SQLite (FTS5) and PostgreSQL (tsvector) alike."""

from __future__ import annotations

import pytest
from django.db import connection

from autopilot.errors import ApplicationError
from autopilot.models import Project
from blueprints.ingestion import ingest_blueprint, plan_node_update, regenerate_plan
from blueprints.models import Blueprint, PlanNode, SectionSearchEntry
from blueprints.search import FTS_TABLE, highlight, search_sections
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db

SPEC = """# Phase 1

Introduction to the first phase.

## Authentication

Users sign in with a password. Sessions expire after a week of inactivity.

- [ ] password hashing with argon2

## Storage engine

Everything is stored in SQLite first; the authentication tables too.

# Phase 2

## Search

Full-text search over documents, ranked by relevance.

## Export

CSV export of every table.
"""


def anchors(project, query, **kwargs):
    return [hit.anchor for hit in search_sections(project, query, **kwargs)]


def entries(project):
    return dict(SectionSearchEntry.objects.filter(project=project).values_list("node__anchor", "body"))


def test_first_ingestion_indexes_every_heading_with_its_own_text(project):
    # when a spec is ingested
    result = ingest_blueprint(project=project, text=SPEC)
    # then every heading (not the checklist item) has a row: its title and its own text, without the
    # heading line and without its subsections
    rows = entries(project)
    assert set(rows) == {
        "phase-1",
        "phase-1/authentication",
        "phase-1/storage-engine",
        "phase-2",
        "phase-2/search",
        "phase-2/export",
    }
    assert rows["phase-1"] == "Introduction to the first phase."
    assert rows["phase-1/authentication"].startswith("Users sign in with a password.")
    assert "argon2" in rows["phase-1/authentication"]  # its checklist item is part of its own text
    assert "Phase 1" not in rows["phase-1"] and "Authentication" not in rows["phase-1"]
    assert result.timings["search_indexed"] == 6


def test_search_finds_sections_by_words_best_first_with_a_snippet(project):
    ingest_blueprint(project=project, text=SPEC)
    # a title match ranks above a body match
    hits = search_sections(project, "authentication")
    assert [h.anchor for h in hits] == ["phase-1/authentication", "phase-1/storage-engine"]
    assert hits[0].score > hits[1].score
    assert hits[0].title == "Authentication"
    assert hits[0].node_id == PlanNode.objects.get(project=project, anchor="phase-1/authentication").pk
    # the snippet is the text around the first matching word
    assert "authentication tables" in hits[1].snippet
    # stemming: "sessions" finds "session", "documents" finds "document"
    assert anchors(project, "session") == ["phase-1/authentication"]
    assert anchors(project, "document ranking") == ["phase-2/search"]
    # every word must appear
    assert anchors(project, "password csv") == []
    # limit and exclusions
    assert anchors(project, "authentication", limit=1) == ["phase-1/authentication"]
    excluded = PlanNode.objects.get(project=project, anchor="phase-1/authentication").pk
    assert anchors(project, "authentication", exclude_ids=[excluded]) == ["phase-1/storage-engine"]


def test_other_projects_sections_are_not_found(project):
    other = ProjectFactory()
    ingest_blueprint(project=project, text=SPEC)
    ingest_blueprint(project=other, text="# Elsewhere\n\nAuthentication by magic link.\n")
    assert anchors(other, "authentication") == ["elsewhere"]
    assert "elsewhere" not in anchors(project, "authentication")


def test_reingest_touches_only_added_changed_moved_and_removed_sections(project):
    ingest_blueprint(project=project, text=SPEC)
    before = {
        row["node_id"]: row
        for row in SectionSearchEntry.objects.filter(project=project).values(
            "node_id", "content_hash", "body"
        )
    }
    # when version 2 edits Search, removes Export, adds Audit and moves Storage under Phase 2
    v2 = (
        SPEC.replace("ranked by relevance", "ranked by bm25 relevance")
        .replace("## Export\n\nCSV export of every table.\n", "## Audit\n\nAn audit trail of every login.\n")
        .replace(
            "## Storage engine\n\nEverything is stored in SQLite first; the authentication tables too.\n\n",
            "",
        )
        + "\n## Storage engine\n\nEverything is stored in SQLite first; the authentication tables too.\n"
    )
    result = ingest_blueprint(project=project, text=v2)
    counts = result.counts
    assert (counts["changed"], counts["added"], counts["removed"], counts["moved"]) == (1, 1, 1, 1)
    # then exactly those rows were written (changed + added + moved), the removed one deleted
    assert result.timings["search_indexed"] == 3
    after = {
        row["node_id"]: row
        for row in SectionSearchEntry.objects.filter(project=project).values(
            "node_id", "content_hash", "body"
        )
    }
    same = [n for n in after if n in before and after[n] == before[n]]
    assert len(same) == 4  # Phase 1, Authentication, Phase 2, and Storage (moved: rewritten, same text)
    assert anchors(project, "bm25") == ["phase-2/search"]
    assert anchors(project, "csv") == []  # removed
    assert anchors(project, "audit trail") == ["phase-2/audit"]  # added
    assert anchors(project, "sqlite") == ["phase-2/storage-engine"]  # moved: found at its new place
    storage = PlanNode.objects.get(project=project, anchor="phase-2/storage-engine")
    assert search_sections(project, "sqlite")[0].node_id == storage.pk


def test_a_reingest_of_the_same_text_writes_no_row(project):
    ingest_blueprint(project=project, text=SPEC)
    result = ingest_blueprint(project=project, text=SPEC)
    assert result.timings["search_indexed"] == 0
    assert anchors(project, "argon2") == ["phase-1/authentication"]


def test_archived_nodes_are_not_found_until_restored(project):
    ingest_blueprint(project=project, text=SPEC)
    node = PlanNode.objects.get(project=project, anchor="phase-2/export")
    plan_node_update(node=node, status=PlanNode.Status.ARCHIVED, reason="out of scope")
    assert anchors(project, "csv") == []
    plan_node_update(node=PlanNode.objects.get(pk=node.pk), status=PlanNode.Status.TODO)
    assert anchors(project, "csv") == ["phase-2/export"]


def test_reactivating_an_older_version_indexes_its_text(project):
    first = ingest_blueprint(project=project, text=SPEC)
    ingest_blueprint(project=project, text=SPEC.replace("CSV export", "Parquet export"))
    assert anchors(project, "parquet") == ["phase-2/export"] and anchors(project, "csv") == []
    regenerate_plan(blueprint=Blueprint.objects.get(pk=first.blueprint.pk))
    assert anchors(project, "csv") == ["phase-2/export"] and anchors(project, "parquet") == []


def test_a_plan_that_predates_the_index_is_indexed_on_first_search(project):
    ingest_blueprint(project=project, text=SPEC)
    SectionSearchEntry.objects.filter(project=project).delete()
    assert anchors(project, "argon2") == ["phase-1/authentication"]
    assert SectionSearchEntry.objects.filter(project=project).count() == 6


def test_no_plan_finds_nothing(project):
    assert search_sections(project, "anything") == []


def test_deleting_a_project_leaves_no_index_behind(project):
    other = ProjectFactory()
    ingest_blueprint(project=project, text=SPEC)
    ingest_blueprint(project=other, text=SPEC)
    Project.objects.filter(pk=project.pk).delete()
    assert not SectionSearchEntry.objects.filter(project_id=project.pk).exists()
    assert anchors(other, "argon2") == ["phase-1/authentication"]
    if connection.vendor == "sqlite":  # the FTS table holds the tokens of the other project's rows only
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH 'argon2'")  # noqa: S608
            assert cursor.fetchone()[0] == 1


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ('"unbalanced quote', False),
        ('"password', True),
        ("password)", True),
        ("(password OR", True),  # "or" is a stop word; "(" is nothing: the query is "password"
        ("NEAR(password hashing)", False),  # "near" is a word the section does not contain
        ("password*", True),  # no prefix search: "password" itself
        ("passw*", False),
        ("title:argon2", False),  # no column filter: "title" is a word too
        ("password AND NOT hashing", True),  # stop words: "password hashing"
        ("-password", True),
        ("password & | ! <-> :*", True),
        ("^password", True),
        ("'; DROP TABLE blueprints_plannode; --", False),
        ("{password}", True),
        ("password\x00hashing", True),
    ],
)
def test_query_syntax_is_data_never_an_operator_or_an_error(project, query, found):
    ingest_blueprint(project=project, text=SPEC)
    # every query is its words, all required: no error, no operator widens or narrows the search
    assert anchors(project, query) == (["phase-1/authentication"] if found else [])
    assert PlanNode.objects.filter(project=project).count() == 7


def test_operator_words_are_ordinary_words(project):
    ingest_blueprint(project=project, text="# Notes\n\nWe go NEAR the OR gate and NOT the AND gate.\n")
    assert anchors(project, "near or not and gate") == ["notes"]


def test_unicode_queries(project):
    ingest_blueprint(
        project=project,
        text="# Café crème\n\nÜbergrößenträger für Straße. 日本語のテキスト\n\n# Other\n\nx\n",
    )
    assert anchors(project, "café") == ["café-crème"]
    assert anchors(project, "🙂 CAFÉ") == ["café-crème"]
    assert anchors(project, "übergrößenträger") == ["café-crème"]


@pytest.mark.parametrize(
    ("query", "limit", "message"),
    [
        ("", 10, "Give a search query"),
        ("   ", 10, "Give a search query"),
        ("x" * 10_000, 10, "q is at most 1,000 characters (got 10,000)"),
        ("password", 0, "limit must be 1–50, got 0"),
        ("password", 51, "limit must be 1–50, got 51"),
        ("password", "ten", "limit must be an integer 1–50, got 'ten'"),
    ],
)
def test_bad_queries_are_refused_naming_the_problem(project, query, limit, message):
    ingest_blueprint(project=project, text=SPEC)
    with pytest.raises(ApplicationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        search_sections(project, query, limit=limit)


def test_a_query_of_stop_words_or_punctuation_finds_nothing(project):
    ingest_blueprint(project=project, text=SPEC)
    assert search_sections(project, "the and of") == []
    assert search_sections(project, "!!! ??? ***") == []


def test_highlight_escapes_the_snippet_and_marks_the_words():
    html = highlight('<script>alert("x")</script> password hashing', "password")
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "<mark>password</mark>" in html


def test_snippet_is_cut_around_the_first_match(project):
    filler = " ".join(f"word{i}" for i in range(400))
    ingest_blueprint(project=project, text=f"# Long\n\n{filler} needle in the haystack {filler}\n")
    snippet = search_sections(project, "needle")[0].snippet
    assert "needle in the haystack" in snippet
    assert snippet.startswith("…") and snippet.endswith("…")
    assert len(snippet) <= 242
