"""Parse a blueprint's text into a flat, document-ordered list of plan nodes. Pure: no database.

Markdown (the normal case) is parsed by pulldown-cmark (through pyromark), so heading detection is
CommonMark-correct: ATX headings with optional closing #s, setext headings, headings inside block
quotes and list items; nothing inside fenced or indented code, HTML blocks or a YAML front matter
block at the very top of the document is a heading. pulldown-cmark reports UTF-8 byte ranges; we
keep every offset in bytes while building the tree and convert to character offsets once, at the
end, in one pass (identity when the text is ASCII).

Every heading is exactly one node; a heading nests under the nearest preceding heading of a
shallower level (so skipped levels nest too). A node's section is `source[start:end]`: from the
start of the heading's line to the start of the line of the next heading of the same or a shallower
level (or the end of the text). Checklist items (`- [ ]`, `* [x]`, `1. [ ]`, i.e. GFM task list
items) are task_spec nodes (origin "checklist") under their section (or under the enclosing
checklist item when nested), with their done state; their range is the list item's.

`level` is the Markdown heading level (1–6) for headings and parent level + 1 for checklist items;
`kind` comes from the node's depth in the tree: phase, epic, feature, story, then task_spec for
everything deeper (and for every checklist item).

`anchor` is the slug path of the node (`phase-1/auth/login`), de-duplicated among siblings with
-2, -3, … so it is unique within the blueprint and stable while the structure above it is.

`content_hash` covers the node's *own* text: for a heading, from its line to the next heading of
any level (its body without its subsections), so an edit deep in a section does not mark every
ancestor as changed; for a checklist item, the item's text. Re-ingest matches by anchor + hash.

Plain-text fallback (format "text"), used when the Markdown parse finds no heading and no checklist
item: a line is a section title when it stands alone (a blank line or the start of the text before
it) and is either
  - ALL CAPS (at least two letters, no lowercase letter, at most 100 characters) → level 1,
  - numbered like `1.`, `2.3` or `2.3.1` followed by a title → level = number of components,
  - a short line (at most 100 characters) ending with `:` → one level below the last title seen;
lines starting with `[ ]`, `[x]` (optionally after `-`, `*` or `N.`) are checklist items.
A text in which neither pass finds anything is "not a spec" and is refused.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import hashlib
import re
from dataclasses import dataclass, field

import pyromark
from django.utils.text import slugify

from autopilot.errors import ApplicationError
from blueprints.layout import CHECKED, HAS_CHECKED, UNIT, Layout
from blueprints.layout import CHECKLIST as ITEM

KINDS = ("phase", "epic", "feature", "story", "task_spec")
HEADING = "heading"
CHECKLIST = "checklist"
MAX_TITLE = 1000
MAX_SLUG = 80

_MARKDOWN = pyromark.Markdown(options=pyromark.Options.ENABLE_TASKLISTS)
_LEVELS = {"H1": 1, "H2": 2, "H3": 3, "H4": 4, "H5": 5, "H6": 6}
_FRONT_MATTER_CLOSE = re.compile(rb"^(?:---|\.\.\.)[ \t]*$", re.MULTILINE)
_ATX_LINE = re.compile(rb"#{1,6}(?:[ \t\r\n]|\Z)")  # at a line start: an ATX heading at column 0


class ParsedNode:
    """One node of the parsed tree. `parent` is an index into ParsedDocument.nodes (or None)."""

    __slots__ = (
        "index",
        "parent",
        "depth",
        "level",
        "kind",
        "origin",
        "title",
        "anchor",
        "start",
        "end",
        "own_end",
        "body_start",
        "content_hash",
        "body_hash",
        "checked",
        "unit",
    )

    def __init__(self, index, parent, depth, level, origin, title, start, checked=None):
        self.index = index
        self.parent = parent
        self.depth = depth
        self.level = level
        self.kind = KINDS[min(depth, 5) - 1] if origin == HEADING else "task_spec"
        self.origin = origin
        self.title = title
        self.anchor = ""
        self.start = start
        self.end = start
        self.own_end = start
        self.body_start = start
        self.content_hash = ""
        self.body_hash = ""
        self.checked = checked
        self.unit = False  # a heading on a line that starts with `#` (an ATX heading at column 0)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return (
            f"<ParsedNode {self.index} {self.origin} h{self.level} {self.anchor!r} [{self.start}:{self.end}]>"
        )


@dataclass
class ParsedDocument:
    format: str
    nodes: list[ParsedNode]
    front_matter_end: int = 0  # character offset where the body starts (0 without front matter)
    headings: int = 0
    checklist_items: int = 0
    stats: dict = field(default_factory=dict)
    layout: Layout | None = None  # the nodes as columns (an incremental parse gives only these)
    sources: list[int] | None = None  # incremental: per node, the previous node it was taken over from, or -1
    copied: list[tuple[int, int, int]] | None = None  # incremental: (offset, previous start, previous end) of
    # each stretch of text that is the previous version's

    def to_layout(self) -> Layout:
        if self.layout is None:
            self.layout = Layout.from_nodes(self.nodes)
        return self.layout

    def __len__(self) -> int:
        return len(self.layout) if self.layout is not None else len(self.nodes)


# --- Validation ----------------------------------------------------------------------------------


def decode_source(text: str | bytes, *, max_bytes: int) -> tuple[str, bytes]:
    """Check raw input and return (text, its UTF-8 bytes). Raises ApplicationError naming the problem.

    A UTF-8 byte order mark is dropped and line endings become `\n` (the stored text, and every offset
    into it, use `\n`)."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        data = bytes(text)
        if len(data) > max_bytes:
            raise ApplicationError(
                _too_big(len(data), max_bytes), extra={"size_bytes": len(data), "limit": max_bytes}
            )
        nul = data.find(b"\x00")
        if nul != -1:
            raise ApplicationError(
                f"The blueprint looks binary: it contains a NUL byte at byte offset {nul}. "
                "Give a Markdown or text file.",
                extra={"offset": nul},
            )
        try:
            decoded = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApplicationError(
                f"The blueprint is not valid UTF-8: invalid byte 0x{data[exc.start]:02x} "
                f"at byte offset {exc.start} "
                f"({exc.reason}).",
                extra={"offset": exc.start},
            ) from exc
        if decoded.startswith("\ufeff"):
            decoded = decoded[1:]
            data = data[3:]
    elif isinstance(text, str):
        decoded = text
        if len(decoded) > max_bytes:  # cheap pre-check: a character is at least one byte
            raise ApplicationError(_too_big(len(decoded), max_bytes), extra={"limit": max_bytes})
        try:
            data = decoded.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ApplicationError(
                f"The blueprint contains an unpaired surrogate at character offset {exc.start}; "
                "it is not valid Unicode text.",
                extra={"offset": exc.start},
            ) from exc
        if len(data) > max_bytes:
            raise ApplicationError(
                _too_big(len(data), max_bytes), extra={"size_bytes": len(data), "limit": max_bytes}
            )
        nul = decoded.find("\x00")
        if nul != -1:
            raise ApplicationError(
                f"The blueprint looks binary: it contains a NUL character at character offset {nul}.",
                extra={"offset": nul},
            )
    else:
        raise ApplicationError(f"The blueprint must be text or bytes, not {type(text).__name__}.")
    if "\r" in decoded:  # one line-ending convention, so a paste (CRLF from a browser) matches an upload
        decoded = decoded.replace("\r\n", "\n").replace("\r", "\n")
        data = decoded.encode("utf-8")
    if not decoded or decoded.isspace():
        raise ApplicationError("The blueprint is empty (nothing but whitespace).")
    return decoded, data


def _too_big(size: int, limit: int) -> str:
    return (
        f"The blueprint is too large: {size:,} bytes, over the limit of {limit:,} bytes "
        "(AUTOPILOT_MAX_BLUEPRINT_BYTES)."
    )


NOT_A_SPEC = (
    "This does not look like a spec: it has no Markdown headings ('# Title' or a title underlined "
    "with === / ---), no checklist items ('- [ ] …'), and no plain-text section titles (ALL CAPS lines, "
    "numbered '1.2 Title' lines or 'Title:' lines standing alone)."
)


# --- Entry point -----------------------------------------------------------------------------------


def parse_blueprint(
    text: str, data: bytes | None = None, *, format: str | None = None, previous: PreviousParse | None = None
) -> ParsedDocument:
    """Parse `text` (with `data` = its UTF-8 encoding, if the caller has it) into a ParsedDocument.

    `format`: "markdown", "text" or None (Markdown, falling back to text when Markdown finds nothing).
    `previous`: the previous version's text and nodes; unchanged units (see parse_incremental) are then taken
    over instead of re-parsed, with the same result as a full parse.
    Raises ApplicationError when the text is not a spec at all.
    """
    if data is None:
        data = text.encode("utf-8")
    with gc_paused():
        return _parse(text, data, format, previous)


@contextlib.contextmanager
def gc_paused():
    """Thousands of small objects and no reference cycles: the cyclic GC would only rescan the heap
    (measured: a third of the time of an incremental parse). Re-entrant."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse(text: str, data: bytes, format: str | None, previous: PreviousParse | None) -> ParsedDocument:
    if previous is not None and format in (None, "markdown"):
        doc = parse_incremental(text, data, previous)
        if doc is not None and len(doc):
            return doc
    doc = None
    if format in (None, "markdown"):
        doc = _parse_markdown(text, data)
        if not doc.nodes and format is None:
            doc = None
    if doc is None:
        doc = _parse_text(text)
    if not doc.nodes:
        raise ApplicationError(NOT_A_SPEC)
    return doc


# --- Markdown --------------------------------------------------------------------------------------


def front_matter_length(data: bytes) -> int:
    """Byte length of a YAML front matter block at the very top (`---` … `---` or `...`), else 0."""
    if not (data.startswith(b"---\n") or data.startswith(b"---\r\n")):
        return 0
    first_nl = data.index(b"\n") + 1
    if data[first_nl : first_nl + 1] in (b"\n", b"\r"):
        return 0  # `---` followed by a blank line is a thematic break, not front matter
    match = _FRONT_MATTER_CLOSE.search(data, first_nl)
    if match is None:
        return 0
    end = match.end()
    if data[end : end + 2] == b"\r\n":
        return end + 2
    if data[end : end + 1] == b"\n":
        return end + 1
    return end


def _parse_markdown(
    text: str, data: bytes, markdown: pyromark.Markdown = _MARKDOWN, *, anchors: bool = True
) -> ParsedDocument:
    skip = front_matter_length(data)
    body = text if skip == 0 else data[skip:].decode("utf-8")

    nodes: list[ParsedNode] = []
    append = nodes.append
    heading_stack: list[ParsedNode] = []  # open headings, shallowest first
    item_stack: list = []  # per open list item: its ParsedNode if it is a checklist item, else None
    heading_starts: list[int] = []  # byte offset of each heading's line start, in order
    heading_nodes: list[ParsedNode] = []
    item_ends: list[tuple[ParsedNode, int]] = []
    title_parts: list[str] | None = None  # collecting the title of the current heading / checklist item
    title_node: ParsedNode | None = None
    headings = checklist = 0
    rfind = data.rfind

    for ev, rng in markdown.events_with_range(body):
        if ev.__class__ is str:  # SoftBreak, HardBreak, Rule
            if title_parts is not None and ev in ("SoftBreak", "HardBreak"):
                title_parts.append(" ")
            continue
        start_tag = ev.get("Start")
        if start_tag is not None:
            if start_tag.__class__ is dict:
                heading = start_tag.get("Heading")
                if heading is not None:
                    level = _LEVELS[heading["level"]]
                    pos = rfind(b"\n", 0, rng["start"] + skip) + 1  # start of the heading's line
                    while heading_stack and heading_stack[-1].level >= level:
                        heading_stack.pop()
                    parent = heading_stack[-1] if heading_stack else None
                    node = ParsedNode(
                        len(nodes),
                        parent.index if parent else None,
                        parent.depth + 1 if parent else 1,
                        level,
                        HEADING,
                        "",
                        pos,
                    )
                    append(node)
                    node.body_start = rng["end"] + skip
                    node.unit = _ATX_LINE.match(data, pos) is not None
                    heading_stack.append(node)
                    heading_starts.append(pos)
                    heading_nodes.append(node)
                    headings += 1
                    title_parts, title_node = [], node
                elif title_node is not None and title_node.origin == CHECKLIST and "List" in start_tag:
                    _finish_title(title_node, title_parts)
                    title_parts = title_node = None
            elif start_tag == "Item":
                item_stack.append(rng)
            continue
        end_tag = ev.get("End")
        if end_tag is not None:
            if end_tag == "Item":
                entry = item_stack.pop()
                if entry.__class__ is ParsedNode:
                    if title_node is entry:
                        _finish_title(entry, title_parts)
                        title_parts = title_node = None
                    item_ends.append((entry, rng["end"] + skip))
            elif end_tag.__class__ is dict and "Heading" in end_tag and title_node is not None:
                _finish_title(title_node, title_parts)
                title_parts = title_node = None
            elif end_tag == "Paragraph" and title_node is not None and title_node.origin == CHECKLIST:
                _finish_title(title_node, title_parts)
                title_parts = title_node = None
            continue
        if title_parts is not None:
            piece = ev.get("Text")
            if piece is None:
                piece = ev.get("Code")
            if piece is not None:
                title_parts.append(piece)
            continue
        marker = ev.get("TaskListMarker")
        if marker is not None and item_stack:
            rng_item = item_stack[-1]
            enclosing = next((e for e in reversed(item_stack[:-1]) if e.__class__ is ParsedNode), None)
            parent = enclosing or (heading_stack[-1] if heading_stack else None)
            node = ParsedNode(
                len(nodes),
                parent.index if parent else None,
                parent.depth + 1 if parent else 1,
                parent.level + 1 if parent else 1,
                CHECKLIST,
                "",
                rng_item["start"] + skip,
                checked=bool(marker),
            )
            append(node)
            item_stack[-1] = node
            checklist += 1
            title_parts, title_node = [], node

    total = len(data)
    # Heading sections: each ends where the next heading of the same or a shallower level starts.
    # Own text: up to the next heading of any level.
    open_stack: list[ParsedNode] = []
    for pos, node in zip(heading_starts, heading_nodes, strict=True):
        while open_stack and open_stack[-1].level >= node.level:
            open_stack.pop().end = pos
        open_stack.append(node)
    for node in open_stack:
        node.end = total
    for i, node in enumerate(heading_nodes):
        node.own_end = heading_starts[i + 1] if i + 1 < len(heading_starts) else total
    for node, end in item_ends:
        node.end = node.own_end = end
    # A checklist item never reaches past its parent's section (odd nestings of headings in items).
    for node in nodes:
        if node.origin == CHECKLIST and node.parent is not None:
            parent_end = nodes[node.parent].end
            if node.end > parent_end:
                node.end = node.own_end = max(node.start, parent_end)

    blake = hashlib.blake2b
    for node in nodes:  # trailing blank lines are not content: moving a section must not change its hash
        node.content_hash = blake(data[node.start : node.own_end].rstrip(), digest_size=16).hexdigest()
        if node.origin == HEADING and node.body_start < node.own_end:
            body = data[node.body_start : node.own_end].strip()
            if body:
                node.body_hash = blake(body, digest_size=16).hexdigest()
    if anchors:
        _assign_anchors(nodes)
    _bytes_to_chars(text, data, nodes)
    fm_chars = len(data[:skip].decode("utf-8")) if skip else 0
    return ParsedDocument("markdown", nodes, fm_chars, headings, checklist)


def _finish_title(node: ParsedNode, parts: list[str]) -> None:
    title = " ".join("".join(parts).split())
    node.title = title[:MAX_TITLE]


def _bytes_to_chars(text: str, data: bytes, nodes: list[ParsedNode]) -> None:
    """Convert every node's byte offsets to character offsets in one sorted pass."""
    if len(text) == len(data):  # ASCII: bytes are characters
        return
    positions = set()
    for node in nodes:
        positions.add(node.start)
        positions.add(node.end)
        positions.add(node.own_end)
    mapping = {}
    prev_b = prev_c = 0
    for pos in sorted(positions):
        prev_c += len(data[prev_b:pos].decode("utf-8"))
        prev_b = pos
        mapping[pos] = prev_c
    for node in nodes:
        node.start = mapping[node.start]
        node.end = mapping[node.end]
        node.own_end = mapping[node.own_end]


def _assign_anchors(nodes: list[ParsedNode]) -> None:
    parents = [-1 if node.parent is None else node.parent for node in nodes]
    flags = [ITEM if node.origin == CHECKLIST else 0 for node in nodes]
    for node, anchor in zip(nodes, _anchors(parents, [node.title for node in nodes], flags), strict=True):
        node.anchor = anchor


# --- Incremental re-parse -------------------------------------------------------------------------


@dataclass
class PreviousParse:
    """A previous version: its text and its plan tree (blueprints.layout.Layout)."""

    text: str
    layout: Layout


def _atx_level(text: str, pos: int) -> int:
    """The level of an ATX heading line starting at column 0 at `pos` (`#`…`######` followed by a space,
    a tab, a newline or the end of the text), else 0. Says nothing about code blocks around it."""
    if pos and text[pos - 1] != "\n":
        return 0
    n = len(text)
    end = pos
    while end < n and end - pos < 7 and text[end] == "#":
        end += 1
    level = end - pos
    if not 1 <= level <= 6:
        return 0
    return level if end == n or text[end] in " \t\n" else 0


def _common_prefix(a: str, i: int, b: str, j: int) -> int:
    """Length of the common prefix of a[i:] and b[j:]: galloping, then bisecting, with str.startswith
    (memcmp speed), so a long equal stretch costs a few dozen calls."""
    limit = min(len(a) - i, len(b) - j)
    lo, step = 0, 4096
    while lo < limit:
        size = min(step, limit - lo)
        if not a.startswith(b[j + lo : j + lo + size], i + lo):
            hi = lo + size  # a mismatch in [lo, hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if a.startswith(b[j + lo : j + mid], i + lo):
                    lo = mid
                else:
                    hi = mid
            return lo
        lo += size
        step *= 2
    return limit


def parse_incremental(text: str, data: bytes, previous: PreviousParse) -> ParsedDocument | None:
    """Parse `text` reusing the previous version's nodes for unchanged units.

    A *unit* is the text between two consecutive lines that were ATX headings (any level) at column 0
    in the previous parse (or the start / end of the text). Such a line closes every open block, so a
    unit parses the same wherever it stands, as long as the parser is not inside a fenced code block
    or an HTML block when it reaches the unit (the only contexts where a `#` line at column 0 is not a
    heading). The new text is walked from the top, always from a position where that holds: a run of
    units whose text is byte-for-byte the previous text there (found with a galloping comparison, not
    unit by unit) is taken over (its nodes' own data: title, level, hashes, offsets within the unit,
    checklist nesting); elsewhere the walk looks for the next `#` line where a previous unit starts
    again, and parses the stretch before it on its own, together with that line, accepted only when
    the line comes out as a heading (otherwise the stretch grows). What depends on the rest of the
    document is then recomputed for every node in one pass over plain lists: parents, depth, kind, a
    checklist item's level, section ends, and anchors (taken over as they are when the tree's shape
    and titles did not change). Link reference definitions are document-wide: a stretch is parsed with
    every label of the whole document defined, and a unit whose text mentions a label that was added
    or removed since the previous version is parsed again rather than taken over. Returns None when an
    incremental parse does not apply (no previous nodes, front matter). The result is the full parse's,
    as a Layout (doc.layout) with, per node, the index of the previous node it was taken over from
    (doc.sources, -1 for a parsed one).
    """
    old_text = previous.text
    if not len(previous.layout) or front_matter_length(data) or old_text.startswith("---"):
        return None
    doc = _parse_incremental(text, previous, None)
    if doc.stats.pop("labels_changed"):  # rare: a definition was added or removed; check every unit's uses
        changed = _labels(text) ^ _labels(old_text)
        if changed:
            doc = _parse_incremental(text, previous, changed)
            doc.stats.pop("labels_changed")
    return doc


def _parse_incremental(
    text: str, previous: PreviousParse, changed_labels: frozenset[str] | None
) -> ParsedDocument:
    """One walk of parse_incremental. Without `changed_labels` (the labels defined in only one of the two
    versions), the labels defined in the re-parsed stretches are compared with those of the previous units
    not taken over: the same sets mean the document defines the same labels (units taken over define
    the same ones in both), else stats["labels_changed"] asks to compare the labels of the whole texts."""
    old_text = previous.text
    old = previous.layout
    o_starts, o_ends, o_flags, o_parents = old.starts, old.ends, old.flags, old.parents
    n, old_n = len(text), len(old_text)
    bounds = sorted({s for s, f in zip(o_starts, o_flags, strict=True) if f & UNIT} | {0})
    bounds.append(old_n)
    last_unit = len(bounds) - 1  # bounds[k], bounds[k + 1] is unit k
    old_checklists = [i for i, f in enumerate(o_flags) if f & ITEM]
    first_lines: dict[tuple[str, int], list[int]] = {}  # built on first use: (first line, length) → units

    # A stretch is parsed first as if it defined every label it uses (a reference to a label defined
    # elsewhere stays literal text). Only what we keep of its inline content, titles, can depend on that:
    # when a reference was looked up and a title of the stretch has a bracket (or it has checklist
    # items), it is parsed again with the labels of the whole new text, computed once.
    asked: list[str] = []
    markdown = pyromark.Markdown(
        options=pyromark.Options.ENABLE_TASKLISTS,
        broken_link_callback=lambda link: asked.append(link["reference"]),
    )
    new_labels: list[frozenset[str]] = []
    maybe_defined: list[frozenset[str]] = []

    def may_be_defined(references: list[str]) -> bool:
        """False when no `[label]:` for these references occurs in the new text at all (cheap, exact)."""
        if not maybe_defined:
            maybe_defined.append(_label_candidates(text))
        return any(_label(reference) in maybe_defined[0] for reference in references)

    def parse_with_all_labels(piece: str) -> ParsedDocument:
        if not new_labels:
            new_labels.append(_labels(text))
        labels = new_labels[0]
        with_labels = pyromark.Markdown(
            options=pyromark.Options.ENABLE_TASKLISTS,
            broken_link_callback=lambda link: ("", "") if _label(link["reference"]) in labels else None,
        )
        return _parse_markdown(piece, piece.encode("utf-8"), with_labels, anchors=False)

    def valid_end(stop: int, b: int) -> bool:
        """A unit ending at previous offset `b` can end at `stop` in the new text."""
        return stop == n or (b < old_n and stop < n and _atx_level(text, stop) > 0)

    def mentions_changed_label(a: int, b: int) -> bool:
        folded = " ".join(text[a:b].casefold().split())
        return any(label in folded for label in changed_labels)

    def can_take(q: int, k: int) -> bool:
        """Unit k can be taken over at new offset q."""
        a, b = bounds[k], bounds[k + 1]
        stop = q + b - a
        return (
            stop <= n
            and valid_end(stop, b)
            and text.startswith(old_text[a:b], q)
            and not (changed_labels and mentions_changed_label(q, stop))
        )

    def unit_at(q: int, hints: tuple[int, ...], last_end: int, *, anywhere: bool = True) -> int:
        """A previous unit whose text is the one at `q`, or -1: the hinted ones first, then (`anywhere`)
        any with this first line that ends at one of the next few `#` lines (specs repeat boilerplate
        sections: of equal units, the first one after the last unit taken over, so the units not taken
        over are the ones that really changed). Missing one only means parsing more."""
        line_end = text.find("\n", q)
        line = text[q : n if line_end == -1 else line_end]
        for k in hints:
            if 0 <= k < last_unit and old_text.startswith(line, bounds[k]) and can_take(q, k):
                return k
        if not anywhere:
            return -1
        if not first_lines:
            for k in range(last_unit):
                a, b = bounds[k], bounds[k + 1]
                e = old_text.find("\n", a, b)
                first_lines.setdefault((old_text[a : b if e == -1 else e], b - a), []).append(k)
        same: list[int] = []
        stop = q
        for _ in range(8):
            stop = next_candidate(stop)
            same.extend(first_lines.get((line, stop - q), ()))
            if stop >= n:
                break
        for k in sorted(same, key=lambda k: (bounds[k] < last_end, k)):
            if k not in hints and can_take(q, k):
                return k
        return -1

    def next_candidate(q: int) -> int:
        """The next line after offset q that looks like an ATX heading at column 0, else n."""
        while True:
            q = text.find("\n#", q)
            if q == -1:
                return n
            q += 1
            if _atx_level(text, q):
                return q

    starts: list[int] = []
    ends: list[int] = []
    levels: list[int] = []
    flags: list[int] = []
    titles: list[str] = []
    hashes: list[str] = []
    bodies: list[str] = []
    item_parent: list[int] = []  # per node: index of its enclosing checklist item, or -1 (nearest heading)
    sources: list[int] = []
    kept = bytearray(last_unit)
    reused_units = parsed_units = parsed_chars = 0
    copied: list[
        tuple[int, int, int]
    ] = []  # (new offset, previous start, previous end) of the text taken over
    stretch_labels: set[str] = set()

    def keep(bi: int, bj: int, pos: int) -> int:
        """Take over units bi … bj-1 at new offset `pos`; returns how many units were taken (fewer when a
        checklist item does not fit its unit, which is never expected: those are parsed instead)."""
        a, b = bounds[bi], bounds[bj]
        lo = bisect.bisect_left(o_starts, a)
        hi = len(o_starts) if bj == last_unit else bisect.bisect_left(o_starts, b)
        c_lo = bisect.bisect_left(old_checklists, lo)
        c_hi = bisect.bisect_left(old_checklists, hi)
        for c in old_checklists[c_lo:c_hi]:
            p = o_parents[c]
            if o_ends[c] > b or (p >= 0 and p < lo and o_flags[p] & ITEM):
                bj = bisect.bisect_right(bounds, o_starts[c]) - 1
                if bj <= bi:
                    return 0
                return keep(bi, bj, pos)
        shift = pos - a
        base = len(starts)
        if shift:
            starts.extend([s + shift for s in o_starts[lo:hi]])
            ends.extend([e + shift for e in o_ends[lo:hi]])
        else:
            starts.extend(o_starts[lo:hi])
            ends.extend(o_ends[lo:hi])
        levels.extend(old.levels[lo:hi])
        flags.extend(o_flags[lo:hi])
        titles.extend(old.titles[lo:hi])
        hashes.extend(old.hashes[lo:hi])
        bodies.extend(old.bodies[lo:hi])
        sources.extend(range(lo, hi))
        item_parent.extend([-1] * (hi - lo))
        for c in old_checklists[c_lo:c_hi]:
            p = o_parents[c]
            if p >= lo and o_flags[p] & ITEM:
                item_parent[base + c - lo] = base + p - lo
        kept[bi:bj] = b"\x01" * (bj - bi)
        copied.append((pos, a, b))
        return bj - bi

    def parse_stretch(pos: int, q: int) -> ParsedDocument | None:
        """Parse text[pos:q] with the line at q (if any) as a sentinel; None when that line is not a
        heading there (the stretch opened a block that swallowed it)."""
        if q >= n:
            end = n
        else:
            line_end = text.find("\n", q)
            end = n if line_end == -1 else line_end + 1
        piece = text[pos:end]
        asked.clear()
        doc = _parse_markdown(piece, piece.encode("utf-8"), markdown, anchors=False)
        # (The sentinel line's title does not count: it is parsed again with what follows it.)
        if (
            asked
            and any(
                (node.origin == CHECKLIST or "[" in node.title) and node.start < q - pos for node in doc.nodes
            )
            and may_be_defined(asked)
        ):
            doc = parse_with_all_labels(piece)
        if q >= n:
            return doc
        last = doc.nodes[-1] if doc.nodes else None
        if last is not None and last.origin == HEADING and last.start == q - pos:
            doc.nodes.pop()
            doc.headings -= 1
            return doc
        return None

    pos = 0
    bi = 0  # the previous unit aligned with `pos`, or -1 (none)
    last_end = 0  # previous offset where the last unit taken over ends
    while pos < n:
        if bi >= 0 and bi < last_unit:
            limit = bounds[bi] + _common_prefix(text, pos, old_text, bounds[bi])
            bj = bisect.bisect_right(bounds, limit) - 1
            while bj > bi and not valid_end(pos + bounds[bj] - bounds[bi], bounds[bj]):
                bj -= 1
            if changed_labels and bj > bi:  # one unit at a time, each checked for the changed labels
                bj = bi + 1 if can_take(pos, bi) else bi
            if bj > bi:
                taken = keep(bi, bj, pos)
                if taken:
                    reused_units += taken
                    pos += bounds[bi + taken] - bounds[bi]
                    bi += taken
                    last_end = bounds[bi]
                    continue
        if bi == last_unit and pos == n:
            break
        k = unit_at(pos, (bi + 1, bi + 2) if bi >= 0 else (), last_end, anywhere=bi < 0) if pos < n else -1
        if k >= 0:
            bi = k
            continue
        # Parse a stretch on its own, up to the next line where a previous unit can be taken over, with
        # that line as a sentinel. Inside a block that swallowed the line (an opened fence): grow the
        # stretch by 1, 2, 4, … such lines, so the parsing done is at most twice the stretch accepted.
        hints = (bi, bi + 1, bi + 2) if bi >= 0 else ()
        grow = 0
        q = pos
        while True:
            k = -1
            skip = grow
            while True:
                q = next_candidate(q)
                if q >= n:
                    break
                k = unit_at(q, hints, last_end)
                if k >= 0:
                    if not skip:
                        break
                    skip -= 1
            doc = parse_stretch(pos, q)
            if doc is not None:
                break
            grow = grow * 2 or 1
        base = len(starts)
        for node in doc.nodes:
            parent = node.parent
            item_parent.append(
                parent + base if parent is not None and doc.nodes[parent].origin == CHECKLIST else -1
            )
            starts.append(node.start + pos)
            ends.append(node.end + pos)
            levels.append(node.level)
            flags.append(_flags(node))
            titles.append(node.title)
            hashes.append(node.content_hash)
            bodies.append(node.body_hash)
            sources.append(-1)
        parsed_units += 1
        parsed_chars += q - pos
        if changed_labels is None and "]:" in text[pos:q]:
            stretch_labels |= _labels(text[pos:q])
        pos = q
        bi = k if q < n else -1
    labels_changed = False
    if changed_labels is None:
        old_labels: set[str] = set()
        k = kept.find(0)
        while k != -1:
            if old_text.find("]:", bounds[k], bounds[k + 1]) != -1:
                old_labels |= _labels(old_text[bounds[k] : bounds[k + 1]])
            k = kept.find(0, k + 1)
        labels_changed = old_labels != stretch_labels
    parents, depths = _stitch(flags, levels, starts, ends, item_parent, n)
    if (
        len(parents) == len(old)
        and parents == o_parents
        and titles == old.titles
        and all((f ^ g) & ITEM == 0 for f, g in zip(flags, o_flags, strict=True))
    ):
        anchors = list(old.anchors)  # same shape, same titles: same anchors
    else:
        anchors = _anchors(parents, titles, flags, _known_slugs(old))
    layout = Layout(
        parents=parents,
        starts=starts,
        ends=ends,
        levels=levels,
        depths=depths,
        flags=flags,
        titles=titles,
        anchors=anchors,
        hashes=hashes,
        bodies=bodies,
    )
    checklist = sum(1 for f in flags if f & ITEM)
    return ParsedDocument(
        "markdown",
        [],
        0,
        len(flags) - checklist,
        checklist,
        layout=layout,
        sources=sources,
        copied=copied,
        stats={
            "incremental": True,
            "reused_units": reused_units,
            "parsed_units": parsed_units,
            "parsed_chars": parsed_chars,
            "labels_changed": labels_changed,
        },
    )


def _flags(node: ParsedNode) -> int:
    f = ITEM if node.origin == CHECKLIST else (UNIT if node.unit else 0)
    if node.checked is not None:
        f |= HAS_CHECKED | (CHECKED if node.checked else 0)
    return f


_NUMBERED_SUFFIX = re.compile(r"-\d+$")


def _known_slugs(layout: Layout) -> dict[tuple[str, int], str]:
    """Slugs of the previous titles, read off their anchors: a last segment without a `-N` suffix is the
    title's slug as it is (a de-duplicated one always ends in `-N`). Keyed by (title, is checklist)."""
    known = {}
    for title, anchor, f in zip(layout.titles, layout.anchors, layout.flags, strict=True):
        segment = anchor.rpartition("/")[2]
        if not _NUMBERED_SUFFIX.search(segment):
            known[(title, f & ITEM)] = segment
    return known


def _anchors(
    parents: list[int], titles: list[str], flags: list[int], slugs: dict[tuple[str, int], str] | None = None
) -> list[str]:
    """Slug paths, de-duplicated among siblings (a spec repeats its titles: each is slugified once).
    `slugs`: (title, is checklist) → slug already known (taken over from a previous version)."""
    used: dict[int, set[str]] = {}
    slugs = {} if slugs is None else slugs
    anchors: list[str] = []
    for parent, title, f in zip(parents, titles, flags, strict=True):
        key = (title, f & ITEM)
        base = slugs.get(key)
        if base is None:
            base = slugs[key] = slugify(title, allow_unicode=True)[:MAX_SLUG].strip("-") or (
                "item" if f & ITEM else "section"
            )
        taken = used.get(parent)
        if taken is None:
            taken = used[parent] = set()
        slug, k = base, 1
        while slug in taken:
            k += 1
            slug = f"{base}-{k}"
        taken.add(slug)
        anchors.append(slug if parent < 0 else f"{anchors[parent]}/{slug}")
    return anchors


def _stitch(
    flags: list[int],
    levels: list[int],
    starts: list[int],
    ends: list[int],
    item_parent: list[int],
    total: int,
) -> tuple[list[int], list[int]]:
    """What a node's place in the whole document decides, as _parse_markdown computes it: a heading nests
    under the nearest preceding shallower heading and its section ends at the next heading of the same
    or a shallower level; a checklist item belongs to its enclosing item, else to the nearest heading
    before it (always the top of the open-headings stack), and never reaches past its parent's section.
    Sets `levels` (checklist items) and `ends` (headings, clamped items) in place; returns the parents
    (indexes, -1 at the top) and depths."""
    count = len(flags)
    parents = [-1] * count
    depths = [1] * count
    stack: list[int] = []
    items: list[int] = []
    for i in range(count):
        if flags[i] & ITEM:
            p = item_parent[i]
            if p < 0 and stack:
                p = stack[-1]
            levels[i] = levels[p] + 1 if p >= 0 else 1
            items.append(i)
        else:
            level = levels[i]
            while stack and levels[stack[-1]] >= level:
                ends[stack.pop()] = starts[i]
            p = stack[-1] if stack else -1
            stack.append(i)
        if p >= 0:
            parents[i] = p
            depths[i] = depths[p] + 1
    for h in stack:
        ends[h] = total
    for i in items:
        p = parents[i]
        if p >= 0 and ends[i] > ends[p]:
            ends[i] = max(starts[i], ends[p])
    return parents, depths


def _label(text: str) -> str:
    return " ".join(text.split()).casefold()


def _label_candidates(text: str) -> frozenset[str]:
    """Every `[…]:` in the text, normalized like a label: a superset of the labels it defines (a
    definition is `[label]:` with a label of at most 999 characters, compared case-folded with its
    whitespace collapsed), found with str.find instead of a parse."""
    found = set()
    find, rfind = text.find, text.rfind
    pos = find("]:")
    while pos != -1:
        opening = rfind("[", max(0, pos - 1000), pos)
        if opening != -1:
            found.add(_label(text[opening + 1 : pos]))
        pos = find("]:", pos + 2)
    return frozenset(found)


def _labels(text: str) -> frozenset[str]:
    if "]:" not in text:
        return frozenset()
    return frozenset(_label(label) for label in _MARKDOWN.reference_definitions(text))


# --- Plain text ------------------------------------------------------------------------------------

_TEXT_LINE = re.compile(r"^[^\n]*", re.MULTILINE)
_NUMBERED = re.compile(r"^(\d+(?:\.\d+)*)\.?\s+(\S.*)$")
_CHECK = re.compile(r"^\s*(?:[-*+]\s+|\d+[.)]\s+)?\[([ xX])\]\s+(.*\S)\s*$")


def _parse_text(text: str) -> ParsedDocument:
    entries: list[tuple[int, int, str, str, bool | None]] = []  # (char start, level, title, origin, checked)
    prev_blank = True
    last_level = 0
    pos = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        start = pos
        pos += len(line)
        if not stripped:
            prev_blank = True
            continue
        check = _CHECK.match(line)
        if check:
            entries.append((start, 0, check.group(2), CHECKLIST, check.group(1) != " "))
            prev_blank = False
            continue
        level = 0
        title = stripped
        if prev_blank and len(stripped) <= 100:
            numbered = _NUMBERED.match(stripped)
            letters = [c for c in stripped if c.isalpha()]
            if numbered and len(numbered.group(2)) <= 100 and not numbered.group(2).endswith("."):
                level = min(numbered.group(1).count(".") + 1, 6)
                title = numbered.group(2)
            elif len(letters) >= 2 and not any(c.islower() for c in letters):
                level = 1
            elif stripped.endswith(":") and len(stripped) > 1:
                level = min(last_level + 1, 6) if last_level else 1
                title = stripped[:-1].strip()
        prev_blank = False
        if level:
            entries.append((start, level, title, HEADING, None))
            last_level = level if not stripped.endswith(":") or level == 1 else last_level

    nodes: list[ParsedNode] = []
    heading_stack: list[ParsedNode] = []
    heading_nodes: list[ParsedNode] = []
    headings = checklist = 0
    for start, level, title, origin, checked in entries:
        if origin == HEADING:
            while heading_stack and heading_stack[-1].level >= level:
                heading_stack.pop()
            parent = heading_stack[-1] if heading_stack else None
            node = ParsedNode(
                len(nodes),
                parent.index if parent else None,
                parent.depth + 1 if parent else 1,
                level,
                HEADING,
                title[:MAX_TITLE],
                start,
            )
            heading_stack.append(node)
            heading_nodes.append(node)
            headings += 1
        else:
            parent = heading_stack[-1] if heading_stack else None
            node = ParsedNode(
                len(nodes),
                parent.index if parent else None,
                parent.depth + 1 if parent else 1,
                parent.level + 1 if parent else 1,
                CHECKLIST,
                title[:MAX_TITLE],
                start,
                checked=checked,
            )
            line_end = text.find("\n", start)
            node.end = node.own_end = len(text) if line_end == -1 else line_end + 1
            checklist += 1
        nodes.append(node)
    total = len(text)
    open_stack: list[ParsedNode] = []
    for node in heading_nodes:
        while open_stack and open_stack[-1].level >= node.level:
            open_stack.pop().end = node.start
        open_stack.append(node)
    for node in open_stack:
        node.end = total
    for i, node in enumerate(heading_nodes):
        node.own_end = heading_nodes[i + 1].start if i + 1 < len(heading_nodes) else total
    blake = hashlib.blake2b
    for node in nodes:
        node.content_hash = blake(
            text[node.start : node.own_end].rstrip().encode("utf-8"), digest_size=16
        ).hexdigest()
        if node.origin == HEADING:
            line_end = text.find("\n", node.start, node.own_end)
            body = text[line_end + 1 : node.own_end].strip() if line_end != -1 else ""
            if body:
                node.body_hash = blake(body.encode("utf-8"), digest_size=16).hexdigest()
    _assign_anchors(nodes)
    return ParsedDocument("text", nodes, 0, headings, checklist)
