"""The MCP server for the agents Autopilot starts: run tokens (scope, expiry, only while the run is
active) and the real Claude Code CLI against the fake Anthropic server calling `mcp__autopilot__*`."""

from __future__ import annotations

import json
import time

import pytest
from django.core import signing

from autopilot.errors import ApplicationError, NotFound, PermissionDenied
from autopilot.mcp import tools
from autopilot.mcp.auth import (
    RUN_TOKEN_PREFIX,
    RUN_TOKEN_SALT,
    AuthError,
    mint_run_token,
    principal_from_token,
)
from blueprints.models import Task, TaskDependency
from runs import services
from runs.backends.claude_code import ClaudeCodeBackend
from runs.models import ExecutionRun, ExecutionStep
from runs.worker import execute_run
from tests.fakellm import FakeLLM, text, tool

pytestmark = [pytest.mark.django_db(transaction=True)]


def running_run(world, task_title="Write the tokenizer"):
    return ExecutionRun.objects.create(
        project=world.project,
        task=world.tasks[task_title],
        agent_backend="scripted",
        prompt="work",
        status=ExecutionRun.Status.RUNNING,
    )


def test_a_run_token_is_scoped_to_its_run_project_and_task(world):
    run = running_run(world)
    principal = principal_from_token(mint_run_token(run))
    own, other = world.tasks["Write the tokenizer"], world.tasks["Write the evaluator"]

    # Reads default to the run's task and see its spec section
    assert tools.task_get(principal)["id"] == own.pk
    assert tools.run_status(principal)["id"] == run.pk
    assert tools.task_list(principal)["count"] == 3
    # A follow-up by default: same plan node, depends on the run's task
    created = tools.task_create(principal, title="Handle unicode")
    assert TaskDependency.objects.filter(task_id=created["id"], depends_on=own).exists()
    assert Task.objects.get(pk=created["id"]).plan_node_id == own.plan_node_id
    # Only its own task changes; no runs started, stopped or messaged; nothing of another project
    with pytest.raises(PermissionDenied, match="only its own task"):
        tools.task_update(principal, task=other.pk, priority=5)
    for call in (
        lambda: tools.run_start(principal, prompt="more"),
        lambda: tools.run_stop(principal, run=run.pk),
        lambda: tools.run_message(principal, run=run.pk, body="hi"),
    ):
        with pytest.raises(PermissionDenied, match="run token cannot"):
            call()
    with pytest.raises(NotFound):
        tools.task_list(principal, project="secret")
    # Its own task: it reports progress and its result through the same transitions as every door
    assert tools.task_update(principal, status="in_progress")["status"] == "in_progress"
    assert tools.task_complete(principal, summary="Tokenizer written.", status="review")["status"] == "review"


def test_a_run_token_is_refused_once_the_run_ends_or_expires_or_is_forged(world):
    run = running_run(world)
    token = mint_run_token(run)
    assert principal_from_token(token).run_id == run.pk

    expired = mint_run_token(run, ttl=-1)
    with pytest.raises(AuthError, match="expired"):
        principal_from_token(expired)
    forged = RUN_TOKEN_PREFIX + signing.dumps(
        {"run": run.pk, "project": run.project_id, "exp": time.time() + 99}, salt="another-salt"
    )
    with pytest.raises(AuthError, match="Invalid run token"):
        principal_from_token(forged)
    other_project = RUN_TOKEN_PREFIX + signing.dumps(
        {"run": run.pk, "project": world.other.pk, "exp": int(time.time()) + 99},
        salt=RUN_TOKEN_SALT,
        compress=True,
    )
    with pytest.raises(AuthError, match="Invalid run token"):
        principal_from_token(other_project)

    ExecutionRun.objects.filter(pk=run.pk).update(status=ExecutionRun.Status.SUCCEEDED)
    with pytest.raises(AuthError, match="only while the run is active"):
        principal_from_token(token)
    assert issubclass(AuthError, ApplicationError)


@pytest.fixture
def fake_llm():
    server = FakeLLM().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.skipif(
    not ClaudeCodeBackend.available()[0], reason="Claude Code CLI (claude-agent-sdk) not installed"
)
def test_claude_code_agent_reads_its_task_and_files_a_follow_up_through_mcp(world, settings, fake_llm):
    # Given the fake Anthropic server scripted to call Autopilot's MCP tools, then answer
    settings.ANTHROPIC_BASE_URL = fake_llm.url
    settings.ANTHROPIC_API_KEY = "sk-test-fake-key"
    settings.AUTOPILOT_CLAUDE_CODE_ENV = {"CLAUDE_CODE_MAX_RETRIES": "1"}
    fake_llm.script(
        [
            tool("mcp__autopilot__task_get", {}, say="Reading my task."),
            tool(
                "mcp__autopilot__task_create",
                {"title": "Tokenizer: handle unicode", "body": "Seen while working."},
            ),
            text("Filed a follow-up."),
        ]
    )
    task = world.tasks["Write the tokenizer"]
    run = services.run_create(
        project=world.project,
        task=task,
        prompt="",
        agent_backend="claude_code",
        model="claude-sonnet-4-5",
        enqueue=False,
        max_wall_seconds=90,
    )

    # When the worker executes the run with the real Claude Code CLI
    status = execute_run(run.pk)

    # Then the follow-up exists, linked to the run's task and plan node
    run.refresh_from_db()
    assert status == "succeeded", run.status_reason + run.error
    follow_up = Task.objects.get(title="Tokenizer: handle unicode")
    assert TaskDependency.objects.filter(task=follow_up, depends_on=task).exists()
    assert follow_up.plan_node_id == task.plan_node_id and follow_up.project_id == world.project.pk
    # And both MCP calls are steps of the run, with their answers
    steps = {s.tool_name: s for s in run.steps.filter(tool_name__startswith="mcp__autopilot__")}
    assert set(steps) == {"mcp__autopilot__task_get", "mcp__autopilot__task_create"}
    assert all(s.kind == ExecutionStep.Kind.TOOL and s.status == "completed" for s in steps.values())
    assert "tokenize(" in steps["mcp__autopilot__task_get"].output
    assert json.loads(steps["mcp__autopilot__task_create"].output)["id"] == follow_up.pk
