"""Fixtures for the runs tests."""

from __future__ import annotations

import pytest

from tests.fakellm import FakeLLM


@pytest.fixture
def fake_llm():
    """A scripted fake LLM server on 127.0.0.1 (Anthropic, Chat Completions and Responses APIs)."""
    server = FakeLLM().start()
    try:
        yield server
    finally:
        server.stop()
