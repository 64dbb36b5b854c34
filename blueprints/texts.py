"""Version texts, stored whole or as pieces of an earlier version's text.

A re-ingest of a 3 MB spec with a few sections edited would write 3 MB again (and SQLite then copies
it once more when it checkpoints its log). Instead, a version whose text is mostly an earlier one's is
stored as pieces of a *base* version stored whole: `[start, end]` ranges of the base's text and the
new strings between them, in order. The incremental parse says which stretches of the new text are
the previous version's (ParsedDocument.copied); those map onto the base through the previous version's
own pieces. The base is always a whole text (one level: reading any version reads at most two rows),
and a version is stored whole again when its new strings add up to more than a quarter of it or its
pieces get too many.
"""

from __future__ import annotations

import bisect

from blueprints.models import BlueprintText, StoredText

MAX_NEW_FRACTION = 4  # stored whole when the new strings exceed 1/4 of the text
MAX_PIECES = 20_000


def read_text(blueprint_id: int) -> StoredText:
    return BlueprintText.objects.read(blueprint_id)


def store_text(
    *,
    blueprint_id: int,
    text: str,
    previous: StoredText | None = None,
    copied: list[tuple[int, int, int]] | None = None,
) -> None:
    """Store a version's text: as pieces when `copied` ((offset, previous start, previous end) stretches of
    `text` that are `previous`'s text) covers most of it, else whole."""
    pieces = _pieces(text, previous, copied) if previous is not None and copied else None
    if pieces is None:
        BlueprintText.objects.create(blueprint_id=blueprint_id, text=text)
    else:
        BlueprintText.objects.create(blueprint_id=blueprint_id, base_id=previous.base_id, pieces=pieces)


def _pieces(text: str, previous: StoredText, copied: list[tuple[int, int, int]]) -> list | None:
    if previous.pieces is None:

        def on_base(a: int, b: int) -> list:
            return [[a, b]]
    else:
        offsets = []  # where each piece of the previous version starts in its text
        at = 0
        for p in previous.pieces:
            offsets.append(at)
            at += p[1] - p[0] if p.__class__ is list else len(p)

        def on_base(a: int, b: int) -> list:
            found = []
            k = bisect.bisect_right(offsets, a) - 1
            while k < len(offsets) and offsets[k] < b:
                p, o = previous.pieces[k], offsets[k]
                lo, hi = max(a, o) - o, min(b, o + (p[1] - p[0] if p.__class__ is list else len(p))) - o
                if hi > lo:
                    found.append([p[0] + lo, p[0] + hi] if p.__class__ is list else p[lo:hi])
                k += 1
            return found

    pieces: list = []
    new = 0
    pos = 0

    def add(piece) -> None:
        last = pieces[-1] if pieces else None
        if piece.__class__ is list and last.__class__ is list and last[1] == piece[0]:
            last[1] = piece[1]
        elif piece.__class__ is str and last.__class__ is str:
            pieces[-1] = last + piece
        else:
            pieces.append(piece)

    for offset, a, b in sorted(copied):
        if offset > pos:
            add(text[pos:offset])
            new += offset - pos
        for piece in on_base(a, b):
            add(piece)
            if piece.__class__ is str:
                new += len(piece)
        pos = offset + b - a
    if pos < len(text):
        add(text[pos:])
        new += len(text) - pos
    if new * MAX_NEW_FRACTION > len(text) or len(pieces) > MAX_PIECES:
        return None
    return pieces
