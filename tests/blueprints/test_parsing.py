"""The parser against the CommonMark reference (markdown-it-py) and its own invariants."""

from __future__ import annotations

import pytest

from autopilot.errors import ApplicationError
from blueprints.parsing import decode_source, front_matter_length, parse_blueprint
from tests.blueprints.conftest import markdown_it_headings

TRICKY = {
    "setext": (
        "Title\n=====\n\nSub title\n---------\n\nMulti\nline\n===\n\ntext\n\n---\n\nnot setext after hr\n"
    ),
    "fences": (
        "# Real\n\n```\n# not a heading\n## nor this\n```\n\n~~~md\n# nope\n~~~\n\n"
        "````\n```\n# still code\n````\n\n## Real two\n"
    ),
    "indented_code": (
        "# A\n\n    # indented code\n    ## more code\n\n  # two spaces is a heading\n\n\t# tab is code\n"
    ),
    "nested_lists": (
        "# Top\n\n- item\n  # heading in a list item\n  - deeper\n\n    ## in a nested item\n\n"
        "1. one\n2. two\n   ### numbered item heading\n"
    ),
    "block_quotes": "> # Quoted\n> text\n>\n> > ## Deeper quote\n\n# After\n> - # list in quote\n",
    "html_blocks": (
        "# Before\n\n<div>\n# not a heading\n</div>\n\n<!--\n# comment\n-->\n\n"
        "<pre>\n## pre\n</pre>\n\n# After\n"
    ),
    "unicode": (
        "# Übersicht — 概要 🚀\n\n## Ελληνικά\n\n### Ünïcödé `code` *emph*\n\n"
        "Tëxt with ümlauts\n\n## 日本語のタイトル\n"
    ),
    "duplicates": "# Setup\n## Notes\n## Notes\n## Notes\n# Setup\n## Notes\n",
    "skipped_levels": "# One\n### Three under one\n###### Six\n## Two\n#### Four\n# Next\n",
    "closing_hashes": (
        "# Closed #\n## Closed too ##########\n### Not closed#\n#### Escaped \\#\n##\n"
        "#5 not a heading\n####### seven hashes\n"
    ),
    "inline_markup": (
        "# **Bold** and _em_ and [link](http://x) and ![img](a.png) and <span>html</span> &amp; \\*\n"
    ),
    "mixed": (
        "Intro\n\n# H1\nSetext after atx\n----------------\n\n* [ ] a task\n\n"
        "| a | b |\n|---|---|\n| # | x |\n\n# Last\n"
    ),
}


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_headings_match_markdown_it(name):
    # given a tricky document
    text = TRICKY[name]
    # when parsed
    doc = parse_blueprint(text)
    # then it finds the same headings as markdown-it-py, with the same levels and plain titles
    ours = [(node.level, node.title) for node in doc.nodes if node.origin == "heading"]
    assert ours == markdown_it_headings(text)
    assert doc.headings == len(ours)


def test_front_matter_is_skipped():
    # given a YAML front matter block whose lines would be a setext heading in plain CommonMark
    body = "# Real title\n\nText\n"
    text = "---\ntitle: Not a heading\nowner: me\n---\n" + body
    # when parsed
    doc = parse_blueprint(text)
    # then only the body's headings count, and offsets point into the full text
    assert [(n.level, n.title) for n in doc.nodes] == markdown_it_headings(body) == [(1, "Real title")]
    assert text[doc.nodes[0].start : doc.nodes[0].end] == body
    assert doc.front_matter_end == len(text) - len(body)


def test_front_matter_only_at_the_very_top():
    # given a `---` block that is not at the top, and one followed by a blank line
    later = "Intro\n\n---\ntitle: x\n---\n"
    hr = "---\n\nTitle\n---\n"
    # then neither is front matter: CommonMark rules apply
    assert front_matter_length(later.encode()) == 0
    assert front_matter_length(hr.encode()) == 0
    assert [(n.level, n.title) for n in parse_blueprint(later).nodes] == markdown_it_headings(later)
    assert [(n.level, n.title) for n in parse_blueprint(hr).nodes] == markdown_it_headings(hr)


def test_real_500k_word_spec_matches_markdown_it(rust_rfcs_text):
    # given the 500k-word Rust RFC corpus
    # when parsed
    doc = parse_blueprint(rust_rfcs_text)
    # then every heading markdown-it-py finds is a node, with the same level and title, in order
    reference = markdown_it_headings(rust_rfcs_text)
    assert len(reference) == 4062
    assert doc.headings == 4062
    assert [(n.level, n.title) for n in doc.nodes if n.origin == "heading"] == reference
    _assert_invariants(rust_rfcs_text, doc)


def _assert_invariants(text, doc):
    nodes = doc.nodes
    anchors = [n.anchor for n in nodes]
    assert len(set(anchors)) == len(anchors), "anchors are unique within the blueprint"
    previous_start = -1
    for node in nodes:
        assert 0 <= node.start <= node.end <= len(text)
        assert node.start >= previous_start, "document order"
        previous_start = node.start
        if node.parent is not None:
            parent = nodes[node.parent]
            assert parent.start <= node.start and node.end <= parent.end, (
                "a child's section is inside its parent's"
            )
            assert node.anchor.startswith(parent.anchor + "/")
            assert node.depth == parent.depth + 1
        if node.origin == "heading":
            section = text[node.start : node.end]
            first_line = section.split("\n", 1)[0]
            assert first_line.strip(), "a section starts on its heading's line"
            assert node.kind == ("phase", "epic", "feature", "story", "task_spec")[min(node.depth, 5) - 1]
    headings = [n for n in nodes if n.origin == "heading"]
    # Sections tile the text: a heading's section ends where the next same-or-shallower heading starts.
    for i, node in enumerate(headings):
        following = next((h for h in headings[i + 1 :] if h.level <= node.level), None)
        assert node.end == (following.start if following else len(text))


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_invariants_on_tricky_documents(name):
    _assert_invariants(TRICKY[name], parse_blueprint(TRICKY[name]))


def test_sections_and_offsets_are_characters_not_bytes():
    # given a spec with multi-byte characters before and inside sections
    text = "# Ünïcödé 🚀\n\nÄÖÜ text\n\n## Zwei — zwei\n\nmore ß\n\n# Drei\n"
    # when parsed
    doc = parse_blueprint(text)
    # then each section slice starts at its heading and ends before the next one
    first, second, third = doc.nodes
    assert text[first.start : first.end] == "# Ünïcödé 🚀\n\nÄÖÜ text\n\n## Zwei — zwei\n\nmore ß\n\n"
    assert text[second.start : second.end] == "## Zwei — zwei\n\nmore ß\n\n"
    assert text[third.start : third.end] == "# Drei\n"
    assert (first.anchor, second.anchor, third.anchor) == ("ünïcödé", "ünïcödé/zwei-zwei", "drei")


def test_tree_kinds_anchors_and_skipped_levels():
    # given headings with skipped levels and duplicate titles
    doc = parse_blueprint(TRICKY["skipped_levels"] + TRICKY["duplicates"])
    by_anchor = {n.anchor: n for n in doc.nodes}
    # then skipped levels nest under the nearest shallower heading, and kinds follow the depth
    assert by_anchor["one/three-under-one"].kind == "epic"
    assert by_anchor["one/three-under-one/six"].kind == "feature"
    assert by_anchor["one/two/four"].level == 4
    # and duplicate titles get -2, -3 among siblings
    assert {"setup/notes", "setup/notes-2", "setup/notes-3", "setup-2/notes"} <= set(by_anchor)


def test_deep_levels_fold_into_task_spec():
    doc = parse_blueprint("# a\n## b\n### c\n#### d\n##### e\n###### f\n")
    assert [n.kind for n in doc.nodes] == ["phase", "epic", "feature", "story", "task_spec", "task_spec"]


def test_checklist_items_become_task_specs():
    # given checklists of every marker style, nested, loose and inside code
    text = (
        "# Phase\n\n"
        "- [ ] write **the** parser\n"
        "- [x] done already\n"
        "  - [ ] nested under done\n"
        "* [X] star marker\n"
        "1. [ ] numbered\n"
        "2. [x] numbered done\n\n"
        "```\n- [ ] in code\n```\n\n"
        "- [ ] loose one\n\n  with a paragraph\n\n"
        "- not a task\n- [] not a task either\n"
    )
    # when parsed
    doc = parse_blueprint(text)
    items = [n for n in doc.nodes if n.origin == "checklist"]
    # then every checklist item is a task_spec child with its done state
    assert [(n.title, n.checked) for n in items] == [
        ("write the parser", False),
        ("done already", True),
        ("nested under done", False),
        ("star marker", True),
        ("numbered", False),
        ("numbered done", True),
        ("loose one", False),
    ]
    assert all(n.kind == "task_spec" for n in items)
    by_title = {n.title: n for n in doc.nodes}
    assert by_title["nested under done"].parent == by_title["done already"].index
    assert by_title["numbered"].parent == by_title["Phase"].index
    assert text[by_title["star marker"].start : by_title["star marker"].end] == "* [X] star marker\n"
    assert doc.checklist_items == 7
    _assert_invariants(text, doc)


def test_checklist_without_headings_is_a_spec():
    doc = parse_blueprint("Things to do\n\n- [ ] one\n- [ ] two\n")
    assert doc.format == "markdown"
    assert [n.anchor for n in doc.nodes] == ["one", "two"]


def test_plain_text_fallback():
    # given a plain-text spec without Markdown headings
    text = (
        "OVERVIEW\n"
        "This system does things.\n\n"
        "1. Storage\n"
        "Keep data.\n\n"
        "1.1 Backups\n"
        "Nightly.\n\n"
        "Open questions:\n"
        "[ ] decide retention\n"
        "[x] pick a database\n\n"
        "2. Interface\n"
        "A web page.\n"
    )
    # when parsed
    doc = parse_blueprint(text)
    # then titles become sections by the documented rules
    assert doc.format == "text"
    assert [(n.level, n.title, n.origin) for n in doc.nodes] == [
        (1, "OVERVIEW", "heading"),
        (1, "Storage", "heading"),
        (2, "Backups", "heading"),
        (3, "Open questions", "heading"),
        (4, "decide retention", "checklist"),
        (4, "pick a database", "checklist"),
        (1, "Interface", "heading"),
    ]
    assert [n.checked for n in doc.nodes if n.origin == "checklist"] == [False, True]
    _assert_invariants(text, doc)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("just a sentence, nothing more.", id="one-sentence"),
        pytest.param("first paragraph.\n\nsecond paragraph, still no structure.\n", id="paragraphs"),
        pytest.param("- a list\n- without tasks\n", id="plain-list"),
    ],
)
def test_not_a_spec(text):
    with pytest.raises(ApplicationError, match="does not look like a spec"):
        parse_blueprint(text)


@pytest.mark.parametrize(
    "raw, message",
    [
        pytest.param(b"", "empty", id="empty-bytes"),
        pytest.param("  \n\t \n", "empty", id="whitespace"),
        pytest.param(b"# Title\n\x00\x01\x02", "NUL byte at byte offset 8", id="nul"),
        pytest.param("# Title\x00", "NUL character at character offset 7", id="nul-str"),
        pytest.param(
            b"# Title\n\xff\xfe rest", "not valid UTF-8: invalid byte 0xff at byte offset 8", id="bad-utf8"
        ),
        pytest.param(
            b"# T\n" + b"x" * 200, "too large: 204 bytes, over the limit of 100 bytes", id="too-big"
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(raw, message):
    with pytest.raises(ApplicationError, match=message):
        decode_source(raw, max_bytes=100)


def test_bom_is_dropped():
    text, data = decode_source("\ufeff# Title\n".encode(), max_bytes=100)
    assert text == "# Title\n" and data == b"# Title\n"


def test_line_endings_are_normalized():
    text, data = decode_source(b"# A\r\n\r\nbody\r\n# B\rx\n", max_bytes=100)
    assert text == "# A\n\nbody\n# B\nx\n" and data == text.encode()


# --- Incremental re-parse: always the same result as a full parse ---------------------------------

COLUMNS = ("parents", "starts", "ends", "levels", "depths", "flags", "titles", "anchors", "hashes", "bodies")


def _previous(text):
    from blueprints.parsing import PreviousParse

    layout = parse_blueprint(text).to_layout()
    layout.ids = [1000 + i for i in range(len(layout))]
    return PreviousParse(text, layout)


def _same_as_full(new_text, previous):
    incremental = parse_blueprint(new_text, previous=previous)
    full = parse_blueprint(new_text)
    got, expected = incremental.to_layout(), full.to_layout()
    for column in COLUMNS:
        assert getattr(got, column) == getattr(expected, column), column
    assert (incremental.headings, incremental.checklist_items) == (full.headings, full.checklist_items)
    return incremental


OLD = (
    "Intro paragraph.\n\n# One\n\n## A\n\ntext\n\n```sh\n# a shell comment\n```\n\n- [ ] task one\n\n"
    "# Two\n\n## B\n\n<div>\n# not a heading\n</div>\n\n# Three\n\nSee [the spec].\n\n## [the spec]\n\n"
    "[the spec]: https://example.com\n\n# Four\n\n## D\n"
)
EDITS = {
    "unchanged": OLD,
    "edit-inside": OLD.replace("## B\n", "## B\n\nmore text\n"),
    "opens-a-fence": OLD.replace("## A\n", "## A\n\n```\n"),
    "closes-nothing-html": OLD.replace("# Two\n", "<div>\n# Two\n"),
    "moves-units": OLD.replace("# Four\n\n## D\n", "").replace("# Two\n", "# Four\n\n## D\n\n# Two\n"),
    "drops-ref-definition": OLD.replace("[the spec]: https://example.com\n", ""),
    "new-top-heading": OLD.replace("# Three", "# New\n\nbody\n\n# Three"),
    "setext-before": "Title\n=====\n\n" + OLD,
    "front-matter": "---\na: b\n---\n" + OLD,
    "checklist-edit": OLD.replace("- [ ] task one", "- [x] task one\n- [ ] task two"),
    "emptied": "# Only\n",
    "ref-defined-in-another-unit": OLD.replace("[the spec]: https://example.com\n\n", "").replace(
        "## D\n", "## D\n\n[the spec]: https://example.com\n"
    ),
    "retitled-ref-defined-elsewhere": OLD.replace("[the spec]: https://example.com\n\n", "")
    .replace("## D\n", "## D\n\n[the spec]: https://example.com\n")
    .replace("## [the spec]\n", "## [the spec] too\n"),
    "undefined-ref-in-a-title": OLD.replace("## B\n", "## B [nowhere] and [the spec]\n"),
    "edit-in-a-repeated-unit": OLD.replace(
        "# Four\n\n## D\n", "# Four\n\n## D\n\n## B\n\n# Four\n\n## D\n\nmore\n"
    ),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_incremental_parse_equals_full_parse(name):
    _same_as_full(EDITS[name], _previous(OLD))


def test_incremental_parse_of_the_real_spec_reuses_unchanged_units(rust_rfcs_text):
    # given the corpus edited in ~1% of its sections, a code fence opened in one place, a unit removed
    previous = _previous(rust_rfcs_text)
    edited = rust_rfcs_text.replace("## Motivation", "## Motivation\n\nEdited.\n", 40)
    edited = edited.replace("## Drawbacks", "## Drawbacks\n\n```\n", 1)
    first_rfc = edited.index("# RFC 0002")
    second_rfc = edited.index("# RFC 0003")
    edited = edited[:first_rfc] + edited[second_rfc:]
    # when parsed incrementally, then the result is the full parse's, and most units were taken over
    doc = _same_as_full(edited, previous)
    assert doc.stats["incremental"] and doc.stats["reused_units"] > 250
