"""The plan tree of one blueprint version as columns (one PlanLayout row per version).

A Layout lists a version's nodes in document order, one list per attribute: PlanNode ids, parent
(an index into the same lists, -1 for a top-level node), `start`/`end` (character offsets into that
version's text: `text[start:end]` is the node's section), level, depth, flags (checklist item, unit
boundary, checked state), how the node changed against the previous version, title, anchor and the
two content hashes. Encoded, it is one binary value: a header, packed integer arrays and
newline-joined strings (titles, anchors and hashes never contain a newline), so a version's tree is
read and written in one go, however many nodes it has.

Everything that depends on the version lives here; a PlanNode row keeps what is stable. A re-ingest
that edits 1% of the sections writes one layout and the rows of the nodes that changed, instead of
re-pointing and shifting every node.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable

KINDS = ("phase", "epic", "feature", "story", "task_spec")
CHANGES = ("unchanged", "added", "changed", "moved")
CHANGE_CODE = {name: code for code, name in enumerate(CHANGES)}
UNCHANGED, ADDED, CHANGED, MOVED = range(4)

CHECKLIST = 1  # flag bits
UNIT = 2  # a heading at the start of a line that begins with `#` (blueprints.parsing: a unit boundary)
HAS_CHECKED = 4
CHECKED = 8

_MAGIC = b"APL1"
_HEADER = struct.Struct("<4sI4I")  # magic, count, byte lengths of the four joined strings
_SWAP = sys.byteorder != "little"


class Layout:
    __slots__ = (
        "ids",
        "parents",
        "starts",
        "ends",
        "levels",
        "depths",
        "flags",
        "changes",
        "titles",
        "anchors",
        "hashes",
        "bodies",
    )

    def __init__(
        self,
        *,
        ids=None,
        parents,
        starts,
        ends,
        levels,
        depths,
        flags,
        changes=None,
        titles,
        anchors,
        hashes,
        bodies,
    ):
        n = len(parents)
        self.ids: list[int] = ids if ids is not None else [0] * n
        self.parents: list[int] = parents
        self.starts: list[int] = starts
        self.ends: list[int] = ends
        self.levels: list[int] = levels
        self.depths: list[int] = depths
        self.flags: list[int] = flags
        self.changes: list[int] = changes if changes is not None else [ADDED] * n
        self.titles: list[str] = titles
        self.anchors: list[str] = anchors
        self.hashes: list[str] = hashes
        self.bodies: list[str] = bodies

    def __len__(self) -> int:
        return len(self.parents)

    # -- per node ---------------------------------------------------------------------------------
    def origin(self, i: int) -> str:
        return "checklist" if self.flags[i] & CHECKLIST else "heading"

    def kind(self, i: int) -> str:
        return "task_spec" if self.flags[i] & CHECKLIST else KINDS[min(self.depths[i], 5) - 1]

    def checked(self, i: int) -> bool | None:
        flags = self.flags[i]
        return bool(flags & CHECKED) if flags & HAS_CHECKED else None

    def parent_id(self, i: int) -> int | None:
        p = self.parents[i]
        return self.ids[p] if p >= 0 else None

    def change(self, i: int) -> str:
        return CHANGES[self.changes[i]]

    def subtree_end(self, i: int) -> int:
        """The index after the last descendant of node i (descendants follow it in document order)."""
        depth = self.depths[i]
        depths = self.depths
        j = i + 1
        n = len(depths)
        while j < n and depths[j] > depth:
            j += 1
        return j

    def index(self) -> dict[int, int]:
        """Node id → index."""
        return {node_id: i for i, node_id in enumerate(self.ids)}

    # -- encoding ---------------------------------------------------------------------------------
    def encode(self) -> bytes:
        strings = [
            ("\n".join(column)).encode("utf-8")
            for column in (self.titles, self.anchors, self.hashes, self.bodies)
        ]
        arrays = [
            array("q", self.ids),
            array("i", self.parents),
            array("q", self.starts),
            array("q", self.ends),
            array("H", self.depths),
        ]
        if _SWAP:
            for a in arrays:
                a.byteswap()
        return b"".join(
            [
                _HEADER.pack(_MAGIC, len(self), *map(len, strings)),
                *(a.tobytes() for a in arrays),
                bytes(self.levels),
                bytes(self.flags),
                bytes(self.changes),
                *strings,
            ]
        )

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Layout:
        data = bytes(data)
        magic, n, *lengths = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("not a plan layout")
        pos = _HEADER.size
        columns = []
        for code in ("q", "i", "q", "q", "H"):
            a = array(code)
            size = a.itemsize * n
            a.frombytes(data[pos : pos + size])
            if _SWAP:
                a.byteswap()
            columns.append(a.tolist())
            pos += size
        small = []
        for _ in range(3):
            small.append(list(data[pos : pos + n]))
            pos += n
        strings = []
        for length in lengths:
            strings.append(data[pos : pos + length].decode("utf-8").split("\n") if n else [])
            pos += length
        ids, parents, starts, ends, depths = columns
        levels, flags, changes = small
        titles, anchors, hashes, bodies = strings
        return cls(
            ids=ids,
            parents=parents,
            starts=starts,
            ends=ends,
            levels=levels,
            depths=depths,
            flags=flags,
            changes=changes,
            titles=titles,
            anchors=anchors,
            hashes=hashes,
            bodies=bodies,
        )

    @classmethod
    def from_nodes(cls, nodes: Iterable) -> Layout:
        """From blueprints.parsing.ParsedNode objects (a full parse)."""
        nodes = list(nodes)
        flags = []
        for node in nodes:
            f = CHECKLIST if node.origin == "checklist" else (UNIT if node.unit else 0)
            if node.checked is not None:
                f |= HAS_CHECKED | (CHECKED if node.checked else 0)
            flags.append(f)
        return cls(
            parents=[-1 if n.parent is None else n.parent for n in nodes],
            starts=[n.start for n in nodes],
            ends=[n.end for n in nodes],
            levels=[n.level for n in nodes],
            depths=[n.depth for n in nodes],
            flags=flags,
            titles=[n.title for n in nodes],
            anchors=[n.anchor for n in nodes],
            hashes=[n.content_hash for n in nodes],
            bodies=[n.body_hash for n in nodes],
        )
