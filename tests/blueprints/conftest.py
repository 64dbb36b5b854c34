"""Fixtures for the blueprints tests (shared by the ingestion and the task-graph tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from markdown_it import MarkdownIt

RUST_RFCS = Path(__file__).resolve().parents[3] / "shared" / "data" / "blueprints" / "rust-rfcs-500k.md"


def markdown_it_headings(text: str) -> list[tuple[int, str]]:
    """The reference: (level, plain title) of every heading markdown-it-py (CommonMark) finds."""
    tokens = MarkdownIt("commonmark").parse(text)
    found = []
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            found.append((int(token.tag[1]), plain_text(tokens[i + 1].children or [])))
    return found


def plain_text(children) -> str:
    parts: list[str] = []

    def walk(tokens):
        for token in tokens:
            if token.type in ("text", "code_inline", "text_special"):
                parts.append(token.content)
            elif token.type in ("softbreak", "hardbreak"):
                parts.append(" ")
            elif token.children:
                walk(token.children)

    walk(children)
    return " ".join("".join(parts).split())


@pytest.fixture(scope="session")
def rust_rfcs_text() -> str:
    if not RUST_RFCS.exists():
        pytest.skip(f"the shared corpus {RUST_RFCS} is not on this machine")
    return RUST_RFCS.read_text(encoding="utf-8")
