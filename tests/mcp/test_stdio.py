"""`autopilot mcp` over stdio, driven by the official MCP Python client (a real subprocess on the test
database): the tool list, every tool, role refusals, bad arguments and redaction."""

from __future__ import annotations

import json
import subprocess

import pytest

from autopilot.models import Event
from blueprints.models import Task, TaskDependency
from runs.models import ExecutionRun, RunMessage
from tests.factories import ExecutionStepFactory
from tests.mcp.conftest import AUTOPILOT_MCP, answer, error_text, over_stdio

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOOLS = {
    "task_next",
    "task_get",
    "task_list",
    "task_create",
    "task_update",
    "task_complete",
    "run_start",
    "run_status",
    "run_logs",
    "run_message",
    "run_stop",
    "queue_status",
}
# Budget for the whole tools/list answer (names, descriptions, input schemas) as JSON. Clients send it
# with every model request: 12 tools at ~450 characters each (one-line descriptions, typed and bounded
# arguments) is ~1,400 tokens. Measured at 4,926 when written.
TOOLS_BUDGET = 5_500


def test_tool_list_is_complete_and_small(world, subprocess_env):
    async def session(client):
        return (await client.list_tools()).tools

    tools = over_stdio(subprocess_env, world.tokens["viewer"], session)

    assert {t.name for t in tools} == TOOLS
    size = len(json.dumps([t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in tools]))
    print(f"MCP tools/list: {len(tools)} tools, {size:,} characters of JSON (budget {TOOLS_BUDGET:,})")
    assert size <= TOOLS_BUDGET
    assert all(len(t.description) <= 160 for t in tools)


def test_operator_uses_every_tool(world, subprocess_env):
    # Given a project with a spec and its tasks; an operator's token
    tokenizer = world.tasks["Write the tokenizer"]
    step_run = ExecutionRun.objects.create(
        project=world.project, agent_backend="scripted", prompt="earlier run", status="succeeded"
    )
    for seq in (1, 2, 3):
        ExecutionStepFactory(run=step_run, seq=seq, output=f"output {seq}", status="completed")

    async def session(client):
        out = {}
        out["next"] = answer(await client.call_tool("task_next", {"project": "calc"}))
        out["get"] = answer(await client.call_tool("task_get", {"task": tokenizer.pk}))
        out["page1"] = answer(await client.call_tool("task_list", {"project": "Calc", "limit": 1}))
        out["page2"] = answer(
            await client.call_tool("task_list", {"project": str(world.project.pk), "limit": 1, "offset": 1})
        )
        out["ready"] = answer(
            await client.call_tool(
                "task_list", {"project": "calc", "status": ["ready", "todo"], "search": "quoted"}
            )
        )
        out["created"] = answer(
            await client.call_tool(
                "task_create",
                {"title": "Document the tokenizer", "body": "Write docs.", "follow_up_of": tokenizer.pk},
            )
        )
        out["plain"] = answer(
            await client.call_tool("task_create", {"project": "calc", "title": "Set up CI", "priority": 4})
        )
        out["updated"] = answer(
            await client.call_tool(
                "task_update",
                {"task": out["plain"]["id"], "priority": 1, "status": "in_progress", "reason": "starting"},
            )
        )
        out["completed"] = answer(
            await client.call_tool(
                "task_complete",
                {"task": out["plain"]["id"], "summary": "CI runs on every push.", "status": "review"},
            )
        )
        out["run"] = answer(
            await client.call_tool(
                "run_start", {"project": "calc", "task": tokenizer.pk, "agent": "scripted"}
            )
        )
        out["status"] = answer(await client.call_tool("run_status", {"run": out["run"]["id"]}))
        out["queue"] = answer(await client.call_tool("queue_status", {"project": "calc"}))
        out["message"] = answer(
            await client.call_tool("run_message", {"run": out["run"]["id"], "body": "Mind the quotes."})
        )
        out["stopped"] = answer(
            await client.call_tool("run_stop", {"run": out["run"]["id"], "reason": "not now"})
        )
        out["logs1"] = answer(await client.call_tool("run_logs", {"run": step_run.pk, "limit": 2}))
        out["logs2"] = answer(await client.call_tool("run_logs", {"run": step_run.pk, "after": 2}))
        return out

    out = over_stdio(subprocess_env, world.tokens["operator"], session)

    # Then reads answer with the same data as the selectors
    assert out["next"]["task"]["title"] == "Write the tokenizer"
    assert "Task #" in out["next"]["reason"] and "priority" in out["next"]["reason"]
    assert out["get"]["title"] == "Write the tokenizer"
    assert 'tokenize("a b")' in out["get"]["spec"] and out["get"]["spec"].startswith("#")
    assert (
        out["page1"]["count"] == 3 and len(out["page1"]["results"]) == 1 and out["page1"]["next_offset"] == 1
    )
    assert out["page2"]["results"][0]["id"] != out["page1"]["results"][0]["id"]
    assert [t["title"] for t in out["ready"]["results"]] == ["Handle quoted strings"]
    # Writes went through the services, as the operator
    follow_up = Task.objects.get(pk=out["created"]["id"])
    assert follow_up.plan_node_id == tokenizer.plan_node_id
    assert TaskDependency.objects.filter(task=follow_up, depends_on=tokenizer).exists()
    assert Event.objects.filter(
        kind="task.created", subject_id=follow_up.pk, actor=world.users["operator"]
    ).exists()
    plain = Task.objects.get(pk=out["plain"]["id"])
    assert (plain.status, plain.priority) == ("review", 1)
    assert (
        Event.objects.filter(kind="task.status", subject_id=plain.pk, actor=world.users["operator"]).count()
        >= 2
    )
    run = ExecutionRun.objects.get(pk=out["run"]["id"])
    assert run.task_id == tokenizer.pk and run.created_by == world.users["operator"]
    assert out["status"]["status"] == "queued" and out["status"]["queue_position"] >= 1
    assert run.pk in [row["run"] for row in out["queue"]["runs"]]
    assert RunMessage.objects.get(pk=out["message"]["id"]).body == "Mind the quotes."
    assert (
        out["stopped"]["status"] == "cancelled" and run.__class__.objects.get(pk=run.pk).status == "cancelled"
    )
    # run_logs pages through the steps
    assert [s["seq"] for s in out["logs1"]["steps"]] == [1, 2] and out["logs1"]["next_after"] == 2
    assert [s["seq"] for s in out["logs2"]["steps"]] == [3] and out["logs2"]["next_after"] is None
    assert out["logs2"]["steps"][0]["output"] == "output 3"


def test_viewer_reads_but_cannot_create_or_stop(world, subprocess_env):
    run = ExecutionRun.objects.create(project=world.project, agent_backend="scripted", prompt="queued run")

    async def session(client):
        return (
            answer(await client.call_tool("task_list", {"project": "calc"})),
            error_text(await client.call_tool("task_create", {"project": "calc", "title": "Sneaky"})),
            error_text(await client.call_tool("run_stop", {"run": run.pk})),
            error_text(
                await client.call_tool("task_complete", {"task": world.tasks["Write the evaluator"].pk})
            ),
        )

    listed, create, stop, complete = over_stdio(subprocess_env, world.tokens["viewer"], session)

    assert listed["count"] == 3
    for refused in (create, stop, complete):
        assert "This needs the operator role on project 'Calc'; you are viewer." in refused
        assert "Traceback" not in refused
    assert not Task.objects.filter(title="Sneaky").exists()
    assert ExecutionRun.objects.get(pk=run.pk).status == "queued"


def test_non_member_gets_the_same_answer_as_for_a_missing_project(world, subprocess_env):
    hidden_task = world.tasks["Write the tokenizer"].pk
    missing_task = Task.objects.order_by("-pk").first().pk + 1000

    async def session(client):
        return [
            error_text(await client.call_tool(name, args))
            for name, args in (
                ("task_list", {"project": "calc"}),
                ("task_list", {"project": "nope"}),
                ("task_get", {"task": hidden_task}),
                ("task_get", {"task": missing_task}),
                ("queue_status", {"project": "calc"}),
            )
        ] + [answer(await client.call_tool("queue_status", {}))]

    hidden, missing, hidden_t, missing_t, queue_hidden, queue_all = over_stdio(
        subprocess_env, world.tokens["outsider"], session
    )

    assert hidden.replace("'calc'", "'X'") == missing.replace("'nope'", "'X'")
    assert "No project 'calc' you can see" in hidden
    assert hidden_t.replace(str(hidden_task), "N") == missing_t.replace(str(missing_task), "N")
    assert "No project 'calc'" in queue_hidden
    assert queue_all["runs"] == []


def test_bad_arguments_are_clear_errors_without_a_traceback(world, subprocess_env):
    task = world.tasks["Write the evaluator"]
    task.body = "Use the key sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789 for the fixtures."
    task.save(update_fields=["body"])

    async def session(client):
        errors = {
            "not_a_number": await client.call_tool("task_get", {"task": "abc"}),
            "bad_status": await client.call_tool("task_update", {"task": task.pk, "status": "flying"}),
            "empty_title": await client.call_tool("task_create", {"project": "calc", "title": ""}),
            "no_project": await client.call_tool("task_list", {}),
            "nothing": await client.call_tool("task_update", {"task": task.pk}),
            "transition": await client.call_tool("task_update", {"task": task.pk, "status": "review"}),
            "unknown_tool": await client.call_tool("task_delete", {"task": task.pk}),
        }
        secret = answer(await client.call_tool("task_get", {"task": task.pk}))
        return {k: error_text(v) for k, v in errors.items()}, secret

    errors, secret = over_stdio(subprocess_env, world.tokens["owner"], session)

    assert "task" in errors["not_a_number"] and "integer" in errors["not_a_number"]
    assert "status" in errors["bad_status"] and "'todo'" in errors["bad_status"]
    assert "title" in errors["empty_title"]
    assert "project is required" in errors["no_project"]
    assert "Nothing to change" in errors["nothing"]
    assert "cannot go from 'todo' to 'review'" in errors["transition"]
    assert "Unknown tool" in errors["unknown_tool"]
    assert all("Traceback" not in text for text in errors.values())
    assert "sk-ant-api03" not in secret["body"] and "[REDACTED:anthropic_key]" in secret["body"]


def test_missing_or_wrong_token_stops_the_server_with_one_line(world, subprocess_env):
    for token, expected in ((None, "No API token"), ("0" * 40, "Invalid API token.")):
        env = {**subprocess_env}
        env.pop("AUTOPILOT_TOKEN", None)
        if token:
            env["AUTOPILOT_TOKEN"] = token
        done = subprocess.run(AUTOPILOT_MCP, env=env, input="", capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert expected in done.stderr and "Traceback" not in done.stderr
        assert done.stdout == ""
