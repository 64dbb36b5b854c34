"""The claude_code backend: the real Claude Code CLI (bundled in claude-agent-sdk) against the fake LLM
server, executed by the real worker in a real git worktree."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
from django.db import connection

from runs import services
from runs.backends.claude_code import ClaudeCodeBackend, bundled_cli
from runs.models import ExecutionRun, ExecutionStep, UsageRecord
from runs.worker import execute_run
from tests.fakellm import error, slow, text, tool
from tests.gitrepo import git

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not ClaudeCodeBackend.available()[0], reason="Claude Code CLI (claude-agent-sdk) not installed"
    ),
]

Status = ExecutionRun.Status
StepStatus = ExecutionStep.Status


@pytest.fixture
def claude_env(settings, fake_llm):
    """Point the backend at the fake server; one retry only (the CLI retries 10 times by default)."""
    settings.ANTHROPIC_BASE_URL = fake_llm.url
    settings.ANTHROPIC_API_KEY = "sk-test-fake-key"
    settings.AUTOPILOT_CLAUDE_CODE_ENV = {"CLAUDE_CODE_MAX_RETRIES": "1"}
    settings.AUTOPILOT_STOP_GRACE_SECONDS = 1
    return fake_llm


def in_cwd(name: str):
    """A tool input builder: an absolute path inside the agent's working directory."""
    return lambda req: {"file_path": f"{req.cwd}/{name}", "content": "hello from claude\n"}


def new_run(project, prompt="write hello", **kw):
    kw.setdefault("max_wall_seconds", 90)  # a test that waits for the wrong thing ends instead of hanging
    return services.run_create(
        project=project,
        prompt=prompt,
        agent_backend="claude_code",
        model="claude-sonnet-4-5",
        enqueue=False,
        **kw,
    )


def in_background(run_id):
    box = {}

    def work():
        try:
            box["status"] = execute_run(run_id)
        finally:
            connection.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, box


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_writes_a_file_runs_a_command_and_commits_on_its_branch(project, claude_env):
    # Given a script: write a file, run a command, answer
    claude_env.script(
        [
            tool(
                "Write", in_cwd("hello.txt"), say="I'll write the file.", input_tokens=120, output_tokens=30
            ),
            tool("Bash", {"command": "cat hello.txt"}),
            text("Wrote hello.txt."),
        ]
    )
    base_before = git(project.repo_path, "rev-parse", "main")
    run = new_run(project)

    # When the worker executes the run with the real Claude Code CLI
    started = time.monotonic()
    status = execute_run(run.pk)
    elapsed = time.monotonic() - started

    # Then it succeeded, the change is committed on its branch, and the base branch is untouched
    run.refresh_from_db()
    print(
        f"claude_code run against the fake server: {elapsed:.2f}s in all, "
        f"queued → first step {(run.first_step_at - run.queued_at).total_seconds():.2f}s"
    )
    assert status == "succeeded", run.status_reason
    assert git(project.repo_path, "show", f"{run.branch}:hello.txt") == "hello from claude"
    assert git(project.repo_path, "rev-parse", "main") == base_before
    assert "hello.txt" not in git(project.repo_path, "ls-tree", "--name-only", "main")
    # Steps: assistant text, the write (with its diff and rollback data), the command with its output,
    # the answer
    steps = list(run.steps.order_by("seq"))
    kinds = [(s.kind, s.tool_name) for s in steps]
    assert kinds == [
        ("llm_turn", "assistant"),
        ("write_file", "Write"),
        ("run_terminal", "Bash"),
        ("llm_turn", "assistant"),
        ("commit", "git commit"),
    ]
    write, bash = steps[1], steps[2]
    assert write.status == bash.status == StepStatus.COMPLETED
    assert "+hello from claude" in write.diff
    assert write.rollback == {"path": "hello.txt", "before_b64": None, "absent": True}
    assert bash.input == {"command": "cat hello.txt"}
    assert "hello from claude" in bash.output
    # Cost, turns, usage per model call and the session id for resume
    assert run.turns == 3
    assert run.backend_session_id
    assert run.result_summary == "Wrote hello.txt."
    records = UsageRecord.objects.filter(run=run)
    assert records.count() >= 3
    assert run.input_tokens >= 120 + 100 + 100
    assert run.cost_usd > 0
    # The CLI saw only what we gave it: the key from settings, the CLI switches, the run's cwd
    first = claude_env.model_requests()[0]
    assert first.api_key == "sk-test-fake-key"
    assert first.path == "/v1/messages" and first.stream
    assert first.cwd == str(run.worktree_path)


def test_cli_environment_does_not_inherit_credentials(project, claude_env):
    # Given an ambient credential in the worker's environment
    os.environ["AWS_SECRET_ACCESS_KEY"] = "ambient-secret-value-123"
    os.environ["ANTHROPIC_AUTH_TOKEN"] = "ambient-anthropic-token"
    project.command_allowlist = ["printenv"]
    project.save(update_fields=["command_allowlist"])
    try:
        claude_env.script([tool("Bash", {"command": "printenv"}), text("ok")])
        run = new_run(project)
        # When the agent prints its environment
        assert execute_run(run.pk) == "succeeded"
    finally:
        del os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["ANTHROPIC_AUTH_TOKEN"]
    bash = ExecutionStep.objects.get(run=run, kind="run_terminal")
    # Then neither ambient value reached it, and HOME is the run's private home
    assert "ambient-secret-value-123" not in bash.output
    assert "ambient-anthropic-token" not in bash.output
    assert f"run-homes/run-{run.pk}" in bash.output
    assert "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1" in bash.output


def test_api_error_fails_the_run_with_the_reason(project, claude_env):
    # Given the API answers 400 to every request
    claude_env.script(
        [
            error(
                400,
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": "tool schema rejected by the fake"},
                },
            )
        ]
    )
    run = new_run(project)
    # When the run executes
    status = execute_run(run.pk)
    # Then it failed with the error as its reason (judged by is_error, not subtype)
    run.refresh_from_db()
    assert status == "failed"
    assert "Claude Code reported an error" in run.status_reason
    assert "tool schema rejected by the fake" in run.status_reason


def test_server_error_fails_after_one_retry(project, claude_env):
    claude_env.script([error(500)])
    run = new_run(project)
    assert execute_run(run.pk) == "failed"
    run.refresh_from_db()
    assert "500" in run.status_reason
    assert len(claude_env.model_requests()) == 2  # first try + CLAUDE_CODE_MAX_RETRIES=1


def test_risky_command_waits_for_approval_and_runs_when_approved(project, claude_env, operator):
    # Given a command outside the allowlist (semi_auto: risky → approval)
    project.autonomy_mode = "semi_auto"
    project.save(update_fields=["autonomy_mode"])
    claude_env.script([tool("Bash", {"command": "rm -f nothing.txt"}), text("done")])
    run = new_run(project)
    thread, box = in_background(run.pk)

    # When the run reaches the risky step
    step = wait_for(
        lambda: ExecutionStep.objects.filter(run=run, status=StepStatus.NEEDS_APPROVAL).first(),
        what="a step needing approval",
    )
    assert ExecutionRun.objects.get(pk=run.pk).status == Status.WAITING_APPROVAL
    assert step.kind == "run_terminal" and step.risky and "rm" in step.risk_reason
    # and an operator approves it
    services.run_approve(step=step, actor=operator, note="fine")
    thread.join(timeout=90)

    # Then the command ran, the step records who approved, and the run succeeded
    assert box["status"] == "succeeded"
    step.refresh_from_db()
    assert step.status == StepStatus.COMPLETED
    assert step.decided_by == operator
    assert len(claude_env.model_requests()) == 2


def test_rejected_step_is_refused_with_the_message_back_to_the_model(project, claude_env, operator):
    project.autonomy_mode = "semi_auto"
    project.save(update_fields=["autonomy_mode"])
    claude_env.script([tool("Bash", {"command": "rm -f important.txt"}), text("ok, I won't")])
    run = new_run(project)
    thread, box = in_background(run.pk)
    step = wait_for(
        lambda: ExecutionStep.objects.filter(run=run, status=StepStatus.NEEDS_APPROVAL).first(),
        what="a step needing approval",
    )

    # When the operator rejects it with a message
    services.run_reject(step=step, actor=operator, message="Do not delete files; rename it instead.")
    thread.join(timeout=90)

    # Then the step is skipped, and the model's next request carries the rejection as the tool's error result
    assert box["status"] == "succeeded"
    step.refresh_from_db()
    assert step.status == StepStatus.SKIPPED and step.decided_by == operator
    second = claude_env.model_requests()[1]
    results = [
        b
        for m in second.body["messages"]
        if isinstance(m.get("content"), list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]
    assert "rename it instead" in json.dumps(results)
    assert results[-1].get("is_error") is True


def test_path_escape_is_refused_without_asking(project, claude_env):
    # Given the model tries to write outside the worktree
    claude_env.script([tool("Write", {"file_path": "/etc/autopilot-escape.txt", "content": "x"}), text("ok")])
    run = new_run(project)
    # When it runs
    assert execute_run(run.pk) == "succeeded"
    # Then the write was refused (skipped step), nothing was written, and the model was told why
    step = ExecutionStep.objects.get(run=run, kind="write_file")
    assert step.status == StepStatus.SKIPPED
    assert "outside the workspace" in step.output
    assert not os.path.exists("/etc/autopilot-escape.txt")
    assert "outside the workspace" in json.dumps(claude_env.model_requests()[1].body["messages"][-1])


def test_message_reaches_the_running_agent(project, claude_env, operator):
    # Given a slow first answer, so the run is mid-turn when the message arrives
    claude_env.script([slow(2.5, tool("Bash", {"command": "ls"})), text("Done, with tests.")])
    run = new_run(project)
    thread, box = in_background(run.pk)
    claude_env.wait_for_requests(1)

    # When an operator sends a message while the agent works
    services.run_message(run=run, body="Please also add tests.", actor=operator)
    thread.join(timeout=90)

    # Then the run was not stopped, and the next model request carries the message
    assert box["status"] == "succeeded"
    later = claude_env.model_requests()[1:]
    assert any("Please also add tests." in json.dumps(r.body["messages"]) for r in later)
    assert ExecutionStep.objects.filter(run=run, kind="message").exists()


def test_stop_mid_run_cancels_and_leaves_no_process(project, claude_env, operator):
    # Given a very slow model answer
    claude_env.script([slow(120, text("too late"))])
    run = new_run(project)
    thread, box = in_background(run.pk)
    claude_env.wait_for_requests(1)
    pids = wait_for(lambda: ExecutionRun.objects.get(pk=run.pk).child_pids, what="the CLI's pid")

    # When an operator stops it
    services.run_stop(run=run, actor=operator, reason="changed my mind")
    thread.join(timeout=60)

    # Then the run is cancelled and the CLI process group is gone
    assert not thread.is_alive()
    run.refresh_from_db()
    assert run.status == Status.CANCELLED
    for pid in pids:
        wait_for(lambda pid=pid: not _alive(pid), timeout=15, what=f"process {pid} to exit")


def test_resume_continues_the_session(project, claude_env):
    # Given a finished run
    claude_env.script([text("first answer")])
    first = new_run(project)
    assert execute_run(first.pk) == "succeeded"
    first.refresh_from_db()
    session = first.backend_session_id

    # When it is resumed with a new prompt
    claude_env.script([text("second answer")])
    resumed = services.run_resume(run=first, prompt="and now the follow-up", enqueue=False)
    assert execute_run(resumed.pk) == "succeeded"

    # Then the CLI continued the same conversation: the earlier exchange is in the new request
    last = claude_env.model_requests()[-1]
    body = json.dumps(last.body["messages"])
    assert "first answer" in body and "and now the follow-up" in body
    resumed.refresh_from_db()
    assert resumed.backend_session_id
    assert session


def test_planted_secret_in_output_is_redacted(project, claude_env):
    # Given a file in the repo holding a secret, which the agent prints
    secret = "sk-ant-api03-" + "A" * 40
    claude_env.script(
        [
            tool("Write", lambda req: {"file_path": f"{req.cwd}/config.txt", "content": f"key={secret}\n"}),
            tool("Bash", {"command": "cat config.txt"}),
            text(f"The key is {secret}"),
        ]
    )
    run = new_run(project)
    assert execute_run(run.pk) == "succeeded"
    # Then no step, diff or summary stores it
    run.refresh_from_db()
    for step in run.steps.all():
        assert secret not in step.output and secret not in step.diff and secret not in json.dumps(step.input)
    assert secret not in run.result_summary


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_bundled_cli_exists():
    assert bundled_cli() is not None and bundled_cli().exists()


def test_a_claude_code_file_step_rolls_back_exactly(project, claude_env):
    # Given a run where Claude Code edits an existing file
    original = "README.md"  # tests.gitrepo.make_repo commits "# Demo"
    claude_env.script(
        [
            tool(
                "Read", lambda req: {"file_path": f"{req.cwd}/{original}"}
            ),  # Claude Code edits only files it read
            tool(
                "Edit",
                lambda req: {
                    "file_path": f"{req.cwd}/{original}",
                    "old_string": "#",
                    "new_string": "## changed",
                },
            ),
            text("edited"),
        ]
    )
    run = new_run(project)
    assert execute_run(run.pk) == "succeeded", ExecutionRun.objects.get(pk=run.pk).status_reason
    step = ExecutionStep.objects.get(run=run, kind="edit_file")
    assert step.status == StepStatus.COMPLETED and "## changed" in step.diff
    before = git(project.repo_path, "show", f"main:{original}")

    # When that one step is rolled back
    services.step_rollback(step=step)

    # Then the file on the run's branch is byte-identical to before the step
    run.refresh_from_db()
    assert git(project.repo_path, "show", f"{run.branch}:{original}") == before
    step.refresh_from_db()
    assert step.status == StepStatus.ROLLED_BACK
