"""Every bad input is refused with a message naming the problem, and nothing is written."""

from __future__ import annotations

import pytest
from django.test import override_settings

from autopilot.errors import ApplicationError
from autopilot.models import Event
from blueprints.ingestion import ingest_blueprint
from blueprints.models import Blueprint, PlanNode, Task

BAD = [
    pytest.param("", "empty", id="empty"),
    pytest.param(" \n\t\n  ", "empty", id="whitespace-only"),
    pytest.param(
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary: it contains a NUL byte at byte offset 8", id="binary"
    ),
    pytest.param("# Title\n\x00 rest", "NUL character at character offset 8", id="nul-in-text"),
    pytest.param(
        b"# Title\n\nCaf\xe9 au lait\n", r"not valid UTF-8: invalid byte 0xe9 at byte offset 12", id="latin-1"
    ),
    pytest.param(
        b"# T\n" + b"\xc3", "not valid UTF-8: invalid byte 0xc3 at byte offset 4", id="truncated-utf8"
    ),
    pytest.param(
        "Just a paragraph of prose.\n\nAnother one, no structure at all.\n",
        "does not look like a spec",
        id="not-a-spec",
    ),
    pytest.param(12345, "must be text or bytes", id="not-text"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_input_writes_nothing(project, text, message):
    # given a project with an active version
    first = ingest_blueprint(project=project, text="# Good\n\n- [ ] one\n").blueprint
    counts = (
        Blueprint.objects.count(),
        PlanNode.objects.count(),
        Task.objects.count(),
        Event.objects.count(),
    )
    # when bad input is ingested
    with pytest.raises(ApplicationError, match=message):
        ingest_blueprint(project=project, text=text)
    # then nothing was written and the previous version is still active
    assert (
        Blueprint.objects.count(),
        PlanNode.objects.count(),
        Task.objects.count(),
        Event.objects.count(),
    ) == counts
    first.refresh_from_db()
    assert first.status == Blueprint.Status.ACTIVE


@override_settings(AUTOPILOT_MAX_BLUEPRINT_BYTES=1000)
@pytest.mark.parametrize(
    "text",
    [
        pytest.param("# Big\n" + "x" * 2000, id="str"),
        pytest.param(("# Big\n" + "é" * 600).encode(), id="bytes"),
        pytest.param("# Big\n" + "é" * 600, id="multibyte-str"),
    ],
)
def test_over_the_size_limit(project, text):
    with pytest.raises(
        ApplicationError,
        match=r"too large: .* over the limit of 1,000 bytes \(AUTOPILOT_MAX_BLUEPRINT_BYTES\)",
    ):
        ingest_blueprint(project=project, text=text)
    assert not Blueprint.objects.filter(project=project).exists()
