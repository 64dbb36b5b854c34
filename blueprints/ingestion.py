"""Ingest a blueprint version: validate, parse, persist the plan tree, diff against the previous
version, then generate tasks. The one write path for blueprints; every door calls it.

Identity across versions. A project has one current plan tree: the non-archived PlanNodes, listed
(with their positions) by the active version's PlanLayout. A new version is matched against that tree:

1. same anchor (slug path) → the same node: "unchanged" if its content hash is equal, else "changed";
2. otherwise same content hash (own text, heading line included) among the unmatched → "moved"
   (same content under another parent or position; keeps its id, anchor updated);
3. otherwise same body (own text without the heading line, non-empty) → "changed" (a rename);
4. the rest of the new nodes are "added"; the rest of the old ones are "removed": archived
   (archived_at, status archived, change "removed"), never deleted, their tasks flagged
   removed_from_spec. Tasks of changed nodes get needs_review.

Write volume: proportional to the edit, not to the tree. Everything that depends on the version (each
node's offsets, order, parent, change marker) is in the version's PlanLayout, one row written once
(blueprints.layout); the text is in BlueprintText, also written once (as pieces of an earlier version's
text when it re-uses most of it: blueprints.texts). A PlanNode row is written only when
its node is added (one prepared INSERT, executemany, ids reserved up front in one query so parents are
known without a query per node), changed, moved or re-parented (one prepared UPDATE, executemany) or
removed (one UPDATE). Unchanged nodes are not touched: their row keeps the version that last wrote it
(`PlanNode.blueprint`) and offsets into that version's text. The blueprint row is small and written
once, already active; superseding the previous version updates only its small row.

The whole ingestion runs in one transaction (a failure leaves no partial tree and the previous version
active). Before it, the active version's text and layout are read (three rows) and passed to the parser,
which re-parses only the units (text between two headings at column 0) that changed
(blueprints.parsing.parse_incremental; the result is identical to a full parse) and tells, per node,
which previous node it took over: when the tree's shape and anchors did not change (the usual edit),
matching is by position and only the re-parsed nodes are compared. Task generation is incremental in
the same case (blueprints.graph.generate_for_version): only the changed sections' dependencies are
recomputed. The cyclic GC is paused during an ingestion: it allocates many small objects and no
cycles, and a collection would only rescan the heap.

The spec search index (blueprints.search) is written in the same transaction, for the sections the
version added, changed or moved (and without the rows of the removed ones).

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
from autopilot.events import push_event, record_event
from autopilot.jobs import ERROR, FAILED, JobRunner, Outcome
from autopilot.models import Project
from autopilot.state import transition
from blueprints import graph, search
from blueprints import layout as lay
from blueprints.layout import Layout
from blueprints.models import Blueprint, IngestionJob, PlanLayout, PlanNode
from blueprints.parsing import ParsedDocument, decode_source, gc_paused, parse_blueprint
from blueprints.texts import store_text
from blueprints.tree import CurrentTree, archived_by_hand, current_tree

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
        return _ingest(
            project=project,
            text=text,
            title=title,
            actor=actor,
            progress=progress,
            generate_tasks=generate_tasks,
            job=job,
        )


def _ingest(*, project, text, title, actor, progress, generate_tasks, job) -> IngestResult:
    started = time.perf_counter()
    report = progress or _noop
    timings: dict[str, float] = {}
    report(0.0, "validating")
    source, data = decode_source(text, max_bytes=settings.AUTOPILOT_MAX_BLUEPRINT_BYTES)
    report(0.05, "parsing")
    mark = time.perf_counter()
    current = current_tree(project.pk)
    timings["previous_s"] = time.perf_counter() - mark
    doc = parse_blueprint(source, data, previous=current.previous_parse() if current else None)
    timings["parse_s"] = time.perf_counter() - mark
    timings.update(doc.stats)
    report(0.3, "matching")
    actor = actor if getattr(actor, "is_authenticated", False) else None

    with transaction.atomic():
        project = Project.objects.select_for_update().get(
            pk=project.pk
        )  # one ingestion per project at a time
        versions = Blueprint.objects.filter(project=project)
        previous = (
            versions.filter(status=Blueprint.Status.ACTIVE).first() or versions.order_by("-version").first()
        )
        last_version = versions.aggregate(v=Max("version"))["v"] or 0
        mark = time.perf_counter()
        active_id = (
            previous.pk if previous is not None and previous.status == Blueprint.Status.ACTIVE else None
        )
        if (current.blueprint_id if current is not None else None) != active_id or (
            current is not None and current.archived != archived_by_hand(project.pk)
        ):
            # Another ingestion (or an archiving by hand) committed meanwhile: match against the tree as
            # it is now (the parse stays valid; only which previous node each node was taken from no
            # longer applies).
            current = current_tree(project.pk)
            doc.sources = doc.copied = None
        plan = plan_tree(doc=doc, current=current)
        diff = plan.diff(from_version=previous.version if previous else None, to_version=last_version + 1)
        counts = plan.counts()
        if previous is not None and previous.status == Blueprint.Status.ACTIVE:
            transition(
                previous,
                Blueprint.Status.SUPERSEDED,
                actor=actor,
                reason=f"superseded by v{last_version + 1}",
            )
        new = plan.new
        first_title = next(
            (t for t, f in zip(new.titles, new.flags, strict=True) if not f & lay.CHECKLIST), ""
        )
        # Created active (not draft → active): the creation is recorded by the blueprint.ingested event.
        blueprint = Blueprint.objects.create(
            project=project,
            title=(title or (previous.title if previous else "") or first_title or "Blueprint")[:300],
            version=last_version + 1,
            parent=previous,
            status=Blueprint.Status.ACTIVE,
            format=doc.format,
            content_hash=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            diff=diff,
            counts=counts,
            created_by=actor,
        )
        store_text(
            blueprint_id=blueprint.pk,
            text=source,
            previous=current.stored if current else None,
            copied=doc.copied,
        )
        blueprint.__dict__["_source_text"] = source
        report(0.4, "saving nodes")
        plan.apply(blueprint=blueprint, progress=report)
        timings["persist_s"] = time.perf_counter() - mark
        timings["search_index_s"] = plan.search_s
        timings["search_indexed"] = plan.indexed

        counts = {**counts, "tasks": 0, "dependencies": 0}
        statements, policy = None, ""
        if generate_tasks:
            report(0.8, "generating tasks")
            mark = time.perf_counter()
            generated = graph.generate_for_version(
                blueprint=blueprint, project=project, plan=plan, actor=actor
            )
            counts["tasks"] = generated.tasks_created
            counts["dependencies"] = generated.dependencies_created
            statements, policy = generated.statements, project.plan_order_policy
            timings["tasks_s"] = time.perf_counter() - mark
            timings["tasks_incremental"] = generated.incremental
        PlanLayout.objects.create(
            blueprint=blueprint, count=len(new), data=new.encode(), statements=statements, policy=policy
        )
        elapsed = time.perf_counter() - started
        if job is not None:  # in the same transaction: a job succeeds exactly once, with its version
            transition(
                job,
                IngestionJob.Status.SUCCEEDED,
                actor=actor,
                reason=f"v{blueprint.version} ingested",
                fields={
                    "blueprint": blueprint,
                    "counts": counts,
                    "diff": diff,
                    "progress": 1.0,
                    "stage": "done",
                    "elapsed_s": round(elapsed, 4),
                    "finished_at": timezone.now(),
                    "source_text": "",
                },
                event_data={"blueprint": blueprint.pk, "version": blueprint.version},
            )
        record_event(
            kind="blueprint.ingested",
            subject=blueprint,
            actor=actor,
            data={
                "version": blueprint.version,
                "counts": counts,
                "job": job.pk if job else None,
                "elapsed_s": round(elapsed, 4),
            },
        )
    report(1.0, "done")
    return IngestResult(
        blueprint, blueprint.version, counts, diff, time.perf_counter() - started, doc.format, timings
    )


def regenerate_plan(*, blueprint: Blueprint, actor=None, progress: Progress | None = None) -> IngestResult:
    """Re-parse an existing version's text into the project's plan tree and make it the active one.

    Idempotent: on the active version whose tree is up to date, every node is unchanged and only its
    layout is rewritten. On a superseded version, the tree is reconciled to that text (matched nodes
    keep their identity) and the version becomes active again. Does not create tasks.
    """
    started = time.perf_counter()
    report = progress or _noop
    actor = actor if getattr(actor, "is_authenticated", False) else None
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=blueprint.project_id)
        blueprint = Blueprint.objects.get(pk=blueprint.pk)
        report(0.05, "parsing")
        doc = parse_blueprint(blueprint.source_text, format=blueprint.format)
        active = Blueprint.objects.filter(
            project_id=blueprint.project_id, status=Blueprint.Status.ACTIVE
        ).first()
        current = current_tree(blueprint.project_id)
        plan = plan_tree(doc=doc, current=current)
        diff = plan.diff(from_version=active.version if active else None, to_version=blueprint.version)
        counts = plan.counts()
        if active is not None and active.pk != blueprint.pk:
            transition(
                active, Blueprint.Status.SUPERSEDED, actor=actor, reason=f"v{blueprint.version} re-activated"
            )
        if blueprint.status != Blueprint.Status.ACTIVE:
            transition(blueprint, Blueprint.Status.ACTIVE, actor=actor, reason="plan regenerated")
        report(0.4, "saving nodes")
        plan.apply(blueprint=blueprint, progress=report)
        same = (
            current is not None
            and current.blueprint_id == blueprint.pk
            and plan.aligned
            and not any(plan.new.changes)
        )
        keep = (
            {"statements": current.statements, "policy": current.policy}
            if same
            else {"statements": None, "policy": ""}
        )
        PlanLayout.objects.update_or_create(
            blueprint=blueprint, defaults={"count": len(plan.new), "data": plan.new.encode(), **keep}
        )
        record_event(
            kind="blueprint.plan_generated",
            subject=blueprint,
            actor=actor,
            data={"version": blueprint.version, "counts": counts},
        )
    report(1.0, "done")
    return IngestResult(
        blueprint,
        blueprint.version,
        {**counts, "tasks": 0, "dependencies": 0},
        diff,
        time.perf_counter() - started,
        doc.format,
    )


# --- The tree -------------------------------------------------------------------------------------


class TreePlan:
    """What a parsed document changes in a project's current plan tree (no writes yet).

    `new`: the document's layout, with the ids of matched nodes and every node's change (added ones get
    their ids in apply()); `matched[i]`: the index in `old` of the node that new node i continues, or -1;
    `removed`: indexes in `old` of the nodes that leave the tree. `aligned`: new node i continues old node
    i for every i (same shape and anchors), the usual re-ingest."""

    def __init__(
        self, new: Layout, current: CurrentTree | None, matched: list[int], removed: list[int], aligned: bool
    ):
        self.new = new
        self.current = current
        self.old = current.layout if current is not None else _EMPTY
        self.matched = matched
        self.removed = removed
        self.aligned = aligned
        self.headings = sum(1 for f in new.flags if not f & lay.CHECKLIST)
        self.indexed = 0  # search index rows written by apply(), and the time it took
        self.search_s = 0.0

    def counts(self) -> dict:
        new = self.new
        counts = {
            "nodes": len(new),
            "headings": self.headings,
            "checklist_items": len(new) - self.headings,
            "added": 0,
            "changed": 0,
            "removed": len(self.removed),
            "moved": 0,
            "unchanged": 0,
        }
        tally = [0] * len(lay.CHANGES)
        for c in new.changes:
            tally[c] += 1
        for code, name in enumerate(lay.CHANGES):
            counts[name] = tally[code]
        return counts

    def diff(self, *, from_version: int | None, to_version: int) -> dict:
        lists: dict[str, list] = {"added": [], "changed": [], "moved": [], "removed": []}
        new, old = self.new, self.old
        totals = dict.fromkeys(lists, 0)
        for i, code in enumerate(new.changes):
            if code == lay.UNCHANGED:
                continue
            c = lay.CHANGES[code]
            totals[c] += 1
            if len(lists[c]) < DIFF_LIST_CAP:
                item = {"anchor": new.anchors[i], "title": new.titles[i], "kind": new.kind(i)}
                j = self.matched[i]
                if j >= 0 and old.anchors[j] != new.anchors[i]:
                    item["from_anchor"] = old.anchors[j]
                lists[c].append(item)
        totals["removed"] = len(self.removed)
        for j in self.removed[:DIFF_LIST_CAP]:
            lists["removed"].append({"anchor": old.anchors[j], "title": old.titles[j], "kind": old.kind(j)})
        diff = {"from_version": from_version, "to_version": to_version, **lists}
        truncated = {k: totals[k] - len(v) for k, v in lists.items() if totals[k] > len(v)}
        if truncated:
            diff["truncated"] = truncated
        return diff

    def apply(self, *, blueprint: Blueprint, progress: Progress | None = None) -> None:
        """Write the plan: archive removed nodes, rewrite matched ones that differ, insert added ones. Nodes
        that did not change keep their rows as they are."""
        report = progress or _noop
        new, old, matched = self.new, self.old, self.matched
        project_id = blueprint.project_id
        now = timezone.now()
        ids = new.ids
        added = [i for i, j in enumerate(matched) if j < 0]
        for i, new_id in zip(added, _allocate_ids(len(added)), strict=True):
            ids[i] = new_id

        # 1. Archive removed nodes first: they leave the current tree (and its unique anchors).
        removed_ids = [old.ids[j] for j in self.removed]
        for chunk in _chunks(removed_ids, 5000):
            PlanNode.objects.filter(pk__in=chunk).update(
                archived_at=now,
                status=PlanNode.Status.ARCHIVED,
                change=PlanNode.Change.REMOVED,
                updated_at=now,
            )
        # 2. Matched nodes: rewritten when their content, place in the tree or identity changed. Aligned
        # (same shape, same anchors), only the changed ones can differ; otherwise every one is compared.
        if self.aligned:  # (a checklist item's level follows its parent heading's)
            rewrite = [
                i
                for i, (c, a, b) in enumerate(zip(new.changes, new.levels, old.levels, strict=True))
                if c or a != b
            ]
        else:
            rewrite = []
            for i, j in enumerate(matched):
                if j >= 0 and (
                    new.changes[i]
                    or new.parent_id(i) != old.parent_id(j)
                    or new.depths[i] != old.depths[j]
                    or new.levels[i] != old.levels[j]
                    or new.titles[i] != old.titles[j]
                    or new.anchors[i] != old.anchors[j]
                    or new.flags[i] != old.flags[j]
                ):
                    rewrite.append(i)
        renamed = [ids[i] for i in rewrite if new.anchors[i] != old.anchors[matched[i]]]
        if (
            renamed
        ):  # anchors can swap between kept nodes: park them on unique placeholders first (a slug has no ~)
            for chunk in _chunks(renamed, 5000):
                PlanNode.objects.filter(pk__in=chunk).update(
                    anchor=Concat(Value("~parked~"), Cast("id", CharField()))
                )
        bp_id = blueprint.pk
        if rewrite:
            _execute_updates(_REWRITE_FIELDS, [(*self._values(i, bp_id), ids[i]) for i in rewrite], now)
        report(0.6, "saving nodes")

        # 3. Added nodes: ids allocated up front, so parents are known without a query per node.
        insert_rows = [(ids[i], project_id, *self._values(i, bp_id), now) for i in added]
        for n, chunk in enumerate(_chunks(insert_rows, INSERT_BATCH)):
            _insert_nodes(chunk)
            report(0.6 + 0.2 * min(1.0, (n + 1) * INSERT_BATCH / len(insert_rows)), "saving nodes")

        changed_ids = [ids[i] for i, c in enumerate(new.changes) if c == lay.CHANGED]
        if changed_ids or removed_ids:
            graph.mark_spec_changes(changed_node_ids=changed_ids, removed_node_ids=removed_ids)

        # 4. The search index: rows of the added, changed and moved sections; removed ones' rows go.
        mark = time.perf_counter()
        self.indexed = search.index_plan(
            project_id=project_id, layout=new, text=blueprint.source_text, removed_ids=removed_ids
        )
        self.search_s = time.perf_counter() - mark

    def _values(self, i: int, bp_id: int) -> tuple:
        """Node i's row values in _REWRITE_FIELDS order."""
        new = self.new
        return (
            bp_id,
            new.parent_id(i),
            new.kind(i),
            new.origin(i),
            new.levels[i],
            new.depths[i],
            new.titles[i],
            new.anchors[i],
            i,
            new.starts[i],
            new.ends[i],
            new.hashes[i],
            new.bodies[i],
            new.checked(i),
            lay.CHANGES[new.changes[i]],
        )


_EMPTY = Layout.from_nodes([])
_REWRITE_FIELDS = (
    "blueprint_id",
    "parent_id",
    "kind",
    "origin",
    "level",
    "depth",
    "title",
    "anchor",
    "order",
    "start",
    "end",
    "content_hash",
    "body_hash",
    "checked",
    "change",
)


def plan_tree(*, doc: ParsedDocument, current: CurrentTree | None) -> TreePlan:
    """Match the parsed nodes against the project's current tree (dict lookups, no query).

    1. same anchor → same node (unchanged if the content hash is equal, else changed);
    2. same content hash among the unmatched → moved; 3. same non-empty body → changed (renamed);
    the rest of the new nodes are added, the rest of the old ones removed. When the anchors are those of
    the current tree in the same order (the usual edit), node i is old node i: only hashes are compared.
    """
    new = doc.to_layout()
    if current is None:
        return TreePlan(new, None, [-1] * len(new), [], False)
    old = current.layout
    excluded = set()
    if current.archived:
        excluded = {j for j, node_id in enumerate(old.ids) if node_id in current.archived}
    n = len(new)
    unchanged, changed = lay.UNCHANGED, lay.CHANGED
    if not excluded and new.anchors == old.anchors:
        new.ids = list(old.ids)
        new.changes = [unchanged if a == b else changed for a, b in zip(new.hashes, old.hashes, strict=True)]
        return TreePlan(new, current, list(range(n)), [], True)
    by_anchor = {anchor: j for j, anchor in enumerate(old.anchors) if j not in excluded}
    matched = [-1] * n
    changes = [lay.ADDED] * n
    used = set(excluded)
    for i, anchor in enumerate(new.anchors):
        j = by_anchor.get(anchor)
        if j is not None:
            matched[i] = j
            used.add(j)
            changes[i] = unchanged if old.hashes[j] == new.hashes[i] else changed
    if len(used) < len(old):
        by_hash: dict[str, list[int]] = {}
        by_body: dict[str, list[int]] = {}
        for j in range(len(old)):
            if j not in used:
                by_hash.setdefault(old.hashes[j], []).append(j)
                if old.bodies[j]:
                    by_body.setdefault(old.bodies[j], []).append(j)
        for table, values, outcome in ((by_hash, new.hashes, lay.MOVED), (by_body, new.bodies, changed)):
            for i, value in enumerate(values):
                if matched[i] < 0 and value:
                    candidates = table.get(value)
                    while candidates and candidates[0] in used:
                        candidates.pop(0)
                    if candidates:
                        j = candidates.pop(0)
                        matched[i], changes[i] = j, outcome
                        used.add(j)
    new.ids = [old.ids[j] if j >= 0 else 0 for j in matched]
    new.changes = changes
    removed = [j for j in range(len(old)) if j not in used]
    return TreePlan(new, current, matched, removed, False)


_INSERT_FIELDS = ("id", "project_id", *_REWRITE_FIELDS, "updated_at")


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
    columns = [
        meta.get_field(name[:-3] if name.endswith("_id") and name != "id" else name).column
        for name in _INSERT_FIELDS
    ] + [f.column for f in defaults]
    constants = tuple(f.get_db_prep_save(f.get_default(), connection) for f in defaults)
    stamp = connection.ops.adapt_datetimefield_value(rows[0][-1])
    # Identifiers come from the model's metadata, quoted; values are parameters.
    sql = (
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(c) for c in columns)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(*row[:-1], stamp, *constants) for row in rows])


def _execute_updates(cols: tuple[str, ...], rows: list[tuple], now) -> None:
    """One prepared UPDATE of `cols`, executed per row (executemany): no CASE chains."""
    qn = connection.ops.quote_name
    meta = PlanNode._meta
    columns = {f.attname: f.column for f in meta.concrete_fields}
    assignments = ", ".join(f"{qn(columns[name])} = %s" for name in cols)
    stamp = connection.ops.adapt_datetimefield_value(now)
    sql = f"UPDATE {qn(meta.db_table)} SET {assignments}, {qn('updated_at')} = %s WHERE {qn('id')} = %s"  # noqa: S608
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, 5000):
            cursor.executemany(sql, [(*row[:-1], stamp, row[-1]) for row in chunk])


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


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
        project=project,
        title=title[:300],
        source_text=source,
        size_bytes=len(data),
        generate_tasks=generate_tasks,
        created_by=actor,
    )
    record_event(
        kind="ingestionjob.created",
        subject=job,
        project=project,
        actor=actor,
        data={"size_bytes": len(data), "title": job.title},
    )
    transaction.on_commit(lambda: _enqueue_job(job.pk))
    return job


def _enqueue_job(job_id: int) -> None:
    from django_q.tasks import async_task

    async_task("blueprints.tasks.run_ingestion_job", job_id, task_name=f"ingest-{job_id}", group="ingestion")


def ingestion_job_run(*, job_id: int) -> IngestionJob:
    """Run a queued job (the worker's entry point) in the one job wrapper (`autopilot.jobs`). A second
    delivery of the same job does nothing: QUEUED → RUNNING is a locked transition, and SUCCEEDED is
    set in the ingestion's own transaction."""
    runner = IngestionJobRunner(IngestionJob.objects.select_related("project", "created_by").get(pk=job_id))
    runner.handle()
    runner.job.refresh_from_db()
    return runner.job


class IngestionJobRunner(JobRunner):
    """start: claim the job (QUEUED → RUNNING); run: ingest; terminate: a refusal (ApplicationError)
    fails the job with its message, anything else with "Internal error: …" (traceback logged)."""

    records_outcome = True

    def __init__(self, job: IngestionJob):
        self.job = job
        self.name = f"ingestion job {job.pk}"

    def start(self) -> bool:
        try:
            transition(
                self.job,
                IngestionJob.Status.RUNNING,
                reason="worker picked it up",
                fields={"started_at": timezone.now(), "stage": "starting", "progress": 0.0, "error": ""},
            )
        except InvalidTransition:
            logger.info("ingestion job %s is %s: nothing to do", self.job.pk, self.job.status)
            return False
        return True

    def run(self) -> None:
        job = self.job
        ingest_blueprint(
            project=job.project,
            text=job.source_text,
            title=job.title,
            actor=job.created_by,
            progress=_JobProgress(job),
            generate_tasks=job.generate_tasks,
            job=job,
        )

    def terminate(self, outcome: Outcome) -> None:
        if outcome.status == FAILED:
            _fail(self.job, outcome.reason)
        elif outcome.status == ERROR:
            _fail(self.job, f"Internal error: {outcome.reason}")


def _fail(job: IngestionJob, message: str) -> None:
    transition(
        job,
        IngestionJob.Status.FAILED,
        reason=message[:200],
        fields={"error": message, "finished_at": timezone.now()},
    )


def ingestion_job_retry(*, job: IngestionJob, actor=None) -> IngestionJob:
    """A failed job can be queued again (its text is kept until it succeeds)."""
    with transaction.atomic():
        job = transition(
            job,
            IngestionJob.Status.QUEUED,
            actor=actor,
            reason="retry",
            fields={"error": "", "progress": 0.0, "stage": "", "finished_at": None},
        )
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
                progress=fraction, stage=stage[:50], updated_at=timezone.now()
            )
        push_event(
            {
                "id": None,
                "kind": "ingestionjob.progress",
                "project": self.job.project_id,
                "subject_type": "ingestionjob",
                "subject_id": self.job.pk,
                "actor": None,
                "data": {"progress": round(fraction, 3), "stage": stage},
                "created_at": None,
            }
        )


# --- Edits ------------------------------------------------------------------------------------------


def blueprint_update(
    *, blueprint: Blueprint, actor=None, title: str | None = None, status: str | None = None
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
            record_event(
                kind="blueprint.updated", subject=blueprint, actor=actor, data={"title": title[:300]}
            )
        if status is not None and status != blueprint.status:
            if status != Blueprint.Status.ACTIVE:
                raise ApplicationError(
                    "Only 'active' can be set: activating a version supersedes the current one "
                    f"(got '{status}')."
                )
            result = regenerate_plan(blueprint=blueprint, actor=actor)
    return Blueprint.objects.get(pk=blueprint.pk), result


PLAN_NODE_EDITABLE = ("priority", "risk", "summary")


def plan_node_update(
    *, node: PlanNode, actor=None, status: str | None = None, reason: str = "", **changes
) -> PlanNode:
    unknown = set(changes) - set(PLAN_NODE_EDITABLE)
    if unknown:
        raise ApplicationError(
            f"Cannot edit {', '.join(sorted(unknown))} of a plan node; editable: "
            f"{', '.join(PLAN_NODE_EDITABLE)}, status."
        )
    if "priority" in changes:
        try:
            priority = int(changes["priority"])
        except (TypeError, ValueError):
            raise ApplicationError(f"priority must be an integer 0–5, got {changes['priority']!r}.") from None
        if not 0 <= priority <= 5:
            raise ApplicationError(f"priority must be 0–5, got {priority}.")
        changes["priority"] = priority
    if "risk" in changes and changes["risk"] not in PlanNode.Risk.values:
        raise ApplicationError(
            f"Unknown risk '{changes['risk']}'; choose from {', '.join(PlanNode.Risk.values)}."
        )
    if "summary" in changes:
        changes["summary"] = str(changes["summary"] or "")
    with transaction.atomic():
        locked = PlanNode.objects.select_for_update().get(pk=node.pk)
        before = {k: getattr(locked, k) for k in changes if getattr(locked, k) != changes[k]}
        if before:
            for key in before:
                setattr(locked, key, changes[key])
            locked.save(update_fields=[*before, "updated_at"])
            record_event(
                kind="plannode.updated",
                subject=locked,
                project=locked.project_id,
                actor=actor,
                data={"changes": {k: {"from": v, "to": changes[k]} for k, v in before.items()}},
            )
        if status is not None and status != locked.status:
            if status not in PlanNode.Status.values:
                raise ApplicationError(
                    f"Unknown status '{status}'; choose from {', '.join(PlanNode.Status.values)}."
                )
            fields = {"archived_at": timezone.now()} if status == PlanNode.Status.ARCHIVED else {}
            if locked.status == PlanNode.Status.ARCHIVED:
                fields = {"archived_at": None}
            try:
                with transaction.atomic():
                    transition(locked, status, actor=actor, reason=reason, fields=fields or None)
            except IntegrityError as exc:
                raise ApplicationError(
                    f"Cannot restore plan node #{locked.pk}: "
                    f"the current plan already has a node at '{locked.anchor}'."
                ) from exc
    return PlanNode.objects.get(pk=node.pk)
