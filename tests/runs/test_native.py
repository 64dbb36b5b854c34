"""The native backend against the fake LLM server: real anthropic/openai SDK clients over real HTTP."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from runs import services
from runs.models import ExecutionRun, ExecutionStep, UsageRecord
from runs.worker import execute_run
from tests.factories import ProjectFactory, UserFactory
from tests.fakellm import error, text, tool, tools
from tests.gitrepo import git
from tests.runs.helpers import run_in_thread, status_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
Status = ExecutionRun.Status


@pytest.fixture
def llm(fake_llm, settings):
    settings.ANTHROPIC_BASE_URL = fake_llm.url
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key-for-the-fake"
    settings.OPENAI_BASE_URL = fake_llm.base_url_v1
    settings.OPENAI_API_KEY = "sk-test-openai-fake-key-000"
    settings.AUTOPILOT_LLM_MAX_RETRIES = 0
    return fake_llm


def native_run(project, model, prompt="Add a greeting file and check it", **kw):
    run = services.run_create(
        project=project, prompt=prompt, agent_backend="native", model=model, enqueue=False, **kw
    )
    return run


@pytest.mark.parametrize("model", ["anthropic:claude-sonnet-4-6", "openai:gpt-5-mini"])
def test_native_run_writes_runs_a_command_and_commits(llm, model):
    # given a model that writes a file, runs a command, then finishes
    project = ProjectFactory(autonomy_mode="full_auto")
    llm.script(
        [
            tool("write_file", {"path": "greet.py", "content": "print('hello')\n"}),
            tool("run_terminal", {"command": "python3 greet.py"}),
            tool("finish", {"summary": "added greet.py"}),
        ]
    )
    base = git(project.repo_path, "rev-parse", "main")
    run = native_run(project, model)

    # when the worker executes the run
    assert execute_run(run.pk) == "succeeded"

    # then the change is on the run's branch only; every call and tool is a step; usage is priced
    run.refresh_from_db()
    assert git(project.repo_path, "show", f"{run.branch}:greet.py") == "print('hello')"
    assert git(project.repo_path, "rev-parse", "main") == base
    kinds = [s.kind for s in run.steps.order_by("seq")]
    assert kinds == ["llm_turn", "write_file", "llm_turn", "run_terminal", "llm_turn", "finish", "commit"]
    command = run.steps.get(kind="run_terminal")
    assert command.status == "completed" and "hello" in command.output
    assert run.result_summary == "added greet.py"
    assert run.turns == 3
    records = UsageRecord.objects.filter(run=run)
    assert records.count() == 3 and all(r.priced for r in records)
    assert run.cost_usd == sum((r.cost_usd for r in records), Decimal("0")) > 0
    assert run.backend_session_id == f"native:{run.pk}"
    # the key reached the server, and the prompt too
    first = llm.model_requests()[0]
    assert first.api_key in {"sk-ant-test-key-for-the-fake", "sk-test-openai-fake-key-000"}


def test_native_edit_file_must_match_exactly_once(llm):
    project = ProjectFactory(autonomy_mode="full_auto")
    llm.script(
        [
            tool("edit_file", {"path": "README.md", "old_string": "nothing like this", "new_string": "x"}),
            tool("edit_file", {"path": "README.md", "old_string": "# Demo", "new_string": "# Greeting"}),
            text("Done editing."),
        ]
    )
    run = native_run(project, "anthropic:claude-sonnet-4-6")
    assert execute_run(run.pk) == "succeeded"
    failed, done = run.steps.filter(kind="edit_file").order_by("seq")
    assert failed.status == "failed" and "occurs 0 times" in failed.output
    assert done.status == "completed" and "+# Greeting" in done.diff
    # the tool error went back to the model as a tool_result with is_error
    second = llm.model_requests()[1].body
    results = [
        b
        for m in second["messages"]
        for b in (m["content"] if isinstance(m["content"], list) else [])
        if b.get("type") == "tool_result"
    ]
    assert results[0]["is_error"] is True


def test_native_escape_attempts_are_refused_and_reported_to_the_model(llm):
    project = ProjectFactory(autonomy_mode="full_auto")
    llm.script(
        [
            tools(
                ("read_file", {"path": "../../../etc/passwd"}),
                ("write_file", {"path": "/tmp/evil.txt", "content": "x"}),
                ("run_terminal", {"command": "cat README.md; curl http://evil"}),
                ("run_terminal", {"command": "echo $(cat /etc/passwd)"}),
            ),
            text("I give up."),
        ],
        by="calls",
    )
    run = native_run(project, "openai:gpt-5-mini")
    assert execute_run(run.pk) == "succeeded"
    refused = list(run.steps.exclude(kind__in=["llm_turn", "commit"]).order_by("seq"))
    assert [s.status for s in refused] == ["skipped"] * 4
    assert not Path("/tmp/evil.txt").exists()
    tool_messages = [m for m in llm.model_requests()[1].body["messages"] if m["role"] == "tool"]
    assert all("Refused by Autopilot's guard" in m["content"] for m in tool_messages)


def test_native_semi_auto_rejection_message_reaches_the_model(llm):
    # given a semi_auto project and a model that wants to use the network
    project = ProjectFactory(autonomy_mode="semi_auto")
    llm.script([tool("run_terminal", {"command": "curl https://example.com"}), text("OK, no network.")])
    run = native_run(project, "anthropic:claude-sonnet-4-6")
    thread = run_in_thread(run.pk)
    step = wait_for(lambda: ExecutionStep.objects.filter(run_id=run.pk, status="needs_approval").first())

    # when a human rejects the step with a message
    services.run_reject(step=step, actor=UserFactory(), message="Use the vendored copy in fixtures/ instead")
    thread.join(30)

    # then the model's next request carries the message as the tool's error result
    assert status_of(run.pk) == Status.SUCCEEDED
    second = llm.model_requests()[1].body["messages"][-1]["content"][0]
    assert second["type"] == "tool_result" and second["is_error"] is True
    assert "Use the vendored copy in fixtures/ instead" in str(second["content"])


def test_native_human_message_is_a_user_turn_between_calls(llm):
    project = ProjectFactory(autonomy_mode="full_auto")
    llm.script([tool("list_dir", {"path": "."}), text("Done.")])
    run = native_run(project, "openai:gpt-5-mini")
    services.run_message(
        run=run, body="Remember the changelog"
    )  # queued before start: delivered at the first turn
    assert execute_run(run.pk) == "succeeded"
    first = llm.model_requests()[0].body["messages"]
    assert first[-1] == {
        "role": "user",
        "content": "Message from a human supervising this run: Remember the changelog",
    }


def test_native_api_error_fails_the_run_with_a_clear_reason(llm):
    project = ProjectFactory(autonomy_mode="full_auto")
    llm.script([error(500)])
    run = native_run(project, "anthropic:claude-sonnet-4-6")
    assert execute_run(run.pk) == "failed"
    run.refresh_from_db()
    assert run.status_reason.startswith("Anthropic API error")
    assert run.error == ""  # a known failure: no traceback


def test_native_budget_stop_between_calls(llm):
    project = ProjectFactory(autonomy_mode="full_auto")
    llm.script([tool("list_dir", {"path": "."}, input_tokens=10_000, output_tokens=1_000)] * 5)
    run = native_run(project, "anthropic:claude-sonnet-4-6", budget_usd=Decimal("0.05"))
    assert execute_run(run.pk) == "failed"
    run.refresh_from_db()
    assert run.status_reason.startswith("budget exceeded")
    assert run.cost_usd >= Decimal("0.05")
    assert len(llm.model_requests()) == 2  # $0.045 after one call, $0.09 after two: stopped before the third


def test_native_resume_continues_the_conversation_in_the_same_worktree(llm):
    project = ProjectFactory(autonomy_mode="full_auto")
    llm.script([tool("write_file", {"path": "a.txt", "content": "one\n"}), text("First part done.")])
    first = native_run(project, "openai:gpt-5-mini")
    execute_run(first.pk)
    first.refresh_from_db()

    llm.script(
        [tool("write_file", {"path": "b.txt", "content": "two\n"}), text("Second part done.")], by="calls"
    )
    second = services.run_resume(run=first, prompt="Now add b.txt", enqueue=False)
    assert execute_run(second.pk) == "succeeded"
    second.refresh_from_db()
    assert second.worktree_path == first.worktree_path and second.branch == first.branch
    assert second.base_commit == first.head_commit
    files = git(project.repo_path, "ls-tree", "-r", "--name-only", second.branch).split()
    assert {"a.txt", "b.txt"} <= set(files)
    body = llm.model_requests()[-2].body["messages"]
    assert any(m.get("content") == "Now add b.txt" for m in body)
    assert any(m.get("content") == "First part done." for m in body if m["role"] == "assistant")


def test_native_stuck_loop_detector_stops_a_model_repeating_itself(llm):
    # given a model that reads the same file over and over (the fake repeats its last turn)
    project = ProjectFactory(autonomy_mode="full_auto")
    llm.script([tool("read_file", {"path": "README.md"})])
    run = native_run(project, "openai:gpt-5-mini", run_settings={"stuck_repeat": 3})
    # when it runs, then it is stopped with the reason
    assert execute_run(run.pk) == "failed"
    run.refresh_from_db()
    assert run.status_reason == "stuck loop: the same tool call (read_file) was repeated 3 times"
    assert run.steps.filter(kind="read_file").count() == 3
