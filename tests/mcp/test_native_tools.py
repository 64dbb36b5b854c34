"""The native backend gets Autopilot's MCP operations as tools (`autopilot__<tool>`, through
runs.agent_mcp), scoped by the run's token like a Claude Code run: a real native run against the fake
LLM server, with the anthropic and openai SDKs."""

from __future__ import annotations

import json

import pytest

from blueprints.models import Task, TaskDependency
from runs import services
from runs.models import ExecutionStep
from runs.worker import execute_run
from tests.fakellm import FakeLLM, text, tool

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fake_llm(settings):
    server = FakeLLM().start()
    settings.ANTHROPIC_BASE_URL = server.url
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key-for-the-fake"
    settings.OPENAI_BASE_URL = server.base_url_v1
    settings.OPENAI_API_KEY = "sk-test-openai-fake-key-000"
    settings.AUTOPILOT_LLM_MAX_RETRIES = 0
    try:
        yield server
    finally:
        server.stop()


def tool_results(api_body: dict, provider: str) -> list[tuple[str, bool]]:
    """(text, is_error) of every tool result the model received (openai: no is_error flag, False)."""
    found = []
    for message in api_body["messages"]:
        if provider == "openai":
            if message["role"] == "tool":
                found.append((message["content"], False))
            continue
        for block in message["content"] if isinstance(message["content"], list) else []:
            if block.get("type") == "tool_result":
                found.append((str(block["content"]), bool(block.get("is_error"))))
    return found


@pytest.mark.parametrize("model", ["anthropic:claude-sonnet-4-6", "openai:gpt-5-mini"])
def test_native_agent_files_a_follow_up_and_cannot_reach_another_project(world, fake_llm, model):
    # Given a task of another project, and a model that reads its task, files a follow-up, tries the
    # other project's task, then finishes
    foreign = Task.objects.create(project=world.other, title="Secret work", body="classified")
    fake_llm.script(
        [
            tool("autopilot__task_get", {}),
            tool("autopilot__task_create", {"title": "Tokenizer: handle unicode", "body": "Seen here."}),
            tool("autopilot__task_update", {"task": foreign.pk, "priority": 5}),
            tool("finish", {"summary": "Filed a follow-up."}),
        ]
    )
    task = world.tasks["Write the tokenizer"]
    run = services.run_create(
        project=world.project, task=task, prompt="", agent_backend="native", model=model, enqueue=False
    )

    # When the worker executes the native run
    status = execute_run(run.pk)

    # Then the follow-up exists in the run's project, depends on the run's task, on its plan node
    run.refresh_from_db()
    assert status == "succeeded", run.status_reason + run.error
    follow_up = Task.objects.get(title="Tokenizer: handle unicode")
    assert follow_up.project_id == world.project.pk and follow_up.plan_node_id == task.plan_node_id
    assert TaskDependency.objects.filter(task=follow_up, depends_on=task).exists()
    # And each call is a step of the run like any other tool call
    steps = list(run.steps.filter(tool_name__startswith="autopilot__").order_by("seq"))
    assert [(s.tool_name, s.kind, s.status) for s in steps] == [
        ("autopilot__task_get", ExecutionStep.Kind.TOOL, "completed"),
        ("autopilot__task_create", ExecutionStep.Kind.TOOL, "completed"),
        ("autopilot__task_update", ExecutionStep.Kind.TOOL, "failed"),
    ]
    assert "tokenize(" in steps[0].output
    assert json.loads(steps[1].output)["id"] == follow_up.pk
    # And the other project's task was refused as a tool error (no traceback), and left untouched
    refused = f"Error executing tool task_update: Task {foreign.pk} was not found."
    assert steps[2].output == refused
    foreign.refresh_from_db()
    assert foreign.priority != 5
    provider = model.split(":")[0]
    last = fake_llm.model_requests()[-1].body
    results = tool_results(last, provider)
    assert results[2][0] == refused
    if provider == "anthropic":
        assert [is_error for _, is_error in results] == [False, False, True]
    assert not any("Traceback" in s.output for s in run.steps.all())
    # And the model was offered the agent's subset: no run start, stop or message
    first = fake_llm.model_requests()[0].body
    names = {t.get("name") or t["function"]["name"] for t in first["tools"]}
    assert {"autopilot__task_create", "autopilot__task_complete", "finish"} <= names
    assert not names & {"autopilot__run_start", "autopilot__run_stop", "autopilot__run_message"}


def test_native_agent_tools_report_bad_arguments_as_tool_errors(world, fake_llm):
    fake_llm.script(
        [
            tool("autopilot__task_create", {"body": "no title"}),
            tool("autopilot__run_start", {"prompt": "more work"}),
            text("Gave up."),
        ]
    )
    run = services.run_create(
        project=world.project,
        task=world.tasks["Write the tokenizer"],
        prompt="",
        agent_backend="native",
        model="anthropic:claude-sonnet-4-6",
        enqueue=False,
    )
    assert execute_run(run.pk) == "succeeded"
    invalid, unknown = run.steps.filter(tool_name__startswith="autopilot__").order_by("seq")
    assert invalid.status == "failed" and "title" in invalid.output and "Traceback" not in invalid.output
    assert unknown.status == "failed" and unknown.output.startswith("Unknown tool 'run_start'")
    assert Task.objects.filter(project=world.project, title="").count() == 0
