"""`claude_code`: Claude Code driven through `claude-agent-sdk` (its wheel bundles the CLI).

How a run maps onto the SDK (facts in ../shared/AGENT-PROTOCOLS.md):

- One `ClaudeSDKClient` session per run, cwd = the run's worktree (or monorepo subdirectory),
  permission mode `acceptEdits` (works as root, unlike bypassPermissions), model from the run or
  settings.AUTOPILOT_DEFAULT_MODEL, `resume=` the previous run's session id when resuming.
- Environment: the SDK passes the parent's whole environment to the CLI, so every inherited
  variable is overridden with "" and only the run's scrubbed env (PATH, private HOME, LANG…), the
  Anthropic base URL + key from settings, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 and
  settings.AUTOPILOT_CLAUDE_CODE_ENV are set. No ambient credential reaches the agent.
- Guardrails and approvals: a PreToolUse hook sees every tool call (hooks run in every permission
  mode, unlike `can_use_tool`, which acceptEdits skips for edits and read-only commands). It asks
  `ctx.authorize()` (runs/guard.py policy: path confinement, command policy, risk), opens the step,
  waits for a human in semi_auto when the call is risky, and answers allow / deny-with-a-message.
  `can_use_tool` applies the same gate for any call the CLI still asks about.
- Steps: assistant text → an `llm_turn` step; each tool_use paired with its tool_result → one step
  (Write→write_file, Edit/MultiEdit→edit_file, Read→read_file, Bash→run_terminal, Grep/Glob→search,
  LS→list_dir, other→tool) with input, output, is_error; file changes get a unified diff and
  rollback data (the file's previous bytes), so a Claude Code step can be rolled back like a native one.
- Usage per model call from the raw stream events (message_start / message_delta); the result
  message gives total_cost_usd, num_turns and the session id. Failure is judged by `is_error`.
- Human messages reach the running agent as new user messages on the same session (client.query);
  stop → client.interrupt(); the CLI runs in its own process group (setsid) registered with the
  context, so a forced stop kills it and everything it started.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings

from runs import agent_mcp
from runs.backends.base import (
    Backend,
    BackendError,
    BackendResult,
    LimitExceeded,
    RunContext,
    RunStopped,
    StepHandle,
)
from runs.guard import kill_group, sandbox_argv, sandbox_path_variable, sandbox_readonly_paths
from runs.models import ExecutionStep
from runs.tools import unified_diff
from runs.workspace import file_snapshot

Kind = ExecutionStep.Kind

TOOL_KINDS: dict[str, str] = {
    "Write": Kind.WRITE_FILE,
    "Edit": Kind.EDIT_FILE,
    "MultiEdit": Kind.EDIT_FILE,
    "NotebookEdit": Kind.EDIT_FILE,
    "Read": Kind.READ_FILE,
    "NotebookRead": Kind.READ_FILE,
    "Bash": Kind.RUN_TERMINAL,
    "BashOutput": Kind.RUN_TERMINAL,
    "Grep": Kind.SEARCH,
    "Glob": Kind.SEARCH,
    "LS": Kind.LIST_DIR,
}
FILE_CHANGE_TOOLS = {"Write", "Edit", "MultiEdit", "NotebookEdit"}
PATH_KEYS = ("file_path", "notebook_path", "path")
# Inherited variables the SDK itself owns; everything else inherited is blanked.
SDK_OWNED = ("CLAUDE_AGENT_SDK_", "CLAUDE_CODE_ENTRYPOINT")
MESSAGE_POLL_SECONDS = 0.5


async def in_thread(fn, /, *args: Any, **kwargs: Any) -> Any:
    """Run a synchronous (database-touching) call in a worker thread and close that thread's database
    connections afterwards: the event loop's threads come and go with each run, and a connection left
    open in one would leak (and keep the database busy) until garbage collection."""

    def call() -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            from django.db import connections

            connections.close_all()

    return await asyncio.to_thread(call)


def bundled_cli() -> Path | None:
    """The Claude Code binary shipped inside the claude-agent-sdk wheel (or settings.AUTOPILOT_CLAUDE_CLI)."""
    configured = getattr(settings, "AUTOPILOT_CLAUDE_CLI", "") or ""
    if configured:
        return Path(configured)
    try:
        import claude_agent_sdk
    except ImportError:
        return None
    path = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    return path if path.exists() else (Path(found) if (found := shutil.which("claude")) else None)


def tool_kind(name: str) -> str:
    return TOOL_KINDS.get(name, Kind.TOOL)


def result_text(content: Any) -> str:
    """A tool_result's content (a string or a list of blocks) as text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                parts.append(str(block.get("text") or ("[image]" if block.get("type") == "image" else "")))
            else:
                parts.append(str(block))
        return "\n".join(p for p in parts if p)
    return str(content)


def cli_env(ctx: RunContext, *, inherited: dict[str, str] | None = None) -> dict[str, str]:
    """The CLI's environment as `options.env` (which the SDK lays over os.environ).

    Every inherited variable is blanked, then the run's scrubbed env, the Anthropic endpoint and the
    CLI switches are set. The result contains no value from the parent environment except PATH/LANG
    (through ctx.env)."""
    inherited = os.environ if inherited is None else inherited
    env = {k: "" for k in inherited if not k.startswith(SDK_OWNED)}
    env.update(ctx.env)
    env.update(ctx.llm_env("anthropic"))
    env.update(
        {
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "SHELL": shutil.which("bash") or "/bin/sh",
        }
    )
    env.update(
        {str(k): str(v) for k, v in (getattr(settings, "AUTOPILOT_CLAUDE_CODE_ENV", {}) or {}).items()}
    )
    return env


def autopilot_mcp_servers(ctx: RunContext) -> dict[str, Any]:
    """Autopilot's own MCP server for this run, in process and scoped by a run token (runs.agent_mcp):
    the agent reads its task and spec section, files follow-up tasks and reports its result through
    `mcp__autopilot__*` tools, recorded as steps like any other tool call."""
    provider = agent_mcp.provider()
    run = getattr(ctx, "run", None)
    if provider is None or run is None or getattr(run, "pk", None) is None:
        return {}
    name = agent_mcp.SERVER_NAME
    return {name: {"type": "sdk", "name": name, "instance": provider.sdk_server(run)}}


@dataclass
class _PendingTool:
    handle: StepHandle
    name: str
    rel_path: str = ""
    abs_path: Path | None = None
    snapshot: dict[str, Any] | None = None


@dataclass
class _State:
    ctx: RunContext
    pending: dict[str, _PendingTool] = field(default_factory=dict)
    decisions: dict[str, tuple[str, str]] = field(default_factory=dict)
    tool_inputs: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    commands_seen: set[str] = field(default_factory=set)
    outstanding: set[str] = field(default_factory=set)
    taken: set[str] = field(default_factory=set)
    fatal: BaseException | None = None
    closing: bool = False
    session_id: str = ""
    call_usage: dict[str, int] = field(default_factory=dict)
    call_model: str = ""


class ClaudeCodeBackend(Backend):
    name = "claude_code"
    label = "Claude Code"

    def __init__(self) -> None:
        self.sandbox = "unsandboxed"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._send_lock: asyncio.Lock | None = None

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import claude_agent_sdk  # noqa: F401
        except ImportError:
            return False, "the claude-agent-sdk package is not installed (pip install claude-agent-sdk)"
        cli = bundled_cli()
        if cli is None or not cli.exists():
            return False, "the Claude Code CLI was not found (claude-agent-sdk wheel without _bundled/claude)"
        return True, ""

    # -- entry points ---------------------------------------------------------------------------

    def run(self, ctx: RunContext) -> BackendResult:
        return asyncio.run(self._run(ctx))

    def interrupt(self) -> None:
        loop, client = self._loop, self._client
        if loop is None or client is None or loop.is_closed():
            return

        def _schedule() -> None:
            task = loop.create_task(client.interrupt())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

        try:
            loop.call_soon_threadsafe(_schedule)
        except RuntimeError:  # loop closed meanwhile
            pass

    # -- options --------------------------------------------------------------------------------

    def model_name(self, ctx: RunContext) -> str:
        model = ctx.model or getattr(settings, "AUTOPILOT_DEFAULT_MODEL", "") or ""
        return model.split(":", 1)[1] if model.startswith("anthropic:") else model

    def cli_path(self, ctx: RunContext) -> str:
        """A tiny wrapper that starts the CLI as the leader of a new process group (setsid), so a
        forced stop kills the CLI and every command it started, and inside the run's sandbox when
        bubblewrap is available (runs/guard.py sandbox_argv: the same filesystem view as guarded
        commands -- worktree and private HOME writable, system read-only, nothing of the data
        directory, other worktrees or the user's files -- with the network on, which the CLI needs for
        its model API). So the CLI's own Read/Bash tools, approved or not, see only that view."""
        cli = bundled_cli()
        if cli is None:
            raise BackendError("Claude Code CLI not found.")
        cli_argv, self.sandbox = sandbox_argv(
            [str(Path(cli).resolve())],
            cwd=Path(ctx.cwd),
            writable=[Path(ctx.workspace), Path(ctx.home)],
            network=True,
            readonly=[Path(cli).resolve().parent],
        )
        setsid = shutil.which("setsid")
        if not setsid and len(cli_argv) == 1:
            return str(cli)
        wrapper_dir = Path(ctx.artifacts_dir) / "bin"
        wrapper_dir.mkdir(parents=True, exist_ok=True)
        wrapper = wrapper_dir / "claude"
        prefix = [setsid] if setsid else []
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.join([*prefix, *cli_argv])} "$@"\n')
        wrapper.chmod(0o700)
        return str(wrapper)

    def prepare_resume(self, ctx: RunContext) -> str:
        """Copy the previous run's session transcript into this run's private HOME (each run has its
        own HOME, and the CLI looks the session up there)."""
        session_id = ctx.resume_session_id
        if not session_id:
            return ""
        previous = getattr(ctx.run, "resumed_from_id", None)
        sources = []
        if previous:
            sources.append(Path(ctx.home).parent / f"run-{previous}" / ".claude" / "projects")
        target_root = Path(ctx.home) / ".claude" / "projects"
        for root in sources:
            if not root.is_dir():
                continue
            for transcript in root.glob(f"*/{session_id}.jsonl"):
                # The CLI keys projects by the cwd with every non-alphanumeric character as "-".
                slug = "".join(c if c.isalnum() else "-" for c in str(Path(ctx.cwd).resolve()))
                for folder in {transcript.parent.name, slug}:
                    dest = target_root / folder
                    dest.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(transcript, dest / transcript.name)
                companion = transcript.with_suffix("")
                if companion.is_dir():
                    shutil.copytree(companion, target_root / slug / companion.name, dirs_exist_ok=True)
        return session_id

    def options(self, ctx: RunContext, state: _State):
        from claude_agent_sdk import ClaudeAgentOptions, HookMatcher

        async def pre_tool_use(
            hook_input: dict[str, Any], tool_use_id: str | None, _context: Any
        ) -> dict[str, Any]:
            behavior, reason = await self._gate(
                state,
                tool_use_id or hook_input.get("tool_use_id") or "",
                hook_input.get("tool_name", ""),
                hook_input.get("tool_input") or {},
            )
            return {
                "hookSpecificOutput": {
                    "hookEventName": "PreToolUse",
                    "permissionDecision": behavior,
                    "permissionDecisionReason": reason
                    or ("Allowed by Autopilot's guard." if behavior == "allow" else ""),
                }
            }

        async def can_use_tool(tool_name: str, tool_input: dict[str, Any], context: Any):
            from claude_agent_sdk import PermissionResultAllow, PermissionResultDeny

            behavior, reason = await self._gate(
                state, getattr(context, "tool_use_id", None) or "", tool_name, tool_input
            )
            if behavior == "allow":
                return PermissionResultAllow()
            return PermissionResultDeny(message=reason or "Refused by Autopilot's guard.")

        resume = self.prepare_resume(ctx)
        cli_path = self.cli_path(ctx)
        env = cli_env(ctx)
        if self.sandbox != "unsandboxed":
            env["PATH"] = sandbox_path_variable(sandbox_readonly_paths())
        return ClaudeAgentOptions(
            cwd=str(ctx.cwd),
            cli_path=cli_path,
            env=env,
            model=self.model_name(ctx) or None,
            permission_mode="acceptEdits",
            can_use_tool=can_use_tool,
            hooks={
                "PreToolUse": [
                    HookMatcher(matcher=None, hooks=[pre_tool_use], timeout=float(ctx.max_wall_seconds))
                ]
            },
            include_partial_messages=True,
            resume=resume or None,
            setting_sources=[],
            stderr=lambda line: None,
            mcp_servers=autopilot_mcp_servers(ctx),
        )

    # -- the session ----------------------------------------------------------------------------

    async def _run(self, ctx: RunContext) -> BackendResult:
        from claude_agent_sdk import ClaudeSDKClient
        from claude_agent_sdk._errors import ClaudeSDKError

        self._loop = asyncio.get_running_loop()
        self._send_lock = asyncio.Lock()
        state = _State(ctx)
        client = ClaudeSDKClient(self.options(ctx, state))
        pid = None
        try:
            await client.connect()
        except ClaudeSDKError as exc:
            raise BackendError(f"Claude Code could not start: {exc}") from exc
        self._client = client
        pump: asyncio.Task | None = None
        clean = False
        try:
            process = getattr(getattr(client, "_transport", None), "_process", None)
            pid = getattr(process, "pid", None)
            if pid:
                await in_thread(ctx.register_process, pid)
            if ctx.stop_requested:
                raise RunStopped("stopped by request")
            await self._send(client, state, ctx.prompt)
            pump = asyncio.create_task(self._pump_messages(client, state))
            result = await self._consume(client, state)
            clean = True
            return result
        except ClaudeSDKError as exc:
            if ctx.stop_requested:
                raise RunStopped("stopped by request") from exc
            raise BackendError(f"Claude Code failed: {exc}") from exc
        finally:
            state.closing = True
            if pump is not None:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
            self._client = None
            try:
                if clean:
                    await client.disconnect()
                else:
                    await self._hard_disconnect(client)
            finally:
                if pid:
                    await in_thread(ctx.unregister_process, pid)

    async def _hard_disconnect(self, client: Any) -> None:
        """After a stop or a limit: interrupt, then end the process group right away."""
        process = getattr(getattr(client, "_transport", None), "_process", None)
        try:
            await asyncio.wait_for(client.interrupt(), timeout=2)
        except Exception:  # noqa: BLE001 - the process may already be gone
            pass
        if process is not None and process.returncode is None:
            kill_group(process.pid, 15)
        try:
            await asyncio.wait_for(client.disconnect(), timeout=10)
        except Exception:  # noqa: BLE001
            if process is not None and process.returncode is None:
                kill_group(process.pid)

    async def _send(self, client: Any, state: _State, text: str) -> None:
        message_id = str(uuid.uuid4())
        state.outstanding.add(message_id)

        async def one():
            yield {
                "type": "user",
                "message": {"role": "user", "content": text},
                "parent_tool_use_id": None,
                "uuid": message_id,
            }

        await client.query(one())

    async def _pump_messages(self, client: Any, state: _State) -> None:
        """Deliver human messages to the running agent as they arrive (without stopping it)."""
        while not state.closing:
            await asyncio.sleep(MESSAGE_POLL_SECONDS)
            await self._deliver_messages(client, state)

    async def _deliver_messages(self, client: Any, state: _State) -> int:
        assert self._send_lock is not None
        async with self._send_lock:
            if state.closing:
                return 0
            messages = await in_thread(state.ctx.take_messages)
            for body in messages:
                await self._send(client, state, body)
            return len(messages)

    async def _consume(self, client: Any, state: _State) -> BackendResult:
        from claude_agent_sdk import AssistantMessage, ResultMessage, SystemMessage, UserMessage
        from claude_agent_sdk.types import StreamEvent

        ctx = state.ctx
        async for message in client.receive_messages():
            if state.fatal is not None:
                raise state.fatal
            if isinstance(message, StreamEvent):
                await self._on_stream_event(state, message.event)
            elif isinstance(message, SystemMessage):
                if message.subtype == "init":
                    session_id = str(message.data.get("session_id") or "")
                    if session_id and session_id != state.session_id:
                        state.session_id = session_id
                        await in_thread(ctx.set_session_id, session_id)
            elif isinstance(message, AssistantMessage):
                if message.parent_tool_use_id:
                    continue  # a subagent's inner turn; its tool calls are gated and recorded like any other
                await self._on_assistant(state, message)
            elif isinstance(message, UserMessage):
                await self._on_user(state, message)
            elif isinstance(message, ResultMessage):
                if state.fatal is not None:
                    raise state.fatal
                if ctx.stop_requested:
                    raise RunStopped("stopped by request")
                state.taken |= set(
                    message.user_message_uuids
                    or ([message.user_message_uuid] if message.user_message_uuid else state.outstanding)
                )
                if message.session_id:
                    state.session_id = message.session_id
                if message.is_error:
                    return self._result(message, state)
                await self._deliver_messages(client, state)
                assert self._send_lock is not None
                async with self._send_lock:
                    if state.outstanding <= state.taken:
                        state.closing = True
                        return self._result(message, state)
        if ctx.stop_requested:
            raise RunStopped("stopped by request")
        raise BackendError("Claude Code ended without a result message.")

    def _result(self, message: Any, state: _State) -> BackendResult:
        cost = message.total_cost_usd
        error = ""
        if message.is_error:
            status = (
                f" (HTTP {message.api_error_status})" if getattr(message, "api_error_status", None) else ""
            )
            detail = (message.result or "; ".join(message.errors or []) or message.subtype or "").strip()
            error = f"Claude Code reported an error{status}: {detail[:2000]}"
        return BackendResult(
            summary=(message.result or "").strip() if not message.is_error else "",
            session_id=message.session_id or state.session_id,
            succeeded=not message.is_error,
            error=error,
            total_cost_usd=Decimal(str(cost)) if cost is not None else None,
            turns=message.num_turns,
            usage={},  # per-call usage was recorded from the stream; the worker adds only the cost difference
        )

    # -- stream handlers ------------------------------------------------------------------------

    async def _on_stream_event(self, state: _State, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "message_start":
            msg = event.get("message") or {}
            usage = msg.get("usage") or {}
            state.call_model = msg.get("model") or ""
            state.call_usage = {
                "input_tokens": int(usage.get("input_tokens") or 0),
                "cache_read_tokens": int(usage.get("cache_read_input_tokens") or 0),
                "cache_write_tokens": int(usage.get("cache_creation_input_tokens") or 0),
                "output_tokens": int(usage.get("output_tokens") or 0),
            }
        elif kind == "message_delta":
            usage = event.get("usage") or {}
            if usage.get("output_tokens") is not None:
                state.call_usage["output_tokens"] = int(usage["output_tokens"])
        elif kind == "message_stop":
            ctx = state.ctx
            usage, state.call_usage = state.call_usage, {}
            model = state.call_model or self.model_name(ctx)
            await in_thread(ctx.record_usage, model=model, **usage)
            await in_thread(ctx.count_turn)
            await in_thread(ctx.check)

    async def _on_assistant(self, state: _State, message: Any) -> None:
        from claude_agent_sdk import TextBlock, ToolUseBlock

        ctx = state.ctx
        for block in message.content:
            if isinstance(block, TextBlock) and block.text.strip():
                await in_thread(ctx.record_step, Kind.LLM_TURN, tool_name="assistant", output=block.text)
            elif isinstance(block, ToolUseBlock):
                state.tool_inputs[block.id] = (block.name, dict(block.input or {}))

    async def _on_user(self, state: _State, message: Any) -> None:
        from claude_agent_sdk import ToolResultBlock

        if not isinstance(message.content, list):
            return
        for block in message.content:
            if isinstance(block, ToolResultBlock):
                await self._on_tool_result(state, block)

    async def _on_tool_result(self, state: _State, block: Any) -> None:
        ctx = state.ctx
        output = result_text(block.content)
        pending = state.pending.pop(block.tool_use_id, None)
        name, tool_input = state.tool_inputs.pop(block.tool_use_id, ("", {}))
        if pending is None:
            decision = state.decisions.get(block.tool_use_id)
            if decision and decision[0] == "deny":
                return  # already recorded as a skipped step by the gate
            # A call the gate never saw (should not happen): record it as it happened.
            await in_thread(
                ctx.record_step,
                tool_kind(name),
                tool_name=name,
                input=tool_input,
                output=output,
                status=ExecutionStep.Status.FAILED if block.is_error else ExecutionStep.Status.COMPLETED,
            )
            return
        kwargs: dict[str, Any] = {}
        if pending.abs_path is not None and pending.snapshot is not None:
            diff, changed = await in_thread(self._file_diff, pending)
            if diff:
                kwargs["diff"] = diff
                kwargs["rollback"] = {"path": pending.rel_path, **pending.snapshot}
            if changed:
                await in_thread(ctx.note_progress, changed_files=True)
        if pending.name in ("Bash",):
            command = str(tool_input.get("command", ""))
            if command and command not in state.commands_seen:
                state.commands_seen.add(command)
                await in_thread(ctx.note_progress, new_command=True)
        finish = pending.handle.fail if block.is_error else pending.handle.complete
        await in_thread(finish, output, **kwargs)

    @staticmethod
    def _file_diff(pending: _PendingTool) -> tuple[str, bool]:
        path = pending.abs_path
        assert path is not None and pending.snapshot is not None
        import base64

        before = None if pending.snapshot.get("absent") else base64.b64decode(pending.snapshot["before_b64"])
        after = path.read_bytes() if path.is_file() else None
        if before == after:
            return "", False
        return unified_diff(pending.rel_path, before, after), True

    # -- the gate (guard + approval), shared by the hook and can_use_tool -------------------------

    async def _gate(
        self, state: _State, tool_use_id: str, name: str, tool_input: dict[str, Any]
    ) -> tuple[str, str]:
        if tool_use_id and tool_use_id in state.decisions:
            return state.decisions[tool_use_id]
        try:
            decision = await self._decide(state, tool_use_id, name, tool_input)
        except (RunStopped, LimitExceeded) as exc:
            state.fatal = exc
            decision = ("deny", "The run is stopping.")
        if tool_use_id:
            state.decisions[tool_use_id] = decision
        return decision

    async def _decide(
        self, state: _State, tool_use_id: str, name: str, tool_input: dict[str, Any]
    ) -> tuple[str, str]:
        ctx = state.ctx
        verdict = await in_thread(ctx.authorize, name, tool_input)
        handle = await in_thread(
            ctx.begin_step, tool_kind(name), tool_name=name, input=tool_input, verdict=verdict
        )
        if verdict.action == "deny":
            await in_thread(handle.skip, f"Refused: {verdict.reason}")
            return "deny", f"Refused by Autopilot's guard: {verdict.reason}"
        if verdict.action == "ask":
            approval = await in_thread(ctx.await_approval, handle, verdict.reason)
            if not approval.approved:
                note = approval.message or "no reason given"
                return "deny", f"A human rejected this tool call: {note}"
        else:
            advance = getattr(ctx, "await_advance", None)
            if advance is not None:
                await in_thread(advance, handle)
        pending = _PendingTool(handle=handle, name=name)
        if name in FILE_CHANGE_TOOLS:
            raw = next(
                (tool_input[k] for k in PATH_KEYS if isinstance(tool_input.get(k), str) and tool_input[k]), ""
            )
            if raw:
                resolved = await in_thread(ctx.resolve_path, raw, write=True)
                pending.abs_path = resolved
                pending.rel_path = resolved.relative_to(Path(ctx.workspace).resolve()).as_posix()
                pending.snapshot = await in_thread(file_snapshot, resolved)
        if tool_use_id:
            state.pending[tool_use_id] = pending
        return "allow", ""
