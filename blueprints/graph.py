"""The task graph: turn a blueprint's plan tree into tasks and dependencies.

Which nodes become tasks (what a tech lead wants from a real spec):

- A *leaf heading* (a heading without child headings) is one task. Its checklist items are folded
  into it: they are its acceptance criteria, they raise its complexity, and if every one of them is
  ticked in the spec the task starts out done.
- A *checklist item sitting directly under a heading that has child headings* (e.g. the intro of a
  phase: "- [ ] set up CI") is a task of its own — otherwise it would belong to no task. Nested
  items fold into their top item.
- Headings that group other headings (phases, epics, …) get no task of their own: their tasks are
  the tasks of their subtree.
- *Meta sections* — headings titled "Prerequisites", "Dependencies", "Depends on", "Implementation
  order" (and the like) — never become tasks; they are read for dependencies and belong to their
  parent section.

Dependencies, read from the text (precompiled regexes over the whole source, mapped to the
innermost node by offset):

- lines `Depends on: …`, `After: …`, `Requires: …`, `Prerequisites: …`, `Blocked by: …` (bold or
  list-item forms too, items on the same line separated by `,` `;` `and`, or as a list right below),
  and parentheticals like `(depends on: Schema)`; a line belongs to the innermost section around it.
- meta sections "Prerequisites"/"Dependencies": every list item is a prerequisite of the parent.
- "Implementation order" sections: each list item comes after the previous one.
- an item names a section by `[text](#anchor)`, `#anchor`, `` `anchor` ``, its anchor (full slug
  path or its last segment) or its title (case-insensitive; "Phase 1" also matches "Phase 1: Core").

Plus the project's plan-order policy (`Project.plan_order_policy`):

- `siblings`: every section after its previous sibling — recursively this is one chain over all
  tasks in plan order (n − 1 edges).
- `phases`: every task of phase N waits for every task of phase N−1. The phases are the top-level
  sections (descending through a single title heading, "# My spec").

"Every task of group B after every task of group A" would need |A|×|B| edges; when that is more than
|A|+|B|, the generator adds a *milestone* task "A — complete" (kind=milestone, never run) that
depends on all of A, and makes every task of B depend on it. The graph stays linear in size.

Generation is idempotent: each task carries a `source_key` (`node:<plan node id>` or
`gate:<plan node id>`), unique per project, and plan nodes keep their id across versions, so
generating twice — or re-ingesting an unchanged section — creates nothing. A whole-blueprint
generation also drops text/policy edges the spec no longer implies. A cycle in the result is refused
with an ApplicationError naming it.

Reading the text and resolving it are two steps: `_statements` reads what each section states (by the
node whose own text says it), `_resolve` turns statements into edges against a tree. A version keeps
its statements (PlanLayout.statements), so after a re-ingest only the sections that were added,
changed or moved are read again (generate_for_version); when the tree kept its shape and titles and
those sections state nothing and stated nothing, no tree is even built.
"""

from __future__ import annotations

import bisect
import functools
import graphlib
import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models.constants import OnConflict
from django.utils import timezone

from autopilot.errors import ApplicationError
from autopilot.events import record_event
from autopilot.models import PlanOrderPolicy, Project
from autopilot.seams import project_changed
from blueprints.layout import CHECKED, CHECKLIST, HAS_CHECKED, Layout
from blueprints.models import Blueprint, PlanLayout, PlanNode, Task, TaskDependency
from blueprints.parsing import gc_paused
from blueprints.readiness import mark_dependents_stale, mark_stale
from blueprints.tree import current_tree

BODY_CAP = 20_000
DEFAULT_PRIORITY = PlanNode._meta.get_field("priority").default
MAX_UNRESOLVED_REPORTED = 50

META_TITLE_RE = re.compile(
    r"^\s*(?:prerequisites?|dependencies|depends\s+on|requirements\s+order|blocked\s+by|"
    r"implementation\s+order|order\s+of\s+implementation|build\s+order|execution\s+order)\s*:?\s*$",
    re.IGNORECASE,
)
ORDER_TITLE_RE = re.compile(
    r"^\s*(?:implementation\s+order|order\s+of\s+implementation|build\s+order|execution\s+order)\s*:?\s*$",
    re.IGNORECASE,
)
# "Depends on: A, B" — optionally bold, optionally a list item or a quote.
DEP_LINE_RE = re.compile(
    r"^[ \t]{0,3}(?:>[ \t]*)?(?:(?:[-*+]|\d{1,3}[.)])[ \t]+)?(?:\*\*|__)?"
    r"(depends[ \t]+on|after|requires|prerequisites?|blocked[ \t]+by|dependencies)"
    r"[ \t]*(?:\*\*|__)?[ \t]*:[ \t]*(?:\*\*|__)?[ \t]*([^\n]*)$",
    re.IGNORECASE | re.MULTILINE,
)
DEP_PAREN_RE = re.compile(
    r"\((?:depends[ \t]+on|after|requires|blocked[ \t]+by)[ \t]*:[ \t]*([^)\n]+)\)", re.IGNORECASE
)
LIST_ITEM_RE = re.compile(r"^[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?(.*)$")
LINK_RE = re.compile(r"\[([^\]]*)\]\(#([^)\s]+)\)")
HASH_RE = re.compile(r"(?<![\w&/])#([A-Za-z][\w\-/.]*)")
CODE_RE = re.compile(r"`([^`]+)`")
SPLIT_RE = re.compile(r"\s*(?:,|;|\band\b|&)\s*", re.IGNORECASE)
TAIL_RE = re.compile(r"\s+(?:—|–|-{1,2})\s+.*$|\s*\(.*$|:\s+.*$")
MARKUP_RE = re.compile(r"[*_`~]+|\[|\]\([^)]*\)|\]")
SPACES_RE = re.compile(r"\s+")
TITLE_PREFIX_RE = re.compile(r"^(.+?)\s*(?::|—|–|\s-\s)\s*.+$")


@dataclass
class GenerationResult:
    tasks_created: int = 0
    dependencies_created: int = 0
    tasks_total: int = 0
    milestones_created: int = 0
    dependencies_removed: int = 0
    milestones_removed: int = 0
    unresolved: list[dict] = field(default_factory=list)
    statements: dict | None = None  # what the text states, by node (PlanLayout.statements)
    incremental: bool = False  # only the changed sections were read again (generate_for_version)

    def as_dict(self) -> dict:
        return {
            "tasks_created": self.tasks_created,
            "dependencies_created": self.dependencies_created,
            "tasks_total": self.tasks_total,
            "milestones_created": self.milestones_created,
            "dependencies_removed": self.dependencies_removed,
            "milestones_removed": self.milestones_removed,
            "unresolved": self.unresolved,
        }


class _Node:
    __slots__ = (
        "id",
        "origin",
        "level",
        "title",
        "anchor",
        "order",
        "start",
        "end",
        "checked",
        "priority",
        "idx",
        "last",
        "parent",
        "children",
        "meta",
        "in_meta",
        "unit",
    )

    def __init__(self, node_id, origin, level, title, anchor, order, start, end, checked, idx):
        self.id = node_id
        self.origin = origin
        self.level = level
        self.title = title
        self.anchor = anchor
        self.order = order
        self.start = start
        self.end = end
        self.checked = checked
        self.priority = (
            DEFAULT_PRIORITY  # read from the rows for the nodes that get a task (_fill_priorities)
        )
        self.idx = idx
        self.last = idx
        self.parent = None
        self.children = []
        self.meta = False
        self.in_meta = False
        self.unit = None


_MARKUP_CHARS = frozenset("*_`~[]")


@functools.lru_cache(maxsize=1 << 16)  # a spec repeats its titles ("Motivation", "Summary", …)
def normalize(text: str) -> str:
    if _MARKUP_CHARS.intersection(text):
        text = MARKUP_RE.sub("", text)
    return " ".join(text.split()).strip(".:;,!").strip().lower()


def estimate_complexity(*, chars: int, checklist_items: int, nested: bool, broad: bool) -> int:
    """1–10 from the section's size (doubling every 400 characters), its checklist, nesting, breadth."""
    size = 0 if chars < 400 else min(5, int(math.log2(chars / 400)) + 1)
    items = min(3, (checklist_items + 2) // 3)
    return max(1, min(10, 1 + size + items + (1 if nested else 0) + (1 if broad else 0)))


def _fetch(queryset) -> list[tuple]:
    """The rows of a values_list() queryset straight from the cursor: the ORM's per-row conversion costs
    ~10 µs a row and these columns need none (a nullable boolean comes back as 0 / 1 on SQLite, which
    compares and counts the same)."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


class _Tree:
    """A version's plan tree (its layout, without the nodes archived by hand), plus lookup tables."""

    def __init__(self, layout: Layout, exclude: frozenset[int] = frozenset()):
        heading = PlanNode.Origin.HEADING
        nodes: list[_Node] = []
        position: dict[int, _Node] = {}  # layout index → node
        ids, parents, flags = layout.ids, layout.parents, layout.flags
        for i in range(len(ids)):
            if exclude and ids[i] in exclude:
                continue
            f = flags[i]
            node = _Node(
                ids[i],
                "checklist" if f & CHECKLIST else heading,
                layout.levels[i],
                layout.titles[i],
                layout.anchors[i],
                i,
                layout.starts[i],
                layout.ends[i],
                bool(f & CHECKED) if f & HAS_CHECKED else None,
                len(nodes),
            )
            parent = position.get(parents[i])
            if parent is not None:
                node.parent = parent
                parent.children.append(node)
            node.meta = not f & CHECKLIST and _meta_title(node.title)
            position[i] = node
            nodes.append(node)
        self.nodes = nodes
        self.by_id = {n.id: n for n in nodes}
        for n in reversed(nodes):
            if n.children:
                n.last = max(n.last, n.children[-1].last)
        for n in nodes:  # document order = preorder: parents are settled before children
            p = n.parent
            n.in_meta = n.meta or (p is not None and p.in_meta)
            if n.in_meta:
                n.unit = None
            elif p is not None and p.unit is not None:
                n.unit = p.unit  # folded into the task of an enclosing leaf heading or checklist item
            elif n.origin == heading:
                has_sections = any(c.origin == heading and not c.meta for c in n.children)
                n.unit = None if has_sections else n
            else:
                n.unit = n
        self.units = [n for n in nodes if n.unit is n]
        self.unit_idx = [n.idx for n in self.units]
        self.starts = [n.start for n in nodes]
        self._lookups = None

    # -- structure ---------------------------------------------------------------------------
    def units_in(self, node: _Node) -> list[_Node]:
        """The work units a node stands for: its own task, or every task of its subtree."""
        if node.unit is not None:
            return [node.unit]
        lo = bisect.bisect_left(self.unit_idx, node.idx)
        hi = bisect.bisect_right(self.unit_idx, node.last)
        return self.units[lo:hi]

    def owner(self, node: _Node | None) -> _Node | None:
        while node is not None and node.in_meta:
            node = node.parent
        return node

    def innermost(self, pos: int) -> _Node | None:
        i = bisect.bisect_right(self.starts, pos) - 1
        node = self.nodes[i] if i >= 0 else None
        while node is not None and node.end <= pos:
            node = node.parent
        return node

    def contains(self, outer: _Node, inner: _Node) -> bool:
        return outer.idx <= inner.idx <= outer.last

    # -- references ----------------------------------------------------------------------------
    def _build_lookups(self):
        anchors: dict[str, _Node] = {}
        tails: dict[str, list[_Node]] = {}
        titles: dict[str, list[_Node]] = {}
        prefixes: dict[str, list[_Node]] = {}
        for n in self.nodes:
            if n.in_meta:
                continue
            anchors[n.anchor.lower()] = n
            tails.setdefault(n.anchor.rsplit("/", 1)[-1].lower(), []).append(n)
            norm = normalize(n.title)
            titles.setdefault(norm, []).append(n)
            if ":" in norm or "—" in norm or "–" in norm or " - " in norm:
                m = TITLE_PREFIX_RE.match(norm)
                if m:
                    prefixes.setdefault(m.group(1), []).append(n)
        self._lookups = (anchors, tails, titles, prefixes)

    def resolve(self, ref: str, owner: _Node | None) -> _Node | None:
        """The section a reference names; never the owner itself nor a section containing it."""
        if self._lookups is None:
            self._build_lookups()
        anchors, tails, titles, prefixes = self._lookups
        ref = ref.strip()
        candidates: list[_Node] = []
        m = LINK_RE.search(ref)
        key = (m.group(2) if m else ref.lstrip("#")).strip().lower()
        if key in anchors:
            candidates = [anchors[key]]
        if not candidates:
            candidates = tails.get(key, [])
        if not candidates:
            norm = normalize(m.group(1) if m else ref)
            candidates = titles.get(norm) or prefixes.get(norm) or []
            if not candidates and "-" in norm and " " not in norm:
                candidates = titles.get(norm.replace("-", " "), [])
            if not candidates:
                short = normalize(TAIL_RE.sub("", MARKUP_RE.sub("", ref)))
                if short and short != norm:
                    candidates = titles.get(short) or prefixes.get(short) or []
        if owner is not None:
            candidates = [c for c in candidates if not self.contains(c, owner)]
        if not candidates:
            return None
        if len(candidates) == 1 or owner is None:
            return candidates[0]
        # Duplicate titles: the nearest section before the reference, else the first one after it.
        before = [c for c in candidates if c.idx < owner.idx]
        return before[-1] if before else candidates[0]


def _split_refs(text: str) -> list[str]:
    """Items of one dependency line: links, #anchors and `code` first, then the rest split on , ; and."""
    refs: list[str] = []
    for m in LINK_RE.finditer(text):
        refs.append(m.group(0))
    text = LINK_RE.sub(" , ", text)
    for m in CODE_RE.finditer(text):
        refs.append(m.group(1))
    text = CODE_RE.sub(" , ", text)
    for m in HASH_RE.finditer(text):
        refs.append("#" + m.group(1))
    text = HASH_RE.sub(" , ", text)
    text = MARKUP_RE.sub("", text).strip().rstrip(".")
    for part in SPLIT_RE.split(text):
        part = part.strip()
        if part and part.lower() not in ("none", "n/a", "nothing", "-"):
            refs.append(part)
    return refs


def _list_items(text: str) -> list[str]:
    items = []
    for line in text.splitlines():
        m = LIST_ITEM_RE.match(line)
        if m and m.group(1).strip():
            items.append(m.group(1).strip())
    return items


def _following_list(source: str, pos: int) -> list[str]:
    """List items directly below a bare `Depends on:` line."""
    items = []
    length = len(source)
    while pos < length:
        end = source.find("\n", pos)
        end = length if end < 0 else end
        m = LIST_ITEM_RE.match(source, pos, end)
        if not m or not m.group(1).strip():
            break
        items.append(m.group(1).strip())
        pos = end + 1
    return items


def _item_ref(item: str) -> str:
    """An implementation-order item: its link, `code`, or its text minus a trailing explanation."""
    m = LINK_RE.search(item)
    if m:
        return m.group(0)
    m = CODE_RE.search(item)
    if m:
        return m.group(1)
    return item


class _Planner:
    """Collects logical edges "every unit of A after every unit of B" and expands them linearly."""

    def __init__(self, tree: _Tree):
        self.tree = tree
        self.edges: dict[tuple[str, str], str] = {}  # (dependent key, prerequisite key) → source
        self.gates: dict[int, _Node] = {}

    def after(self, dependent: _Node, prerequisite: _Node, source: str) -> None:
        tree = self.tree
        if tree.contains(prerequisite, dependent):
            return  # a section cannot wait for a section it belongs to
        prereqs = tree.units_in(prerequisite)
        if not prereqs:
            return
        prereq_ids = {u.id for u in prereqs}
        dependents = [u for u in tree.units_in(dependent) if u.id not in prereq_ids]
        if not dependents:
            return
        if len(dependents) * len(prereqs) <= len(dependents) + len(prereqs):
            for d in dependents:
                for p in prereqs:
                    self.edges.setdefault((f"node:{d.id}", f"node:{p.id}"), source)
            return
        gate = f"gate:{prerequisite.id}"
        self.gates[prerequisite.id] = prerequisite
        for p in prereqs:
            self.edges.setdefault((gate, f"node:{p.id}"), source)
        for d in dependents:
            self.edges.setdefault((f"node:{d.id}", gate), source)


DEP_KEYWORD_ENDINGS = (
    "depends on",
    "after",
    "requires",
    "prerequisite",
    "prerequisites",
    "blocked by",
    "dependencies",
)


def _dependency_lines(source: str, start: int = 0, end: int | None = None):
    """DEP_LINE_RE matches (at lines with a colon in source[start:end]), found fast: a full regex scan of
    3 MB costs ~40 ms in `re`, so visit only the colons (str.find runs at memchr speed), keep those
    preceded by a keyword, then match that line."""
    find = source.find
    rfind = source.rfind
    end = len(source) if end is None else end
    pos = find(":", start, end)
    last_line = -1
    while 0 <= pos < end:
        if source.startswith(":", pos + 1):  # "::" (paths in code) is never a dependency line
            pos = find(":", pos + 2)
            continue
        before = source[max(0, pos - 16) : pos].rstrip(" \t*_").lower()
        if before.endswith(DEP_KEYWORD_ENDINGS):
            line_start = rfind("\n", 0, pos) + 1
            if line_start != last_line:
                last_line = line_start
                line_end = find("\n", pos)
                m = DEP_LINE_RE.match(source, line_start, len(source) if line_end < 0 else line_end)
                if m:
                    yield m
        pos = find(":", pos + 1)


def _statements(
    tree: _Tree, source: str, regions: list[tuple[int, int]] | None = None, metas: Iterable[int] | None = None
) -> dict[int, list]:
    """What the text states, by the node whose own text states it (the innermost node around a line, or
    the meta section): a list of ["line" | "paren" | "items", [reference, …]] and ["order", [item, …]]
    (an implementation-order list). Resolving them against a tree (_resolve) gives the edges; kept per
    version (PlanLayout.statements), they are read again only for the sections that change. `regions`
    (character ranges) and `metas` (meta section ids) limit the reading; None: the whole text."""
    stated: dict[int, list] = {}
    ranges = [(0, len(source))] if regions is None else regions
    dep_line_owners: set[int] = set()
    for a, b in ranges:
        for m in _dependency_lines(source, a, b):
            node = tree.innermost(m.start())
            if node is None or (node.in_meta and ORDER_TITLE_RE.match(node.title)):
                continue
            dep_line_owners.add(node.id)
            rest = m.group(2).strip()
            refs = _split_refs(rest) if rest else [_item_ref(i) for i in _following_list(source, m.end() + 1)]
            stated.setdefault(node.id, []).append(["line", refs])
    for a, b in ranges:
        if source.find("(", a, b) != -1:
            for m in DEP_PAREN_RE.finditer(source, a, b):
                node = tree.innermost(m.start())
                if node is not None:
                    stated.setdefault(node.id, []).append(["paren", _split_refs(m.group(1))])
    if metas is None:
        meta_nodes = [n for n in tree.nodes if n.meta]
    else:
        meta_nodes = sorted(
            (tree.by_id[i] for i in metas if i in tree.by_id and tree.by_id[i].meta), key=lambda n: n.idx
        )
    for node in meta_nodes:
        body_start = source.find("\n", node.start, node.end)
        body = source[body_start + 1 : node.end] if body_start >= 0 else ""
        items = [_item_ref(i) for i in _list_items(body)]
        if ORDER_TITLE_RE.match(node.title):
            stated.setdefault(node.id, []).append(["order", items])
        elif node.id not in dep_line_owners:  # "Depends on:" lines inside were read above
            stated.setdefault(node.id, []).append(["items", items])
    return stated


def _resolve(tree: _Tree, statements: dict[int, list], planner: _Planner, unresolved: list[dict]) -> None:
    """Edges for what the text states: lines first, then parentheticals, then meta sections, each in
    document order."""
    text_src = TaskDependency.Source.TEXT
    stating = sorted((tree.by_id[i] for i in statements if i in tree.by_id), key=lambda n: n.idx)

    def target_of(ref: str, owner: _Node | None, said_in: _Node) -> _Node | None:
        target = tree.resolve(ref, owner)
        if target is None and len(unresolved) < MAX_UNRESOLVED_REPORTED:
            unresolved.append({"section": said_in.title, "anchor": said_in.anchor, "reference": ref[:200]})
        return target

    for kinds in (("line",), ("paren",), ("order", "items")):
        for node in stating:
            for kind, refs in statements[node.id]:
                if kind not in kinds:
                    continue
                owner = tree.owner(node)
                if kind != "order":
                    if owner is not None:
                        for ref in refs:
                            target = target_of(ref, owner, owner)
                            if target is not None:
                                planner.after(owner, target, text_src)
                    continue
                previous = None
                for item in refs:
                    target = target_of(item, owner, node)
                    if target is not None:
                        if previous is not None and previous is not target:
                            planner.after(target, previous, text_src)
                        previous = target


def _phases(tree: _Tree) -> list[_Node]:
    roots = [n for n in tree.nodes if n.parent is None and not n.in_meta]
    while len(roots) == 1 and roots[0].unit is None:
        roots = [c for c in roots[0].children if not c.in_meta]
    return [r for r in roots if tree.units_in(r)]


def _policy_dependencies(tree: _Tree, policy: str, planner: _Planner) -> None:
    src = TaskDependency.Source.POLICY
    if policy == PlanOrderPolicy.SIBLINGS:
        for prev, cur in itertools.pairwise(tree.units):
            planner.edges.setdefault((f"node:{cur.id}", f"node:{prev.id}"), src)
    elif policy == PlanOrderPolicy.PHASES:
        phases = _phases(tree)
        for prev, cur in itertools.pairwise(phases):
            planner.after(cur, prev, src)


def _unit_row(tree: _Tree, unit: _Node, source: str) -> dict:
    text = source[unit.start : unit.end]
    items = checked = 0
    nested = False
    for n in tree.nodes[unit.idx + 1 : unit.last + 1]:
        if n.origin == PlanNode.Origin.CHECKLIST and not n.in_meta:
            items += 1
            checked += bool(n.checked)
            if n.parent is not None and n.parent.origin == PlanNode.Origin.CHECKLIST:
                nested = True
    if unit.origin == PlanNode.Origin.CHECKLIST:
        done = bool(unit.checked) and checked == items
    else:
        done = items > 0 and checked == items
    return {
        "plan_node_id": unit.id,
        "title": (unit.title or unit.anchor or "Untitled")[:500],
        "body": text[:BODY_CAP],
        "kind": Task.Kind.WORK.value,
        "status": (Task.Status.DONE if done else Task.Status.TODO).value,
        "done": done,
        "priority": min(5, unit.priority),
        "complexity": estimate_complexity(
            chars=len(text),
            checklist_items=items,
            nested=nested,
            broad=unit.origin == PlanNode.Origin.HEADING and unit.level <= 1,
        ),
        "plan_order": unit.order,
        "source_key": f"node:{unit.id}",
    }


def _gate_row(tree: _Tree, node: _Node) -> dict:
    units = tree.units_in(node)
    return {
        "plan_node_id": node.id,
        "title": f"{node.title} — complete"[:500],
        "body": (
            f"Milestone: done when every task of “{node.title}” ({len(units)} tasks) is done. "
            "Never run by an agent."
        ),
        "kind": Task.Kind.MILESTONE.value,
        "status": Task.Status.TODO.value,
        "done": False,
        "priority": min(5, node.priority),
        "complexity": 1,
        "plan_order": units[-1].order if units else node.order,
        "source_key": f"gate:{node.id}",
    }


def _insert_tasks(rows: list[dict], *, project_id: int, actor_id: int | None) -> None:
    """INSERT … (ignoring conflicts on the source-key constraint) with one executemany.

    The ORM's bulk_create spends ~90% of its time preparing model instances and values; the rows
    here are plain, already-validated values, so they go straight to the driver.
    """
    if not rows:
        return
    now = timezone.now()
    fixed = {
        "project_id": project_id,
        "created_by_id": actor_id,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "learned_priority": 0.0,
        "attempts": 0,
        "rework_count": 0,
        "needs_review": False,
        "removed_from_spec": False,
    }
    names = [
        "plan_node_id",
        "title",
        "body",
        "kind",
        "status",
        "priority",
        "complexity",
        "plan_order",
        "source_key",
        "completed_at",
        *fixed,
    ]
    fixed_values = [_db_value(Task, name, value) for name, value in fixed.items()]
    done_at = _db_value(Task, "completed_at", now)
    params = [
        (
            r["plan_node_id"],
            r["title"],
            r["body"],
            r["kind"],
            r["status"],
            r["priority"],
            r["complexity"],
            r["plan_order"],
            r["source_key"],
            done_at if r["done"] else None,
            *fixed_values,
        )
        for r in rows
    ]
    _executemany(Task, names, params)


def _insert_edges(pairs: list[tuple[int, int, str]]) -> None:
    if not pairs:
        return
    now = _db_value(TaskDependency, "created_at", timezone.now())
    _executemany(
        TaskDependency,
        ["task_id", "depends_on_id", "source", "created_at"],
        [(t, d, src, now) for t, d, src in pairs],
    )


def _db_value(model, attname: str, value):
    field_obj = next(f for f in model._meta.concrete_fields if f.attname == attname)
    return field_obj.get_db_prep_save(value, connection)


def _executemany(model, attnames: list[str], params: list[tuple]) -> None:
    """Insert rows fast. PostgreSQL: COPY (no conflict is possible: the caller holds the project's row
    lock and inserted only keys it did not find). SQLite: one prepared INSERT OR IGNORE, executemany."""
    ops = connection.ops
    columns = {f.attname: f.column for f in model._meta.concrete_fields}
    cols = ", ".join(ops.quote_name(columns[a]) for a in attnames)
    table = ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        raw = getattr(cursor, "cursor", cursor)
        if connection.vendor == "postgresql" and hasattr(raw, "copy"):
            with raw.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in params:
                    copy.write_row(row)
            return
        placeholders = ", ".join(["%s"] * len(attnames))
        suffix = ops.on_conflict_suffix_sql([], OnConflict.IGNORE, [], []) or ""
        sql = (
            f"{ops.insert_statement(on_conflict=OnConflict.IGNORE)} {table} ({cols}) "
            f"VALUES ({placeholders}) {suffix}"
        )
        for i in range(0, len(params), 2000):
            cursor.executemany(sql, params[i : i + 2000])


def format_cycle(cycle_ids: list[int], titles: dict[int, str]) -> str:
    return " → ".join(f"{titles.get(i, '?')} (#{i})" for i in cycle_ids)


def find_cycle(edges: Iterable[tuple[int, int]]) -> list[int] | None:
    """A cycle in "task depends on task" edges, as [a, b, …, a] meaning a depends on b …, or None."""
    sorter = graphlib.TopologicalSorter()
    for task_id, dep_id in edges:
        sorter.add(task_id, dep_id)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        # graphlib lists each node as a predecessor (dependency) of the next: reverse for "depends on".
        return list(reversed(exc.args[1]))
    return None


def cycle_error(cycle: list[int], *, prefix: str) -> ApplicationError:
    titles = dict(Task.objects.filter(pk__in=set(cycle)).values_list("id", "title"))
    text = format_cycle(cycle, titles)
    return ApplicationError(
        f"{prefix}: {text}.", extra={"cycle": cycle, "cycle_titles": [titles.get(i, "?") for i in cycle]}
    )


def generate_tasks(
    *, blueprint: Blueprint, nodes: Iterable[PlanNode | int] | None = None, actor=None
) -> GenerationResult:
    """Create the tasks (and their dependencies) for the project's current plan tree, or for the subtrees
    of `nodes`.

    A constant number of queries whatever the size: read the tree (the active version's layout), the
    project's generated-task keys and its edges; bulk-create what is missing. Runs inside the caller's
    transaction (ingestion) or its own. A whole-tree generation records on the layout what each section
    states (PlanLayout.statements), for the next re-ingest.
    """
    with gc_paused(), transaction.atomic():
        project = Project.objects.select_for_update().get(pk=blueprint.project_id)  # serializes graph writers
        current = current_tree(project.pk)
        if current is None:
            return GenerationResult()
        tree = _Tree(current.layout, current.archived)
        result = _generate(
            project=project,
            blueprint=blueprint,
            tree=tree,
            source=current.text,
            statements=_statements(tree, current.text),
            nodes=nodes,
            actor=actor,
        )
        if nodes is None:
            PlanLayout.objects.filter(blueprint_id=current.blueprint_id).update(
                statements=result.statements, policy=project.plan_order_policy
            )
    return result


def generate_for_version(*, blueprint: Blueprint, project: Project, plan, actor=None) -> GenerationResult:
    """Tasks and dependencies for a version just ingested (`plan`: its blueprints.ingestion.TreePlan).

    Incremental when the previous version's tasks were generated for its whole tree with the same
    plan-order policy: what the text states is read again only in the sections that were added, changed
    or moved (and the meta sections around them, and nodes that entered or left a meta section); the
    other sections' statements are the previous version's. All of them are then resolved against the new
    tree (titles and structure may have changed), and what is missing is created. When the tree kept its
    shape and titles and the changed sections state nothing and stated nothing, nothing else is read.
    Otherwise the whole text is read. Either way the result is a whole generation's (idempotent)."""
    current = plan.current
    new = plan.new
    source = blueprint.source_text
    fresh = {new.ids[i] for i, j in enumerate(plan.matched) if j < 0}
    with gc_paused():
        if current is None or current.statements is None or current.policy != project.plan_order_policy:
            tree = _Tree(new)
            return _generate(
                project=project,
                blueprint=blueprint,
                tree=tree,
                source=source,
                statements=_statements(tree, source),
                nodes=None,
                actor=actor,
                fresh=fresh,
            )
        regions, restated, metas = _to_read_again(plan, len(source))
        previous: dict[str, list] = current.statements
        present = set(new.ids)
        restated_ids = {new.ids[i] for i in restated}
        kept = {int(k): v for k, v in previous.items() if int(k) in present and int(k) not in restated_ids}
        if (
            plan.aligned
            and plan.new.titles == plan.old.titles
            and not any(str(i) in previous for i in restated_ids)
            and not metas
            and not _states_anything(source, regions)
        ):
            return GenerationResult(statements=previous, incremental=True)  # nothing the text states changed
        tree = _Tree(new)
        statements = {**kept, **_statements(tree, source, regions, {new.ids[i] for i in metas})}
        result = _generate(
            project=project,
            blueprint=blueprint,
            tree=tree,
            source=source,
            statements=statements,
            nodes=None,
            actor=actor,
            fresh=fresh,
        )
        result.incremental = True
        return result


def _to_read_again(plan, length: int) -> tuple[list[tuple[int, int]], set[int], set[int]]:
    """For generate_for_version: the text regions to read again (the own text of the headings whose node,
    or one of their checklist items, was added, changed or moved), the nodes those regions belong to, and
    the meta sections whose whole section changed (ancestors of such nodes, or of removed ones) — as
    indexes into the new layout."""
    new, old = plan.new, plan.old
    flags, starts, parents, titles = new.flags, new.starts, new.parents, new.titles
    count = len(new)
    touched = [i for i, c in enumerate(new.changes) if c]
    if not plan.aligned:  # nodes that entered or left a meta section read their text differently
        old_in_meta = dict(zip(old.ids, _in_meta(old), strict=True))
        touched += [
            i for i, inside in enumerate(_in_meta(new)) if old_in_meta.get(new.ids[i], inside) != inside
        ]
    regions: dict[int, tuple[int, int]] = {}  # by heading (-1: the text before the first one)
    restated: set[int] = set()
    metas: set[int] = set()
    for i in touched:
        h = i
        while h >= 0 and flags[h] & CHECKLIST:
            h -= 1
        if h not in regions:
            j = h + 1
            while j < count and flags[j] & CHECKLIST:
                j += 1
            regions[h] = (starts[h] if h >= 0 else 0, starts[j] if j < count else length)
            restated.update(range(max(h, 0), j))
        metas.update(p for p in _ancestors(parents, i) if _is_meta(flags[p], titles[p]))
    if plan.removed:
        position = {node_id: i for i, node_id in enumerate(new.ids)}
        for j in plan.removed:
            for p in _ancestors(old.parents, j):
                if _is_meta(old.flags[p], old.titles[p]) and old.ids[p] in position:
                    metas.add(position[old.ids[p]])
    return sorted(regions.values()), restated | metas, metas


def _ancestors(parents: list[int], i: int):
    p = parents[i]
    while p >= 0:
        yield p
        p = parents[p]


def _is_meta(flags: int, title: str) -> bool:
    return not flags & CHECKLIST and _meta_title(title)


@functools.lru_cache(maxsize=1 << 16)
def _meta_title(title: str) -> bool:
    """A meta section's title ("Prerequisites", "Implementation order", …): read, never a task."""
    return len(title) < 40 and bool(META_TITLE_RE.match(title))


def _in_meta(layout: Layout) -> list[bool]:
    inside: list[bool] = []
    for f, title, p in zip(layout.flags, layout.titles, layout.parents, strict=True):
        inside.append(_is_meta(f, title) or (p >= 0 and inside[p]))
    return inside


def _states_anything(source: str, regions: list[tuple[int, int]]) -> bool:
    """Whether these regions have a dependency line or parenthetical (without building a tree)."""
    return any(True for a, b in regions for _ in _dependency_lines(source, a, b)) or any(
        DEP_PAREN_RE.search(source, a, b) for a, b in regions
    )


def _fill_priorities(nodes: list[_Node], fresh: set[int] | frozenset[int] = frozenset()) -> None:
    """The priority of each node that is about to get a task, from its row (fresh rows have the default)."""
    wanted = [n.id for n in nodes if n.id not in fresh]
    if wanted:
        priorities = {}
        for i in range(0, len(wanted), 5000):
            priorities.update(
                PlanNode.objects.filter(pk__in=wanted[i : i + 5000]).values_list("id", "priority")
            )
        for n in nodes:
            n.priority = priorities.get(n.id, n.priority)


def _generate(
    *,
    project: Project,
    blueprint: Blueprint,
    tree: _Tree,
    source: str,
    statements: dict[int, list],
    nodes,
    actor,
    fresh: set[int] | frozenset[int] = frozenset(),
) -> GenerationResult:
    with transaction.atomic():
        actor = actor if getattr(actor, "is_authenticated", False) else None
        result = GenerationResult()

        existing = dict(
            _fetch(
                Task.objects.filter(project=project).exclude(source_key="").values_list("source_key", "id")
            )
        )
        if nodes is None:
            wanted = tree.units
        else:
            selected = {getattr(n, "pk", n) for n in nodes}
            wanted = []
            for unit in tree.units:
                n = unit
                while n is not None and n.id not in selected:
                    n = n.parent
                if n is not None:
                    wanted.append(unit)
        actor_id = actor.pk if actor is not None else None
        missing = [u for u in wanted if f"node:{u.id}" not in existing]
        _fill_priorities(missing, fresh)
        new_rows = [_unit_row(tree, u, source) for u in missing]
        _insert_tasks(new_rows, project_id=project.pk, actor_id=actor_id)

        planner = _Planner(tree)
        _resolve(tree, statements, planner, result.unresolved)
        result.statements = {str(node_id): stated for node_id, stated in sorted(statements.items())}
        _policy_dependencies(tree, project.plan_order_policy, planner)

        # Milestones: only where both sides of the gate have tasks.
        present = set(existing).union(r["source_key"] for r in new_rows)
        new_gates = _missing_gates(tree, planner.gates, planner.edges, present, existing, fresh)
        _insert_tasks(new_gates, project_id=project.pk, actor_id=actor_id)
        if new_rows or new_gates:
            existing = dict(
                _fetch(
                    Task.objects.filter(project=project)
                    .exclude(source_key="")
                    .values_list("source_key", "id")
                )
            )
        result.tasks_created = len(new_rows) + len(new_gates)
        result.milestones_created = len(new_gates)

        wanted_edges: dict[tuple[int, int], str] = {}
        wanted_keys: list[tuple[str, str]] = []
        for (a, b), src in planner.edges.items():
            ta, tb = existing.get(a), existing.get(b)
            if ta is not None and tb is not None and ta != tb:
                wanted_edges.setdefault((ta, tb), src)
                wanted_keys.append((a, b))

        current = {
            (t, d): (pk, src)
            for pk, t, d, src in TaskDependency.objects.filter(task__project=project).values_list(
                "id", "task_id", "depends_on_id", "source"
            )
        }
        stale: list[int] = []
        if nodes is None:
            generated = (TaskDependency.Source.TEXT, TaskDependency.Source.POLICY)
            stale = [
                pk for pair, (pk, src) in current.items() if src in generated and pair not in wanted_edges
            ]
        to_add = [pair for pair in wanted_edges if pair not in current]
        if to_add or stale:
            stale_set = set(stale)
            stale_pairs = {pair for pair, (pk, _) in current.items() if pk in stale_set}
            _refuse_cycles([p for p in current if p not in stale_pairs] + to_add)
        if stale:
            stale_set = set(stale)
            mark_stale([t for (t, _), (pk, _) in current.items() if pk in stale_set])
            TaskDependency.objects.filter(pk__in=stale).delete()
        if nodes is None:
            # Milestones the graph no longer needs (policy changed, group shrank): they carry no work.
            needed = {k for (a, b) in wanted_keys for k in (a, b) if k.startswith("gate:")}
            orphans = [pk for key, pk in existing.items() if key.startswith("gate:") and key not in needed]
            if orphans:
                mark_dependents_stale(orphans)
                Task.objects.filter(pk__in=orphans, kind=Task.Kind.MILESTONE).delete()
                result.milestones_removed = len(orphans)
                gone = set(orphans)
                existing = {k: v for k, v in existing.items() if v not in gone}
        _insert_edges([(t, d, wanted_edges[(t, d)]) for t, d in to_add])
        mark_stale([t for t, _ in to_add])
        result.dependencies_created = len(to_add)
        result.dependencies_removed = len(stale)
        keys = {f"node:{u.id}" for u in tree.units} | {f"gate:{g}" for g in planner.gates}
        result.tasks_total = sum(1 for k in keys if k in existing)
        _record(result, project=project, blueprint=blueprint, actor=actor)
    return result


def _missing_gates(
    tree: _Tree,
    gates: dict[int, _Node],
    edges: Iterable[tuple[str, str]],
    present: set[str],
    existing: dict[str, int],
    fresh: set[int] | frozenset[int],
) -> list[dict]:
    """Rows for the milestone tasks the edges need that do not exist yet (both sides of a gate must have
    tasks)."""
    has_dependent: set[str] = set()
    has_prereq: set[str] = set()
    for a, b in edges:
        if b.startswith("gate:") and a in present:
            has_dependent.add(b)
        elif a.startswith("gate:") and b in present:
            has_prereq.add(a)
    keys = sorted((k for k in has_dependent & has_prereq if k not in existing), key=lambda k: int(k[5:]))
    nodes = [gates[int(key[5:])] for key in keys]
    _fill_priorities(nodes, fresh)
    return [_gate_row(tree, node) for node in nodes]


def _refuse_cycles(edges: list[tuple[int, int]]) -> None:
    cycle = find_cycle(edges)
    if cycle is not None:
        raise cycle_error(cycle, prefix="The spec's dependencies form a cycle")


def _record(result: GenerationResult, *, project: Project, blueprint: Blueprint, actor) -> None:
    if (
        result.tasks_created
        or result.dependencies_created
        or result.dependencies_removed
        or result.milestones_removed
    ):
        record_event(
            kind="tasks.generated",
            subject=blueprint,
            project=project,
            actor=actor,
            data={k: v for k, v in result.as_dict().items() if k != "unresolved"},
        )
        _notify(project.pk, "tasks generated")


def _notify(project_id: int, reason: str) -> None:
    project_changed.send_on_commit(project_id, reason)


def mark_spec_changes(*, changed_node_ids: Iterable[int] = (), removed_node_ids: Iterable[int] = ()) -> dict:
    """For re-ingestion: tasks of changed sections need review; tasks of removed ones are flagged."""
    changed = list(changed_node_ids)
    removed = list(removed_node_ids)
    flagged = Task.objects.filter(plan_node_id__in=changed).update(needs_review=True) if changed else 0
    gone = Task.objects.filter(plan_node_id__in=removed).update(removed_from_spec=True) if removed else 0
    return {"needs_review": flagged, "removed_from_spec": gone}
