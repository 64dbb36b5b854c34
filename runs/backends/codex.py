"""`codex`: the OpenAI Codex CLI through `codex exec --json` (optional; needs `codex` on PATH).

Facts in ../shared/AGENT-PROTOCOLS.md. The CLI runs in the run's worktree with a private HOME and
CODEX_HOME, a scrubbed environment and a model provider built from settings (OPENAI_BASE_URL /
OPENAI_API_KEY, Responses API wire format), with stdin from /dev/null. Its JSON lines become steps:

- `item.completed` command_execution → run_terminal (command, aggregated output, exit code),
- `item.completed` agent_message → llm_turn, file_change → write_file/edit_file per file (with a
  unified diff against the file's state when the previous event was seen), other items → tool,
- `turn.completed` usage → one UsageRecord; `turn.failed` / `error` → the run fails with the message.

Guardrails: `codex exec` offers no per-command approval callback, so Autopilot cannot pause a Codex
command before it runs. Each command is checked against the guard as soon as Codex reports it
(`item.started`), path arguments included; a command the guard would refuse or ask about stops the
CLI at once (its whole process group) and fails the run with the reason. Use claude_code or native
for approval workflows.

Sandbox: Codex's own sandbox is switched off (`--dangerously-bypass-approvals-and-sandbox`: its
Linux sandbox would still let every command read the whole filesystem); instead the whole CLI runs
inside Autopilot's bubblewrap sandbox (runs/guard.py sandbox_argv) with the network on, which it
needs for its model API. Covered: every command Codex runs sees only the worktree, the private HOME
(CODEX_HOME lives there), the system directories and its own installation -- never the data
directory, other worktrees or the user's files -- and cannot write the repository's refs. Not
covered: a command has the network (the CLI's namespace is shared), a command is judged only after
it started, and file changes Codex makes with its own apply_patch are recorded after the fact.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from django.conf import settings

from runs import agent_mcp
from runs.backends.base import Backend, BackendError, BackendResult, RunContext, RunStopped
from runs.guard import kill_group, sandbox_argv, sandbox_path_variable, sandbox_readonly_paths
from runs.models import ExecutionStep

Kind = ExecutionStep.Kind
StepStatus = ExecutionStep.Status


def codex_cli() -> str | None:
    return getattr(settings, "AUTOPILOT_CODEX_CLI", "") or shutil.which("codex")


def codex_install_dirs() -> list[Path]:
    """Directories the sandboxed CLI needs read-only: its own installation (npm package or binary)
    and the node runtime's, when they live outside the system directories."""
    found = []
    for program in (codex_cli(), shutil.which("node")):
        if program and os.path.exists(program):
            found.append(Path(os.path.realpath(program)).parent.parent)
    return found


def codex_command(ctx: RunContext, *, base_url: str, model: str, prompt: str) -> list[str]:
    provider = (
        'model_providers.autopilot={{name="Autopilot",base_url="{}",env_key="AUTOPILOT_CODEX_KEY",'
        'wire_api="responses",stream_max_retries=0,request_max_retries=0}}'.format(base_url.replace('"', ""))
    )
    command = [
        codex_cli() or "codex",
        "exec",
        "--json",
        "--dangerously-bypass-approvals-and-sandbox",
        "--ephemeral",
        "-c",
        "model_provider=autopilot",
        "-c",
        provider,
        "-c",
        "analytics.enabled=false",
        "-C",
        str(ctx.cwd),
    ]
    if model:
        command += ["-m", model]
    command += autopilot_mcp_args(ctx)
    return [*command, "--", prompt]


MCP_TOKEN_ENV = "AUTOPILOT_TOKEN"


def _mcp_http(ctx: RunContext) -> dict[str, str] | None:
    provider = agent_mcp.provider()
    run = getattr(ctx, "run", None)
    if provider is None or run is None or getattr(run, "pk", None) is None:
        return None
    return provider.http_config(run)


def autopilot_mcp_args(ctx: RunContext) -> list[str]:
    """Autopilot's MCP server for this run over streamable HTTP (settings.AUTOPILOT_MCP_URL), the run
    token in AUTOPILOT_TOKEN (see autopilot_mcp_env): Codex reaches a remote server by `url` with
    `bearer_token_env_var`. Without a URL, no server (the stdio form would need the database settings
    in the agent's reach)."""
    config = _mcp_http(ctx)
    if not config:
        return []
    name = agent_mcp.SERVER_NAME
    return [
        "-c",
        f"mcp_servers.{name}.url={json.dumps(config['url'])}",
        "-c",
        f'mcp_servers.{name}.bearer_token_env_var="{MCP_TOKEN_ENV}"',
    ]


def autopilot_mcp_env(ctx: RunContext) -> dict[str, str]:
    config = _mcp_http(ctx)
    return {MCP_TOKEN_ENV: config["token"]} if config else {}


class CodexBackend(Backend):
    name = "codex"
    label = "Codex CLI"

    def __init__(self) -> None:
        self.sandbox = "unsandboxed"
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not codex_cli():
            return False, "the codex CLI is not installed (npm install -g @openai/codex@0.169.0)"
        return True, ""

    def interrupt(self) -> None:
        with self._lock:
            proc = self._proc
        if proc is not None and proc.poll() is None:
            kill_group(proc.pid, 15)

    def model_name(self, ctx: RunContext) -> str:
        model = ctx.model or getattr(settings, "AUTOPILOT_CODEX_MODEL", "") or ""
        return model.split(":", 1)[1] if model.startswith("openai:") else model

    def environment(self, ctx: RunContext) -> dict[str, str]:
        llm = ctx.llm_env("openai")
        codex_home = Path(ctx.home) / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        env = {
            **ctx.env,
            "CODEX_HOME": str(codex_home),
            "AUTOPILOT_CODEX_KEY": llm.get("OPENAI_API_KEY", "none"),
        }
        env.update({str(k): str(v) for k, v in (getattr(settings, "AUTOPILOT_CODEX_ENV", {}) or {}).items()})
        env.update(autopilot_mcp_env(ctx))
        return env

    def run(self, ctx: RunContext) -> BackendResult:
        base_url = ctx.llm_env("openai").get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        model = self.model_name(ctx)
        prompt = ctx.prompt
        if ctx.resume_session_id:
            prompt = f"(Continuing earlier work on this branch.)\n\n{prompt}"
        # The CLI runs inside the run's sandbox (network on for its model API): the same view as
        # guarded commands, so the commands Codex runs on its own cannot read the host's files.
        installs = codex_install_dirs()
        argv, self.sandbox = sandbox_argv(
            codex_command(ctx, base_url=base_url, model=model, prompt=prompt),
            cwd=Path(ctx.cwd),
            writable=[Path(ctx.workspace), Path(ctx.home)],
            network=True,
            readonly=installs,
        )
        env = self.environment(ctx)
        if self.sandbox != "unsandboxed":
            env["PATH"] = sandbox_path_variable([*sandbox_readonly_paths(), *installs])
        proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
            argv,
            cwd=str(ctx.cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        with self._lock:
            self._proc = proc
        ctx.register_process(proc.pid)
        stderr_tail: list[str] = []
        reader = threading.Thread(
            target=lambda: stderr_tail.extend((proc.stderr.read() or "").splitlines()[-20:]), daemon=True
        )
        reader.start()
        state: dict[str, Any] = {"summary": "", "error": "", "thread": "", "open": {}, "refused": ""}
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                self._on_event(ctx, state, event)
                if state["refused"]:
                    kill_group(proc.pid)
                    break
                if ctx.stop_requested:
                    kill_group(proc.pid, 15)
                    break
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                kill_group(proc.pid)
                proc.wait(timeout=10)
            reader.join(timeout=5)
            ctx.unregister_process(proc.pid)
            with self._lock:
                self._proc = None
        if ctx.stop_requested:
            raise RunStopped("stopped by request")
        if state["refused"]:
            raise BackendError(state["refused"])
        if state["error"] or proc.returncode != 0:
            detail = state["error"] or "\n".join(stderr_tail[-5:]) or f"exit code {proc.returncode}"
            return BackendResult(
                session_id=state["thread"], succeeded=False, error=f"Codex failed: {detail}"[:2000]
            )
        return BackendResult(summary=state["summary"], session_id=state["thread"])

    # -- events ---------------------------------------------------------------------------------

    def _on_event(self, ctx: RunContext, state: dict[str, Any], event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "thread.started":
            state["thread"] = str(event.get("thread_id") or "")
            ctx.set_session_id(state["thread"])
        elif kind == "item.started":
            item = event.get("item") or {}
            if item.get("type") == "command_execution":
                verdict = ctx.authorize("exec_command", {"cmd": _unwrap(item.get("command", ""))})
                if verdict.action != "allow":
                    state["refused"] = (
                        "Codex ran a command Autopilot's guard does not allow without approval: "
                        f"{verdict.reason}"
                    )
                    ctx.record_step(
                        Kind.RUN_TERMINAL,
                        tool_name="exec_command",
                        input={"command": item.get("command")},
                        output=state["refused"],
                        status=StepStatus.FAILED,
                    )
        elif kind == "item.completed":
            self._on_item(ctx, state, event.get("item") or {})
        elif kind == "turn.completed":
            usage = event.get("usage") or {}
            cached = int(usage.get("cached_input_tokens") or 0)
            ctx.record_usage(
                model=self.model_name(ctx) or "codex",
                input_tokens=max(0, int(usage.get("input_tokens") or 0) - cached),
                output_tokens=int(usage.get("output_tokens") or 0),
                cache_read_tokens=cached,
                cache_write_tokens=int(usage.get("cache_write_input_tokens") or 0),
            )
            ctx.count_turn()
        elif kind == "turn.failed":
            state["error"] = str((event.get("error") or {}).get("message") or "turn failed")
        elif kind == "error":
            message = str(event.get("message") or "")
            if "model metadata" not in message:
                state["error"] = message

    def _on_item(self, ctx: RunContext, state: dict[str, Any], item: dict[str, Any]) -> None:
        kind = item.get("type")
        if kind == "command_execution":
            exit_code = item.get("exit_code")
            command = _unwrap(item.get("command", ""))
            ctx.record_step(
                Kind.RUN_TERMINAL,
                tool_name="exec_command",
                input={"command": command, "exit_code": exit_code},
                output=item.get("aggregated_output") or "",
                status=StepStatus.COMPLETED if exit_code == 0 else StepStatus.FAILED,
            )
            ctx.note_progress(new_command=True)
        elif kind == "agent_message":
            text = item.get("text") or ""
            state["summary"] = text
            ctx.record_step(Kind.LLM_TURN, tool_name="assistant", output=text)
        elif kind == "file_change":
            for change in item.get("changes") or []:
                path = str(change.get("path") or "")
                change_kind = change.get("kind") or "update"
                ctx.record_step(
                    Kind.WRITE_FILE if change_kind == "add" else Kind.EDIT_FILE,
                    tool_name="apply_patch",
                    input={"path": _relative(ctx, path), "change": change_kind},
                    output=f"{change_kind} {_relative(ctx, path)}",
                    status=(
                        StepStatus.FAILED
                        if item.get("status", "completed") != "completed"
                        else StepStatus.COMPLETED
                    ),
                )
            ctx.note_progress(changed_files=True)
        elif kind in {"reasoning", "todo_list"}:
            return
        elif kind == "error":
            message = str(item.get("message") or "")
            if "model metadata" not in message:
                ctx.record_step(Kind.TOOL, tool_name="codex_error", output=message, status=StepStatus.FAILED)
        else:
            ctx.record_step(Kind.TOOL, tool_name=str(kind or "codex_item"), input=_jsonable(item), output="")


def _unwrap(command: str) -> str:
    """Codex reports `/bin/bash -lc 'CMD'`; the guard judges CMD."""
    import shlex

    try:
        argv = shlex.split(command)
    except ValueError:
        return command
    if len(argv) == 3 and os.path.basename(argv[0]) in {"bash", "sh", "zsh"} and argv[1] in {"-lc", "-c"}:
        return argv[2]
    return command


def _relative(ctx: RunContext, path: str) -> str:
    try:
        return Path(path).resolve().relative_to(Path(ctx.workspace).resolve()).as_posix()
    except ValueError:
        return path


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
