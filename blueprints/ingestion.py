"""Ingest a blueprint version: validate, parse, persist the plan tree, diff against the previous
version, then generate tasks. The one write path for blueprints; every door calls it.

Identity across versions. A project has one current plan tree: the non-archived PlanNodes, all
pointing at the active Blueprint version (`PlanNode.blueprint` = the latest version containing the
node). A new version is matched against that tree:

1. same anchor (slug path) → the same node: "unchanged" if its content hash is equal, else "changed";
2. otherwise same content hash (own text, heading line included) among the unmatched → "moved"
   (same content under another parent or position; keeps its id, anchor updated);
3. otherwise same body (own text without the heading line, non-empty) → "changed" (a rename);
4. the rest of the new nodes are "added"; the rest of the old ones are "removed": archived
   (archived_at, status archived, change "removed"), never deleted, their tasks flagged
   removed_from_spec. Tasks of changed nodes get needs_review.

Write volume. The whole ingestion runs in one transaction (a failure leaves no partial tree and the
previous version active). New nodes get ids reserved up front in one query (PostgreSQL: nextval over
generate_series; SQLite: above the AUTOINCREMENT high-water mark, under the write lock the transaction
already holds), so parents are known without a query per node, and go in through one prepared INSERT
(executemany; Django's bulk_create spent 10x longer building SQL than SQLite spent inserting). A kept
node (same place, same content) is re-pointed at the new version and, after an edit above it, shifted
(offsets, order): kept nodes sharing a shift are moved by one set-based UPDATE per run of consecutive
ids, a few statements per edit instead of one per node (_shift_nodes); no index but the blueprint FK
involves those columns. Other matched nodes are compared with their stored values and only the
differing columns are written, grouped by which columns they are, each group one prepared UPDATE. Removed nodes are archived with one UPDATE (one event for the ingestion, not one per
node). The blueprint row (it holds the whole text, and SQLite rewrites a row on every UPDATE) is
written once, already active, with its diff and counts.

Parsing. Before the transaction, the active version's text and tree are read (straight from the
cursor) and passed to the parser, which re-parses only the units (text between two headings at column
0) that changed (blueprints.parsing.parse_incremental); the result is identical to a full parse. The cyclic GC is paused during an ingestion: it allocates
many small objects and no cycles, and a collection would only rescan the heap.

Progress: `progress(fraction, stage)` is called from validation to the end; IngestionJob runs save it
(throttled) and push it to the job's websocket group.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import CharField, Max, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from autopilot.errors import ApplicationError, InvalidTransition
from autopilot.events import record_event
from autopilot.models import Project
from autopilot.state import transition
from blueprints.models import Blueprint, IngestionJob, PlanNode
from blueprints.parsing import ParsedDocument, PreviousParse, decode_source, gc_paused, parse_blueprint

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
DIFF_LIST_CAP = 1000
INSERT_BATCH = 2000


@dataclass
class IngestResult:
    blueprint: Blueprint
    version: int
    counts: dict
    diff: dict
    elapsed_s: float
    format: str = "markdown"
    timings: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "blueprint": self.blueprint.pk,
            "project": self.blueprint.project_id,
            "version": self.version,
            "format": self.format,
            "counts": self.counts,
            "diff": self.diff,
            "elapsed_s": round(self.elapsed_s, 4),
        }


def _noop(fraction: float, stage: str) -> None:
    return None


def ingest_blueprint(
    *,
    project: Project,
    text: str | bytes,
    title: str = "",
    actor=None,
    progress: Progress | None = None,
    generate_tasks: bool = True,
    job: IngestionJob | None = None,
) -> IngestResult:
    """Create the next version of the project's blueprint from `text` and make it active.

    Raises ApplicationError (naming the problem) on bad input; nothing is written then.
    """
    with gc_paused():
        return _ingest(project=project, text=text, title=title, actor=actor, progress=progress,
                       generate_tasks=generate_tasks, job=job)


def _ingest(*, project, text, title, actor, progress, generate_tasks, job) -> IngestResult:
    started = time.perf_counter()
    report = progress or _noop
    timings: dict[str, float] = {}
    report(0.0, "validating")
    source, data = decode_source(text, max_bytes=settings.AUTOPILOT_MAX_BLUEPRINT_BYTES)
    report(0.05, "parsing")
    mark = time.perf_counter()
    previous_parse, old_rows, based_on = _previous_parse(project.pk)
    timings["previous_s"] = time.perf_counter() - mark
    doc = parse_blueprint(source, data, previous=previous_parse)
    timings["parse_s"] = time.perf_counter() - mark
    timings.update(doc.stats)
    report(0.3, "matching")
    actor = actor if getattr(actor, "is_authenticated", False) else None

    with transaction.atomic():
        project = Project.objects.select_for_update().get(pk=project.pk)  # one ingestion per project at a time
        versions = Blueprint.objects.filter(project=project).defer("source_text")
        previous = versions.filter(status=Blueprint.Status.ACTIVE).first() or versions.order_by("-version").first()
        last_version = versions.aggregate(v=Max("version"))["v"] or 0
        mark = time.perf_counter()
        if previous is None or previous.pk != based_on:
            old_rows = None  # another ingestion committed meanwhile: match against the tree as it is now
        plan = plan_tree(project_id=project.pk, doc=doc, old_rows=old_rows)
        diff = plan.diff(from_version=previous.version if previous else None, to_version=last_version + 1)
        counts = plan.counts()
        if previous is not None and previous.status == Blueprint.Status.ACTIVE:
            transition(previous, Blueprint.Status.SUPERSEDED, actor=actor, reason=f"superseded by v{last_version + 1}")
        first_title = next((n.title for n in doc.nodes if n.origin == "heading"), "")
        # Created active (not draft → active): a blueprint row carries the whole text, and every UPDATE
        # of it rewrites that text on SQLite. The creation is recorded by the blueprint.ingested event.
        blueprint = Blueprint.objects.create(
            project=project,
            title=(title or (previous.title if previous else "") or first_title or "Blueprint")[:300],
            version=last_version + 1,
            parent=previous,
            status=Blueprint.Status.ACTIVE,
            format=doc.format,
            source_text=source,
            content_hash=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            diff=diff,
            counts=counts,
            created_by=actor,
        )
        report(0.4, "saving nodes")
        plan.apply(blueprint=blueprint, progress=report)
        timings["persist_s"] = time.perf_counter() - mark

        counts = {**counts, "tasks": 0, "dependencies": 0}
        if generate_tasks:
            report(0.8, "generating tasks")
            mark = time.perf_counter()
            from blueprints import graph

            generated = graph.generate_tasks(blueprint=blueprint, actor=actor)
            counts["tasks"] = generated.tasks_created
            counts["dependencies"] = generated.dependencies_created
            timings["tasks_s"] = time.perf_counter() - mark
        elapsed = time.perf_counter() - started
        if job is not None:  # in the same transaction: a job succeeds exactly once, with its version
            transition(job, IngestionJob.Status.SUCCEEDED, actor=actor, reason=f"v{blueprint.version} ingested",
                       fields={"blueprint": blueprint, "counts": counts, "diff": diff, "progress": 1.0,
                               "stage": "done", "elapsed_s": round(elapsed, 4), "finished_at": timezone.now(),
                               "source_text": ""},
                       event_data={"blueprint": blueprint.pk, "version": blueprint.version})
        record_event(
            kind="blueprint.ingested",
            subject=blueprint,
            actor=actor,
            data={"version": blueprint.version, "counts": counts, "job": job.pk if job else None,
                  "elapsed_s": round(elapsed, 4)},
        )
    report(1.0, "done")
    return IngestResult(blueprint, blueprint.version, counts, diff, time.perf_counter() - started, doc.format, timings)


def regenerate_plan(*, blueprint: Blueprint, actor=None, progress: Progress | None = None) -> IngestResult:
    """Re-parse an existing version's text into the project's plan tree and make it the active one.

    Idempotent: on the active version whose tree is up to date, every node is unchanged and nothing
    but `change` markers is written. On a superseded version, the tree is reconciled to that text
    (matched nodes keep their identity) and the version becomes active again. Does not create tasks.
    """
    started = time.perf_counter()
    report = progress or _noop
    actor = actor if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=blueprint.project_id)
        blueprint = Blueprint.objects.get(pk=blueprint.pk)
        report(0.05, "parsing")
        doc = parse_blueprint(blueprint.source_text, format=blueprint.format)
        active = Blueprint.objects.filter(project_id=blueprint.project_id, status=Blueprint.Status.ACTIVE).defer(
            "source_text").first()
        plan = plan_tree(project_id=blueprint.project_id, doc=doc)
        diff = plan.diff(from_version=active.version if active else None, to_version=blueprint.version)
        counts = plan.counts()
        if active is not None and active.pk != blueprint.pk:
            transition(active, Blueprint.Status.SUPERSEDED, actor=actor, reason=f"v{blueprint.version} re-activated")
        if blueprint.status != Blueprint.Status.ACTIVE:
            transition(blueprint, Blueprint.Status.ACTIVE, actor=actor, reason="plan regenerated")
        report(0.4, "saving nodes")
        plan.apply(blueprint=blueprint, progress=report)
        record_event(kind="blueprint.plan_generated", subject=blueprint, actor=actor,
                     data={"version": blueprint.version, "counts": counts})
    report(1.0, "done")
    return IngestResult(blueprint, blueprint.version, {**counts, "tasks": 0, "dependencies": 0}, diff,
                        time.perf_counter() - started, doc.format)


# --- The tree -------------------------------------------------------------------------------------

_MATCH_FIELDS = ("id", "parent_id", "order", "start", "end", "level", "depth", "kind", "origin", "title",
                 "anchor", "content_hash", "body_hash", "checked", "change", "blueprint_id")
# Positions in a matched row / in the tuple of new values (same order, without id and blueprint_id).
_ID, _ANCHOR, _HASH, _BODY, _TITLE, _KIND, _BP = 0, 10, 11, 12, 9, 7, 15
_VALUE_FIELDS = _MATCH_FIELDS[1:15]


class TreePlan:
    """What re-ingesting a parsed document changes in a project's current plan tree (no writes yet)."""

    def __init__(self, project_id: int, doc: ParsedDocument, old_rows: list[tuple], matched: list, change: list):
        self.project_id = project_id
        self.doc = doc
        self.old_rows = old_rows
        self.matched = matched
        self.change = change
        used = {row[_ID] for row in matched if row is not None}
        self.removed = [row for row in old_rows if row[_ID] not in used]

    def counts(self) -> dict:
        doc = self.doc
        counts = {"nodes": len(doc.nodes), "headings": doc.headings, "checklist_items": doc.checklist_items,
                  "added": 0, "changed": 0, "removed": len(self.removed), "moved": 0, "unchanged": 0}
        for c in self.change:
            counts[c] += 1
        return counts

    def diff(self, *, from_version: int | None, to_version: int) -> dict:
        lists: dict[str, list] = {"added": [], "changed": [], "moved": [], "removed": []}
        nodes = self.doc.nodes
        totals = dict.fromkeys(lists, 0)
        for i, c in enumerate(self.change):
            if c == PlanNode.Change.UNCHANGED:
                continue
            totals[c] += 1
            if len(lists[c]) < DIFF_LIST_CAP:
                node = nodes[i]
                item = {"anchor": node.anchor, "title": node.title, "kind": node.kind}
                old = self.matched[i]
                if old is not None and old[_ANCHOR] != node.anchor:
                    item["from_anchor"] = old[_ANCHOR]
                lists[c].append(item)
        totals["removed"] = len(self.removed)
        for row in self.removed[:DIFF_LIST_CAP]:
            lists["removed"].append({"anchor": row[_ANCHOR], "title": row[_TITLE], "kind": row[_KIND]})
        diff = {"from_version": from_version, "to_version": to_version, **lists}
        truncated = {k: totals[k] - len(v) for k, v in lists.items() if totals[k] > len(v)}
        if truncated:
            diff["truncated"] = truncated
        return diff

    def apply(self, *, blueprint: Blueprint, progress: Progress | None = None) -> None:
        """Write the plan: archive removed nodes, update matched ones that differ, insert added ones."""
        report = progress or _noop
        nodes, matched, change = self.doc.nodes, self.matched, self.change
        now = timezone.now()
        bp_id = blueprint.pk
        ids: list[int | None] = [row[_ID] if row is not None else None for row in matched]
        added = [i for i, row in enumerate(matched) if row is None]
        for i, new_id in zip(added, _allocate_ids(len(added)), strict=True):
            ids[i] = new_id

        # 1. Archive removed nodes first: they leave the current tree (and its unique anchors).
        removed_ids = [row[_ID] for row in self.removed]
        for chunk in _chunks(removed_ids, 5000):
            PlanNode.objects.filter(pk__in=chunk).update(
                archived_at=now, status=PlanNode.Status.ARCHIVED, change=PlanNode.Change.REMOVED, updated_at=now,
            )
        # 2. Matched nodes. The common case: same node, same content, at most shifted (offsets and order
        # move by the size of edits above it) and re-pointed at the new version. Such nodes are grouped by
        # their shift, and each run of them (consecutive in id order among the current nodes) is moved by
        # one set-based UPDATE over an id range: a handful of statements per edit, not one per node.
        # Any other matched node gets the columns that differ, grouped by which columns they are.
        groups: dict[tuple[str, ...], list[tuple]] = {}
        shifts: dict[tuple, list[int]] = {}
        renamed: list[int] = []
        for i, row in enumerate(matched):
            if row is None:
                continue
            node = nodes[i]
            parent_id = ids[node.parent] if node.parent is not None else None
            if (parent_id == row[1] and node.title == row[9] and node.anchor == row[10]
                    and node.content_hash == row[11] and node.level == row[5] and node.depth == row[6]
                    and node.kind == row[7] and node.origin == row[8] and node.body_hash == row[12]
                    and node.checked == row[13]):
                key = (node.start - row[3], node.end - row[4], i - row[2], change[i] if change[i] != row[14] else None)
                if key != (0, 0, 0, None) or row[_BP] != bp_id:
                    shifts.setdefault(key, []).append(row[_ID])
                continue
            new = (parent_id, i, node.start, node.end, node.level, node.depth, node.kind, node.origin,
                   node.title, node.anchor, node.content_hash, node.body_hash, node.checked, change[i])
            old = row[1:15]
            cols = tuple(name for name, a, b in zip(_VALUE_FIELDS, old, new, strict=True) if a != b)
            values = tuple(b for a, b in zip(old, new, strict=True) if a != b)
            if row[_BP] != bp_id:
                cols += ("blueprint_id",)
                values += (bp_id,)
            if cols:
                if "anchor" in cols:
                    renamed.append(row[_ID])
                groups.setdefault(cols, []).append((*values, row[_ID]))
        if shifts:
            _shift_nodes(self.project_id, bp_id, shifts, sorted(row[_ID] for row in self.old_rows), now)
        if renamed:  # anchors can swap between kept nodes: park them on unique placeholders first (a slug has no ~)
            for chunk in _chunks(renamed, 5000):
                PlanNode.objects.filter(pk__in=chunk).update(anchor=Concat(Value("~parked~"), Cast("id", CharField())))
        for cols, rows in groups.items():
            _execute_updates(cols, rows, now)
        report(0.6, "saving nodes")

        # 3. Added nodes: ids allocated up front, so parents are known without a query per node.
        insert_rows = []
        project_id = self.project_id
        for i in added:
            node = nodes[i]
            insert_rows.append((
                ids[i], project_id, bp_id, ids[node.parent] if node.parent is not None else None,
                node.kind, node.origin, node.level, node.depth, node.title, node.anchor, i, node.start, node.end,
                node.content_hash, node.body_hash, node.checked, PlanNode.Change.ADDED, now,
            ))
        for n, chunk in enumerate(_chunks(insert_rows, INSERT_BATCH)):
            _insert_nodes(chunk)
            report(0.6 + 0.2 * min(1.0, (n + 1) * INSERT_BATCH / len(insert_rows)), "saving nodes")

        changed_ids = [ids[i] for i, c in enumerate(change) if c == PlanNode.Change.CHANGED]
        if changed_ids or removed_ids:
            from blueprints import graph

            graph.mark_spec_changes(changed_node_ids=changed_ids, removed_node_ids=removed_ids)
        self.ids = ids


def _previous_parse(project_id: int) -> tuple[PreviousParse | None, list[tuple] | None, int | None]:
    """The active version's text and current tree, read in one snapshot, for an incremental parse."""
    with transaction.atomic():
        active = (Blueprint.objects.filter(project_id=project_id, status=Blueprint.Status.ACTIVE)
                  .values_list("pk", "format", "source_text").first())
        if active is None or active[1] != Blueprint.Format.MARKDOWN:
            return None, None, None
        rows = _current_rows(project_id)
    if not rows or any(row[_BP] != active[0] for row in rows):
        return None, None, None
    previous = PreviousParse(active[2], [
        (row[_ID], row[1], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10], row[11], row[12], row[13])
        for row in rows
    ])
    return previous, rows, active[0]


def _current_rows(project_id: int) -> list[tuple]:
    """The project's current tree as plain tuples (_MATCH_FIELDS). The SQL is the ORM's; the rows are
    fetched straight from the cursor (values_list spent ~10 µs a row converting values that need none
    but `checked`, a nullable boolean that SQLite returns as 0 / 1)."""
    qs = (PlanNode.objects.filter(project_id=project_id, archived_at__isnull=True)
          .order_by("order", "id").values_list(*_MATCH_FIELDS))
    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    checked = _MATCH_FIELDS.index("checked")
    return [row if row[checked] is None or row[checked] is True or row[checked] is False
            else (*row[:checked], bool(row[checked]), *row[checked + 1:]) for row in rows]


def plan_tree(*, project_id: int, doc: ParsedDocument, old_rows: list[tuple] | None = None) -> TreePlan:
    """Match the parsed nodes against the project's current tree: one query, then dict lookups.

    1. same anchor → same node (unchanged if the content hash is equal, else changed);
    2. same content hash among the unmatched → moved; 3. same non-empty body → changed (renamed);
    the rest of the new nodes are added, the rest of the old ones removed.
    """
    nodes = doc.nodes
    if old_rows is None:
        old_rows = _current_rows(project_id)
    by_anchor = {row[_ANCHOR]: row for row in old_rows}
    matched: list[tuple | None] = [None] * len(nodes)
    change = [PlanNode.Change.ADDED] * len(nodes)
    used: set[int] = set()
    for i, node in enumerate(nodes):
        row = by_anchor.get(node.anchor)
        if row is not None:
            matched[i] = row
            used.add(row[_ID])
            change[i] = PlanNode.Change.UNCHANGED if row[_HASH] == node.content_hash else PlanNode.Change.CHANGED
    if len(used) < len(old_rows):
        by_hash: dict[str, list[tuple]] = {}
        by_body: dict[str, list[tuple]] = {}
        for row in old_rows:
            if row[_ID] not in used:
                by_hash.setdefault(row[_HASH], []).append(row)
                if row[_BODY]:
                    by_body.setdefault(row[_BODY], []).append(row)
        for table, key, outcome in ((by_hash, "content_hash", PlanNode.Change.MOVED),
                                    (by_body, "body_hash", PlanNode.Change.CHANGED)):
            for i, node in enumerate(nodes):
                value = getattr(node, key)
                if matched[i] is None and value:
                    candidates = table.get(value)
                    while candidates and candidates[0][_ID] in used:
                        candidates.pop(0)
                    if candidates:
                        row = candidates.pop(0)
                        matched[i], change[i] = row, outcome
                        used.add(row[_ID])
    return TreePlan(project_id, doc, old_rows, matched, change)


_INSERT_FIELDS = ("id", "project_id", "blueprint_id", "parent_id", "kind", "origin", "level", "depth", "title",
                  "anchor", "order", "start", "end", "content_hash", "body_hash", "checked", "change", "updated_at")


def _allocate_ids(count: int) -> list[int]:
    """Reserve `count` primary keys for new PlanNodes in one query (no query per node)."""
    if count == 0:
        return []
    table = PlanNode._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count]
            )
            return [row[0] for row in cursor.fetchall()]
        if connection.vendor == "sqlite":
            # The caller has already written in this transaction, so it holds SQLite's single write lock:
            # no other connection can insert rows until we commit. AUTOINCREMENT keeps its high-water
            # mark in sqlite_sequence; never reuse an id below it.
            cursor.execute(
                f"SELECT MAX(m) FROM (SELECT MAX(id) AS m FROM {connection.ops.quote_name(table)} "  # noqa: S608
                "UNION ALL SELECT seq FROM sqlite_sequence WHERE name = %s)",
                [table],
            )
            first = (cursor.fetchone()[0] or 0) + 1
            return list(range(first, first + count))
    raise NotImplementedError(f"id allocation for {connection.vendor}")


def _insert_nodes(rows: list[tuple]) -> None:
    """One prepared INSERT executed for every row; the other columns get their model defaults."""
    qn = connection.ops.quote_name
    meta = PlanNode._meta
    given = set(_INSERT_FIELDS)
    defaults = [f for f in meta.concrete_fields if f.attname not in given]
    columns = [meta.get_field(name[:-3] if name.endswith("_id") and name != "id" else name).column
               for name in _INSERT_FIELDS] + [f.column for f in defaults]
    constants = tuple(f.get_db_prep_save(f.get_default(), connection) for f in defaults)
    stamp = connection.ops.adapt_datetimefield_value(rows[0][-1])
    # Identifiers come from the model's metadata, quoted; values are parameters.
    sql = (f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(c) for c in columns)}) "  # noqa: S608
           f"VALUES ({', '.join(['%s'] * len(columns))})")
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(*row[:-1], stamp, *constants) for row in rows])


def _execute_updates(cols: tuple[str, ...], rows: list[tuple], now) -> None:
    """One prepared UPDATE of just `cols`, executed per row (executemany): no CASE chains, and indexes
    on columns that did not change are not touched."""
    qn = connection.ops.quote_name
    meta = PlanNode._meta
    columns = {f.attname: f.column for f in meta.concrete_fields}
    assignments = ", ".join(f"{qn(columns[name])} = %s" for name in cols)
    stamp = connection.ops.adapt_datetimefield_value(now)
    sql = f"UPDATE {qn(meta.db_table)} SET {assignments}, {qn('updated_at')} = %s WHERE {qn('id')} = %s"  # noqa: S608
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, 5000):
            cursor.executemany(sql, [(*row[:-1], stamp, row[-1]) for row in chunk])


def _shift_nodes(project_id: int, bp_id: int, shifts: dict[tuple, list[int]], current_ids: list[int], now) -> None:
    """Move kept nodes by (start, end, order) deltas, re-point them at version `bp_id` and set their
    change marker (None: keep it). `current_ids`: every current node of the project, sorted; a run of
    nodes consecutive in it and sharing a shift is one `id BETWEEN` range: the project's other current
    nodes are outside it, and its archived nodes and other projects' nodes are excluded by the filter."""
    qn = connection.ops.quote_name
    meta = PlanNode._meta
    col = {f.attname: qn(f.column) for f in meta.concrete_fields}
    position = {node_id: k for k, node_id in enumerate(current_ids)}
    stamp = connection.ops.adapt_datetimefield_value(now)
    statements: dict[bool, list[tuple]] = {False: [], True: []}
    for (d_start, d_end, d_order, change), node_ids in shifts.items():
        node_ids.sort()
        first = last = node_ids[0]
        for node_id in [*node_ids[1:], None]:
            if node_id is not None and position[node_id] == position[last] + 1:
                last = node_id
                continue
            marker = () if change is None else (change,)
            statements[change is not None].append(
                (d_start, d_end, d_order, bp_id, stamp, *marker, project_id, first, last))
            if node_id is not None:
                first = last = node_id
    # Identifiers come from the model's metadata, quoted; values are parameters.
    base = (f"UPDATE {qn(meta.db_table)} SET {col['start']} = {col['start']} + %s, {col['end']} = {col['end']} + %s, "  # noqa: S608
            f"{col['order']} = {col['order']} + %s, {col['blueprint_id']} = %s, {col['updated_at']} = %s")
    where = f" WHERE {col['project_id']} = %s AND {col['archived_at']} IS NULL AND {col['id']} BETWEEN %s AND %s"
    with connection.cursor() as cursor:
        for with_change, params in statements.items():
            if params:
                sql = base + (f", {col['change']} = %s" if with_change else "") + where
                for chunk in _chunks(params, 5000):
                    cursor.executemany(sql, chunk)


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


# --- Ingestion jobs (async) ---------------------------------------------------------------------

PROGRESS_SAVE_INTERVAL_S = 0.3


@transaction.atomic
def ingestion_job_create(
    *, project: Project, text: str | bytes, title: str = "", actor=None, generate_tasks: bool = True
) -> IngestionJob:
    """Queue an ingestion. The cheap checks (empty, binary, UTF-8, size) run now, so a bad upload is
    refused at once; parsing (and "not a spec") happens in the worker."""
    source, data = decode_source(text, max_bytes=settings.AUTOPILOT_MAX_BLUEPRINT_BYTES)
    actor = actor if getattr(actor, "is_authenticated", False) else None
    job = IngestionJob.objects.create(
        project=project, title=title[:300], source_text=source, size_bytes=len(data),
        generate_tasks=generate_tasks, created_by=actor,
    )
    record_event(kind="ingestionjob.created", subject=job, project=project, actor=actor,
                 data={"size_bytes": len(data), "title": job.title})
    transaction.on_commit(lambda: _enqueue_job(job.pk))
    return job


def _enqueue_job(job_id: int) -> None:
    from django_q.tasks import async_task

    async_task("blueprints.tasks.run_ingestion_job", job_id, task_name=f"ingest-{job_id}", group="ingestion")


def ingestion_job_run(*, job_id: int) -> IngestionJob:
    """Run a queued job (the worker's entry point). A second delivery of the same job does nothing:
    QUEUED → RUNNING is a locked transition, and SUCCEEDED is set in the ingestion's own transaction."""
    job = IngestionJob.objects.select_related("project", "created_by").get(pk=job_id)
    try:
        transition(job, IngestionJob.Status.RUNNING, reason="worker picked it up",
                   fields={"started_at": timezone.now(), "stage": "starting", "progress": 0.0, "error": ""})
    except InvalidTransition:
        logger.info("ingestion job %s is %s: nothing to do", job_id, job.status)
        return job
    progress = _JobProgress(job)
    try:
        ingest_blueprint(project=job.project, text=job.source_text, title=job.title, actor=job.created_by,
                         progress=progress, generate_tasks=job.generate_tasks, job=job)
    except ApplicationError as exc:
        _fail(job, exc.message)
    except Exception as exc:  # noqa: BLE001 - any failure must end the job, with the reason recorded
        logger.exception("ingestion job %s crashed", job_id)
        _fail(job, f"Internal error: {type(exc).__name__}: {exc}")
    job.refresh_from_db()
    return job


def _fail(job: IngestionJob, message: str) -> None:
    transition(job, IngestionJob.Status.FAILED, reason=message[:200],
               fields={"error": message, "finished_at": timezone.now()})


def ingestion_job_retry(*, job: IngestionJob, actor=None) -> IngestionJob:
    """A failed job can be queued again (its text is kept until it succeeds)."""
    with transaction.atomic():
        job = transition(job, IngestionJob.Status.QUEUED, actor=actor, reason="retry",
                         fields={"error": "", "progress": 0.0, "stage": "", "finished_at": None})
        transaction.on_commit(lambda: _enqueue_job(job.pk))
    return job


class _JobProgress:
    """Progress callback for a job: saves (progress, stage) at most every PROGRESS_SAVE_INTERVAL_S or on a
    new stage, and pushes it live. Inside the ingestion's transaction a saved row would be invisible
    (and SQLite's single writer is busy), so from there it is only pushed to the channel layer."""

    def __init__(self, job: IngestionJob):
        self.job = job
        self.last_saved = 0.0
        self.last_stage = ""

    def __call__(self, fraction: float, stage: str) -> None:
        now = time.monotonic()
        if stage == self.last_stage and now - self.last_saved < PROGRESS_SAVE_INTERVAL_S:
            return
        self.last_saved, self.last_stage = now, stage
        fraction = max(0.0, min(1.0, fraction))
        if not connection.in_atomic_block:
            IngestionJob.objects.filter(pk=self.job.pk, status=IngestionJob.Status.RUNNING).update(
                progress=fraction, stage=stage[:50], updated_at=timezone.now())
        from autopilot.events import push_event

        push_event({"id": None, "kind": "ingestionjob.progress", "project": self.job.project_id,
                    "subject_type": "ingestionjob", "subject_id": self.job.pk, "actor": None,
                    "data": {"progress": round(fraction, 3), "stage": stage}, "created_at": None})


# --- Edits ------------------------------------------------------------------------------------------

def blueprint_update(*, blueprint: Blueprint, actor=None, title: str | None = None, status: str | None = None
                     ) -> tuple[Blueprint, IngestResult | None]:
    """Rename a version, or make an older version active again (its text is reconciled into the plan
    tree, so the tree always matches the active version)."""
    result = None
    with transaction.atomic():
        if title is not None:
            title = title.strip()
            if not title:
                raise ApplicationError("A blueprint's title cannot be empty.")
            Blueprint.objects.filter(pk=blueprint.pk).update(title=title[:300], updated_at=timezone.now())
            record_event(kind="blueprint.updated", subject=blueprint, actor=actor, data={"title": title[:300]})
        if status is not None and status != blueprint.status:
            if status != Blueprint.Status.ACTIVE:
                raise ApplicationError(
                    "Only 'active' can be set: activating a version supersedes the current one "
                    f"(got '{status}')."
                )
            result = regenerate_plan(blueprint=blueprint, actor=actor)
    return Blueprint.objects.defer("source_text").get(pk=blueprint.pk), result


PLAN_NODE_EDITABLE = ("priority", "risk", "summary")


def plan_node_update(*, node: PlanNode, actor=None, status: str | None = None, reason: str = "",
                     **changes) -> PlanNode:
    unknown = set(changes) - set(PLAN_NODE_EDITABLE)
    if unknown:
        raise ApplicationError(f"Cannot edit {', '.join(sorted(unknown))} of a plan node; editable: "
                               f"{', '.join(PLAN_NODE_EDITABLE)}, status.")
    if "priority" in changes:
        try:
            priority = int(changes["priority"])
        except (TypeError, ValueError):
            raise ApplicationError(f"priority must be an integer 0–5, got {changes['priority']!r}.") from None
        if not 0 <= priority <= 5:
            raise ApplicationError(f"priority must be 0–5, got {priority}.")
        changes["priority"] = priority
    if "risk" in changes and changes["risk"] not in PlanNode.Risk.values:
        raise ApplicationError(f"Unknown risk '{changes['risk']}'; choose from {', '.join(PlanNode.Risk.values)}.")
    if "summary" in changes:
        changes["summary"] = str(changes["summary"] or "")
    with transaction.atomic():
        locked = PlanNode.objects.select_for_update().get(pk=node.pk)
        before = {k: getattr(locked, k) for k in changes if getattr(locked, k) != changes[k]}
        if before:
            for key in before:
                setattr(locked, key, changes[key])
            locked.save(update_fields=[*before, "updated_at"])
            record_event(kind="plannode.updated", subject=locked, project=locked.project_id, actor=actor,
                         data={"changes": {k: {"from": v, "to": changes[k]} for k, v in before.items()}})
        if status is not None and status != locked.status:
            if status not in PlanNode.Status.values:
                raise ApplicationError(f"Unknown status '{status}'; choose from {', '.join(PlanNode.Status.values)}.")
            fields = {"archived_at": timezone.now()} if status == PlanNode.Status.ARCHIVED else {}
            if locked.status == PlanNode.Status.ARCHIVED:
                fields = {"archived_at": None}
            try:
                with transaction.atomic():
                    transition(locked, status, actor=actor, reason=reason, fields=fields or None)
            except IntegrityError as exc:
                raise ApplicationError(
                    f"Cannot restore plan node #{locked.pk}: the current plan already has a node at '{locked.anchor}'."
                ) from exc
    return PlanNode.objects.get(pk=node.pk)
