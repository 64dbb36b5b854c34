"""Spec search: a full-text index of the current plan tree's sections (heading nodes: title + own text).

The index (SectionSearchEntry rows, one per heading node) is written by ingestion in the ingestion's
own transaction (`index_plan`, called from TreePlan.apply): the first version indexes every section,
a re-ingest only the nodes it added, changed or moved, and deletes the rows of the nodes it removed.
An unchanged node keeps its row (its own text, hence its content hash, is the same). A project whose
tree predates the index (no rows at all) is indexed whole on its next ingestion or search.

Search runs in the database:
- SQLite (the embedded default): FTS5 (`blueprints_section_fts`, Porter stemming over unicode61
  tokens), ranked by bm25 with the title weighted TITLE_WEIGHT times the body;
- PostgreSQL: the `document` tsvector (english configuration; title weight A, body B) with its GIN
  index, ranked by ts_rank (title weight 5 times the body's, length-normalized).
Both take the same query: the user's text reduced to its words (letters and digits; no operator,
quote, prefix or column syntax survives: a query is data, never FTS5 or tsquery syntax), all of which
must appear (AND). On SQLite PostgreSQL's English stop words are left out of the query, as
plainto_tsquery does, so the same words count on both. tests/blueprints/test_search_parity.py pins
the top three sections of several queries on the shared corpus, identical on both databases.

Only nodes in the current tree are found (not archived: removed by an ingestion or archived by hand).
Snippets are plain text cut from the section's own text around the first matching word; pages
escape them (`highlight` marks the matched words in escaped HTML).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from django.db import connection, transaction
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from autopilot.errors import ApplicationError
from autopilot.input_limits import MAX_SEARCH_QUERY_CHARS, check_length
from autopilot.models import Project
from blueprints import layout as lay
from blueprints.layout import Layout
from blueprints.models import Blueprint, PlanLayout, SectionSearchEntry
from blueprints.texts import read_text

TITLE_WEIGHT = 10.0  # bm25 column weight of the title against the body (1.0) on SQLite
# ts_rank on PostgreSQL: weights of D, C, B (body), A (title), and normalization 16 (rank divided by
# 1 + the log of the number of unique words): the closest to bm25's order on the shared corpus.
PG_WEIGHTS = "{0.1, 0.2, 0.2, 1.0}"
PG_NORMALIZATION = 16
MAX_BODY_CHARS = 100_000  # of a section's own text indexed (a tsvector holds at most 1 MB)
MAX_QUERY_WORDS = 32
MAX_LIMIT = 50
SNIPPET_CHARS = 240
WRITE_BATCH = 500

FTS_TABLE = "blueprints_section_fts"

# PostgreSQL's english.stop (the 'english' text search configuration's stop words).
STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she
    her hers herself it its itself they them their theirs themselves what which who whom this that these
    those am is are was were be been being have has had having do does did doing a an the and but if or
    because as until while of at by for with about against between into through during before after
    above below to from up down in out on off over under again further then once here there when where
    why how all any both each few more most other some such no nor not only own same so than too very s
    t can will just don should now""".split()
)

_WORD = re.compile(r"[^\W_]+")
_SETEXT = re.compile(r"[ \t]*(=+|-+)[ \t]*\n?")


@dataclass(frozen=True)
class SearchHit:
    node_id: int
    title: str
    anchor: str
    score: float
    snippet: str

    def as_dict(self) -> dict:
        return asdict(self)


# --- Query -----------------------------------------------------------------------------------------


def query_words(query: str) -> list[str]:
    """The words of a user's query, lower-cased, in order, without repeats (at most MAX_QUERY_WORDS)."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(query.lower()):
        seen.setdefault(word, None)
        if len(seen) >= MAX_QUERY_WORDS:
            break
    return list(seen)


def _fts5_query(words: list[str]) -> str:
    """An FTS5 MATCH expression: every non-stop word as a quoted string (literal), all required."""
    return " ".join(f'"{w}"' for w in words if w not in STOP_WORDS)


def _validate(query, limit) -> tuple[str, int]:
    if not isinstance(query, str) or not query.strip():
        raise ApplicationError("Give a search query (q): the words to look for in the spec's sections.")
    check_length(query, "q", MAX_SEARCH_QUERY_CHARS)
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        raise ApplicationError(f"limit must be an integer 1–{MAX_LIMIT}, got {limit!r}.") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ApplicationError(f"limit must be 1–{MAX_LIMIT}, got {limit}.")
    return query, limit


def search_sections(
    project: Project | int, query: str, *, limit: int = 10, exclude_ids=()
) -> list[SearchHit]:
    """The current tree's sections that contain every word of `query`, best first (at most `limit`).

    Raises ApplicationError for an empty or too long query or a bad limit. No permission check: the
    doors check the viewer role (the context builder calls this for a run's own project)."""
    query, limit = _validate(query, limit)
    project_id = getattr(project, "pk", project)
    words = query_words(query)
    if not words:
        return []
    ensure_index(project_id)
    exclude = sorted({int(x) for x in exclude_ids})
    rows = _search_postgres(project_id, words, limit, exclude) if _postgres() else None
    if rows is None:
        expression = _fts5_query(words)
        if not expression:
            return []
        rows = _search_sqlite(project_id, expression, limit, exclude)
    return [
        SearchHit(
            node_id=node_id,
            title=title,
            anchor=anchor,
            score=round(float(score), 6),
            snippet=make_snippet(body, words),
        )
        for node_id, title, anchor, score, body in rows
    ]


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _exclusion(exclude: list[int]) -> tuple[str, list]:
    if not exclude:
        return "", []
    return f" AND e.node_id NOT IN ({', '.join(['%s'] * len(exclude))})", exclude


def _search_sqlite(project_id: int, expression: str, limit: int, exclude: list[int]) -> list[tuple]:
    not_in, params = _exclusion(exclude)
    sql = (
        f"SELECT e.node_id, n.title, n.anchor, -bm25({FTS_TABLE}, %s, 1.0) AS score, e.body "  # noqa: S608
        f"FROM {FTS_TABLE} f "
        "JOIN blueprints_sectionsearchentry e ON e.node_id = f.rowid "
        "JOIN blueprints_plannode n ON n.id = e.node_id "
        f"WHERE {FTS_TABLE} MATCH %s AND e.project_id = %s AND n.archived_at IS NULL{not_in} "
        "ORDER BY score DESC, e.node_id LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [TITLE_WEIGHT, expression, project_id, *params, limit])
        return cursor.fetchall()


def _search_postgres(project_id: int, words: list[str], limit: int, exclude: list[int]) -> list[tuple]:
    not_in, params = _exclusion(exclude)
    sql = (
        f"SELECT e.node_id, n.title, n.anchor, ts_rank('{PG_WEIGHTS}', e.document, q, {PG_NORMALIZATION}) "  # noqa: S608
        "AS score, e.body "
        "FROM blueprints_sectionsearchentry e "
        "JOIN blueprints_plannode n ON n.id = e.node_id, "
        "plainto_tsquery('english', %s) q "
        f"WHERE e.document @@ q AND e.project_id = %s AND n.archived_at IS NULL{not_in} "
        "ORDER BY score DESC, e.node_id LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [" ".join(words), project_id, *params, limit])
        return cursor.fetchall()


# --- Snippets ----------------------------------------------------------------------------------------


def _word_pattern(words: list[str]) -> re.Pattern[str] | None:
    """Words of the text that match a query word (itself, or a word starting with its first letters:
    the stemmed forms the database matched)."""
    stems = sorted({w[: max(3, len(w) - 2)] if len(w) > 3 else w for w in words}, key=len, reverse=True)
    if not stems:
        return None
    return re.compile(r"(?<![^\W_])(?:" + "|".join(map(re.escape, stems)) + r")[^\W_]*", re.IGNORECASE)


def make_snippet(body: str, words: list[str], *, size: int = SNIPPET_CHARS) -> str:
    """Up to `size` characters of `body` (whitespace collapsed) around the first query word in it."""
    pattern = _word_pattern([w for w in words if w not in STOP_WORDS] or words)
    text = " ".join(body[:MAX_BODY_CHARS].split())
    found = pattern.search(text) if pattern is not None else None
    start = 0 if found is None else max(0, found.start() - size // 3)
    if start:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < found.start() else start
    snippet = text[start : start + size]
    return ("…" if start else "") + snippet + ("…" if start + size < len(text) else "")


def highlight(snippet: str, query: str) -> SafeString:
    """The snippet as escaped HTML with the query's words in <mark>."""
    words = query_words(query)
    pattern = _word_pattern([w for w in words if w not in STOP_WORDS] or words)
    if pattern is None:
        return escape(snippet)
    out, last = [], 0
    for match in pattern.finditer(snippet):
        out.append(escape(snippet[last : match.start()]))
        out.append(f"<mark>{escape(match.group(0))}</mark>")
        last = match.end()
    out.append(escape(snippet[last:]))
    return mark_safe("".join(out))  # noqa: S308 - every piece is escaped


# --- The index -----------------------------------------------------------------------------------------


def own_text(layout: Layout, text: str, i: int) -> str:
    """Node i's own text: its section without its subsections (for a heading, up to the next heading of
    any level; for a checklist item, the item)."""
    start = layout.starts[i]
    if layout.flags[i] & lay.CHECKLIST:
        return text[start : layout.ends[i]]
    flags, starts = layout.flags, layout.starts
    for j in range(i + 1, len(flags)):
        if not flags[j] & lay.CHECKLIST:
            return text[start : starts[j]]
    return text[start:]


def section_body(own: str) -> str:
    """The own text without its heading line (and a setext heading's underline)."""
    first, _, rest = own.partition("\n")
    if not first.lstrip().startswith("#"):
        underline = _SETEXT.match(rest)
        if underline is not None:
            rest = rest[underline.end() :]
    return rest.strip()[:MAX_BODY_CHARS]


_INSERT = (
    "INSERT INTO blueprints_sectionsearchentry (node_id, project_id, content_hash, title, body) "
    "VALUES (%s, %s, %s, %s, %s)"
)
_INSERT_FTS = f"INSERT INTO {FTS_TABLE} (rowid, title, body) VALUES (%s, %s, %s)"  # noqa: S608


def _write(project_id: int, layout: Layout, text: str, indexes: list[int], *, fresh: bool = False) -> int:
    """(Re)write the rows of nodes `indexes`: delete the ones they have (on SQLite the delete trigger
    takes their tokens out of the FTS table), insert them again, and on SQLite insert their tokens
    (directly: an insert trigger costs three times as much). `fresh`: none of them has a row yet."""
    ids, hashes, titles = layout.ids, layout.hashes, layout.titles
    sqlite = connection.vendor == "sqlite"
    with connection.cursor() as cursor:
        for k in range(0, len(indexes), WRITE_BATCH):
            chunk = indexes[k : k + WRITE_BATCH]
            if not fresh:
                SectionSearchEntry.objects.filter(node_id__in=[ids[i] for i in chunk]).delete()
            rows = [
                (ids[i], project_id, hashes[i], titles[i], section_body(own_text(layout, text, i)))
                for i in chunk
            ]
            cursor.executemany(_INSERT, rows)
            if sqlite:
                cursor.executemany(_INSERT_FTS, [(row[0], row[3], row[4]) for row in rows])
    return len(indexes)


def _headings(layout: Layout) -> list[int]:
    return [i for i, f in enumerate(layout.flags) if not f & lay.CHECKLIST]


def index_plan(*, project_id: int, layout: Layout, text: str, removed_ids: list[int]) -> int:
    """Bring the index up to date with a version's tree being written (inside the ingestion's
    transaction): delete the removed nodes' rows, write the rows of the heading nodes added, changed or
    moved (all of them when the project has no rows yet). Returns the number of rows written."""
    for k in range(0, len(removed_ids), WRITE_BATCH):
        SectionSearchEntry.objects.filter(node_id__in=removed_ids[k : k + WRITE_BATCH]).delete()
    headings = _headings(layout)
    if not SectionSearchEntry.objects.filter(project_id=project_id).exists():
        return _write(project_id, layout, text, headings, fresh=True)
    changes = layout.changes
    added = [i for i in headings if changes[i] == lay.ADDED]  # new node ids: no row yet
    rewritten = [i for i in headings if changes[i] in (lay.CHANGED, lay.MOVED)]
    return _write(project_id, layout, text, added, fresh=True) + _write(project_id, layout, text, rewritten)


def rebuild_index(project_id: int) -> int:
    """Index the active version's whole current tree again (the project's other rows are deleted). Holds
    the project's row lock, like an ingestion, so the two never interleave."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project_id).first()
        SectionSearchEntry.objects.filter(project_id=project_id).delete()
        active = Blueprint.objects.filter(project_id=project_id, status=Blueprint.Status.ACTIVE).first()
        data = (
            PlanLayout.objects.filter(blueprint=active).values_list("data", flat=True).first()
            if active is not None
            else None
        )
        if data is None:
            return 0
        layout = Layout.decode(data)
        return _write(project_id, layout, read_text(active.pk).text, _headings(layout), fresh=True)


def ensure_index(project_id: int) -> None:
    """Index a project whose current tree predates the index (it has a plan but no rows)."""
    if SectionSearchEntry.objects.filter(project_id=project_id).exists():
        return
    if Blueprint.objects.filter(project_id=project_id, status=Blueprint.Status.ACTIVE).exists():
        rebuild_index(project_id)
