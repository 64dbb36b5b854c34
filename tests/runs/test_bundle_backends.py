"""Every backend receives the same context bundle, and the run keeps it part by part as sent (redacted):
scripted writes it to its notes file, native sends it as the first user message to the fake LLM server,
Claude Code (the real CLI) sends it in its first request, and Codex (the real CLI, where installed) too."""

from __future__ import annotations

from pathlib import Path

import pytest

from blueprints.ingestion import ingest_blueprint
from blueprints.models import Task
from runs import services
from runs.backends.claude_code import ClaudeCodeBackend
from runs.backends.codex import CodexBackend
from runs.bundle import build_bundle, join_parts
from runs.context import TASK_INSTRUCTION
from runs.models import ExecutionRun
from runs.redaction import Redactor
from runs.snapshot import snapshot_refresh
from runs.worker import execute_run
from tests.factories import ProjectFactory
from tests.fakellm import text, tool

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "sk-ant-api03-" + "Q" * 40
SPEC = f"""# Phase 1

Everything runs on Python 3.12.

## Conventions

Use snake_case. The staging key is {SECRET}; never commit it.

## Greeting

Write greet.py that prints hello.

- [ ] `python3 greet.py` prints hello
"""


@pytest.fixture
def greeting(db):
    project = ProjectFactory(autonomy_mode="full_auto")
    ingest_blueprint(project=project, text=SPEC)
    # a stored snapshot (younger than runs.snapshot.FRESH_FOR) is the one every bundle uses: the bundle
    # rebuilt after the run (its task then integrating) is the one the agent received
    snapshot_refresh(project)
    return Task.objects.get(project=project, title="Greeting")


def start(task, backend: str, model: str) -> ExecutionRun:
    return services.run_create(
        project=task.project,
        task=task,
        prompt=TASK_INSTRUCTION,
        agent_backend=backend,
        model=model,
        enqueue=False,
        max_wall_seconds=90,
    )


def assert_stored_as_sent(run: ExecutionRun, sent: str) -> None:
    run.refresh_from_db()
    assert run.prompt == TASK_INSTRUCTION  # the instruction is kept as it was
    assert [p["name"] for p in run.prompt_parts] == ["task", "ancestry", "pinned", "snapshot", "instruction"]
    assert join_parts(run.prompt_parts) == sent
    # the same bundle the builder makes, redacted: the secret never reaches the agent nor the record
    expected = build_bundle(run).prompt
    assert SECRET in expected and SECRET not in sent
    assert sent == Redactor.for_project(run.project, Path(run.worktree_path))(expected)


def test_scripted_records_the_bundle(greeting):
    run = start(greeting, "scripted", "scripted")
    assert execute_run(run.pk) == "succeeded"
    run.refresh_from_db()
    notes = (Path(run.worktree_path) / "AUTOPILOT_NOTES.md").read_text()
    sent = notes.removeprefix("# Notes from a scripted run\n\n").rstrip("\n")
    assert sent.startswith(f"## Task\n\nTask #{greeting.pk}: Greeting")
    assert_stored_as_sent(run, sent)


@pytest.fixture
def anthropic(fake_llm, settings):
    settings.ANTHROPIC_BASE_URL = fake_llm.url
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key-for-the-fake"
    settings.AUTOPILOT_LLM_MAX_RETRIES = 0
    settings.AUTOPILOT_CLAUDE_CODE_ENV = {"CLAUDE_CODE_MAX_RETRIES": "1"}
    return fake_llm


def test_native_sends_the_bundle_as_the_first_user_message(greeting, anthropic):
    anthropic.script([tool("finish", {"summary": "done"})])
    run = start(greeting, "native", "anthropic:claude-sonnet-4-6")
    execute_run(run.pk)
    sent = anthropic.wait_for_requests(1)[0].user_texts()[0]
    assert_stored_as_sent(run, sent)


@pytest.mark.skipif(not ClaudeCodeBackend.available()[0], reason="Claude Code CLI not installed")
def test_claude_code_sends_the_bundle_in_its_first_request(greeting, anthropic):
    anthropic.script([text("Done.")])
    run = start(greeting, "claude_code", "claude-sonnet-4-5")
    execute_run(run.pk)
    run.refresh_from_db()
    sent = join_parts(run.prompt_parts)
    texts = [t for r in anthropic.model_requests() for t in r.user_texts()]
    assert any(t.strip() == sent for t in texts), texts[:3]
    assert_stored_as_sent(run, sent)


@pytest.mark.skipif(
    not CodexBackend.available()[0], reason="the codex CLI is not installed (npm install -g @openai/codex)"
)
def test_codex_sends_the_bundle_in_its_first_request(greeting, fake_llm, settings):
    settings.OPENAI_BASE_URL = fake_llm.base_url_v1
    settings.OPENAI_API_KEY = "sk-test-codex"
    fake_llm.script([text("Done.")])
    run = start(greeting, "codex", "gpt-5.5")
    execute_run(run.pk)
    run.refresh_from_db()
    sent = join_parts(run.prompt_parts)
    texts = [t for r in fake_llm.model_requests() for t in r.user_texts()]
    assert any(t.strip() == sent for t in texts)
    assert_stored_as_sent(run, sent)
