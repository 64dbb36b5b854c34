"""The codex backend: the real Codex CLI (`codex exec --json`) against the fake Responses API server."""

from __future__ import annotations

import pytest

from runs import services
from runs.backends.codex import CodexBackend
from runs.models import ExecutionStep, UsageRecord
from runs.worker import execute_run
from tests.fakellm import error, text, tool
from tests.gitrepo import git

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not CodexBackend.available()[0],
        reason="the codex CLI is not installed (npm install -g @openai/codex@0.169.0)",
    ),
]


@pytest.fixture
def codex_env(settings, fake_llm):
    settings.OPENAI_BASE_URL = fake_llm.base_url_v1
    settings.OPENAI_API_KEY = "sk-test-codex"
    return fake_llm


def new_run(project, **kw):
    return services.run_create(
        project=project,
        prompt="list and finish",
        agent_backend="codex",
        model="gpt-5.5",
        enqueue=False,
        max_wall_seconds=90,
        **kw,
    )


def test_codex_run_records_commands_messages_and_usage(project, codex_env):
    # Given a Responses API script: one command, then a final message
    codex_env.script(
        [
            tool("exec_command", {"cmd": "cat README.md"}, input_tokens=300, output_tokens=50),
            text("All listed."),
        ]
    )
    run = new_run(project)

    # When the worker runs Codex
    status = execute_run(run.pk)

    # Then the command and the message are steps, usage is recorded, and the run succeeded
    run.refresh_from_db()
    assert status == "succeeded", run.status_reason
    steps = list(run.steps.order_by("seq"))
    assert [(s.kind, s.tool_name) for s in steps] == [
        ("run_terminal", "exec_command"),
        ("llm_turn", "assistant"),
    ]
    assert steps[0].input["command"] == "cat README.md"
    assert steps[0].status == ExecutionStep.Status.COMPLETED
    assert steps[1].output == "All listed."
    assert run.result_summary == "All listed."
    assert run.backend_session_id
    assert UsageRecord.objects.filter(run=run).count() == 1
    assert (
        run.input_tokens + run.cache_read_tokens == 300 + 100 and run.output_tokens == 50 + 20
    )  # both turns
    first = codex_env.model_requests()[0]
    assert first.path == "/v1/responses" and first.api_key == "sk-test-codex"


def test_codex_command_the_guard_refuses_stops_the_run(project, codex_env):
    # Given Codex runs a program outside the allowlist (risky: needs approval, which codex exec cannot
    # ask for)
    codex_env.script([tool("exec_command", {"cmd": "ln -s README.md link.md"}), text("linked")])
    run = new_run(project)
    # When it runs
    status = execute_run(run.pk)
    # Then the run fails with the guard's reason
    run.refresh_from_db()
    assert status == "failed"
    assert "guard" in run.status_reason and "'ln' is not in the allowlist" in run.status_reason


def test_codex_api_error_fails_the_run(project, codex_env):
    codex_env.script(
        [error(400, {"error": {"message": "fake model refused", "type": "invalid_request_error"}})]
    )
    run = new_run(project)
    assert execute_run(run.pk) == "failed"
    run.refresh_from_db()
    assert "Codex failed" in run.status_reason


def test_codex_file_changes_are_committed_on_the_branch(project, codex_env):
    codex_env.script([tool("exec_command", {"cmd": "touch created-by-codex.txt"}), text("created")])
    run = new_run(project)
    assert execute_run(run.pk) == "succeeded"
    run.refresh_from_db()
    assert "created-by-codex.txt" in git(project.repo_path, "ls-tree", "--name-only", run.branch)
