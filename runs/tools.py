"""Autopilot's own guarded tools, shared by the native and scripted backends.

`execute_tool(ctx, name, args)` does the whole life of one tool call: authorize with the guard
(deny → a skipped step and an error for the agent; ask → wait for a human's approval; rejection →
a skipped step and the human's message for the agent), step-through pause, run the tool, and record
the step with its output, unified diff and rollback data (the file's previous bytes or "absent").

Tools: read_file, write_file, edit_file (exact string replacement, must match exactly once),
list_dir, search (text search over the workspace), run_terminal, finish.

`agent_tool_specs(ctx)` adds Autopilot's own operations (runs.agent_mcp: task_get, task_create,
task_complete, run_status…) as `autopilot__<tool>`; `execute_tool` runs them with the run's token and
records each call as a `tool` step, its refusals and errors going back to the agent as tool errors.
"""

from __future__ import annotations

import difflib
import os
import re
import weakref
from dataclasses import dataclass
from typing import Any

from runs import agent_mcp
from runs.backends.base import GuardRefused, RunContext
from runs.models import ExecutionStep
from runs.workspace import file_snapshot

MAX_READ_BYTES = 200_000
MAX_SEARCH_HITS = 200
SKIP_DIRS = {".git", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache"}

KIND = {
    "read_file": ExecutionStep.Kind.READ_FILE,
    "write_file": ExecutionStep.Kind.WRITE_FILE,
    "edit_file": ExecutionStep.Kind.EDIT_FILE,
    "list_dir": ExecutionStep.Kind.LIST_DIR,
    "search": ExecutionStep.Kind.SEARCH,
    "run_terminal": ExecutionStep.Kind.RUN_TERMINAL,
    "finish": ExecutionStep.Kind.FINISH,
}

# JSON schemas of the tools (used by the native backend for both Anthropic and OpenAI formats).
TOOL_SPECS: list[dict[str, Any]] = [
    {
        "name": "read_file",
        "description": "Read a text file of the workspace. Paths are relative to the workspace root.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    },
    {
        "name": "write_file",
        "description": "Create or overwrite a file with the given content.",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
    {
        "name": "edit_file",
        "description": (
            "Replace one exact occurrence of old_string with new_string in a file "
            "(fails unless it occurs exactly once)."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "old_string": {"type": "string"},
                "new_string": {"type": "string"},
            },
            "required": ["path", "old_string", "new_string"],
        },
    },
    {
        "name": "list_dir",
        "description": "List a directory of the workspace ('.' for the root).",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": []},
    },
    {
        "name": "search",
        "description": "Search the workspace's text files for a literal string (or a regex with regex=true).",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "path": {"type": "string"},
                "regex": {"type": "boolean"},
            },
            "required": ["query"],
        },
    },
    {
        "name": "run_terminal",
        "description": (
            "Run a command in the workspace (no shell: no pipes, redirections or $VARS). "
            "Returns exit code and output."
        ),
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}, "timeout": {"type": "number"}},
            "required": ["command"],
        },
    },
    {
        "name": "finish",
        "description": "Call when the task is complete, with a short summary of what was done.",
        "parameters": {
            "type": "object",
            "properties": {"summary": {"type": "string"}},
            "required": ["summary"],
        },
    },
]


_AGENT_TOOLS: weakref.WeakKeyDictionary[RunContext, agent_mcp.AgentTools | None] = weakref.WeakKeyDictionary()


@dataclass
class ToolOutcome:
    text: str
    is_error: bool = False
    finished: bool = False
    summary: str = ""
    step_id: int | None = None


def unified_diff(path: str, before: bytes | None, after: bytes | None) -> str:
    def lines(data: bytes | None) -> list[str]:
        if data is None:
            return []
        return data.decode("utf-8", errors="replace").splitlines(keepends=True)

    if (before is not None and b"\0" in before) or (after is not None and b"\0" in after):
        return f"Binary file {path} changed\n"
    return "".join(
        difflib.unified_diff(
            lines(before),
            lines(after),
            fromfile="/dev/null" if before is None else f"a/{path}",
            tofile="/dev/null" if after is None else f"b/{path}",
        )
    )


def _rel(ctx: RunContext, resolved) -> str:
    return resolved.relative_to(ctx.workspace).as_posix()


def agent_tools(ctx: RunContext) -> agent_mcp.AgentTools | None:
    """Autopilot's operations for this run (once per context), or None without a provider or a run."""
    if ctx not in _AGENT_TOOLS:
        provider = agent_mcp.provider()
        run = getattr(ctx, "run", None)
        found = None
        if provider is not None and getattr(run, "pk", None) is not None:
            found = provider.agent_tools(run)
        _AGENT_TOOLS[ctx] = found
    return _AGENT_TOOLS[ctx]


def agent_tool_specs(ctx: RunContext) -> list[dict[str, Any]]:
    """TOOL_SPECS plus this run's Autopilot operations, named `autopilot__<tool>`."""
    found = agent_tools(ctx)
    extra = [
        {**spec, "name": agent_mcp.NATIVE_PREFIX + spec["name"]} for spec in (found.specs if found else [])
    ]
    return TOOL_SPECS + extra


def execute_tool(ctx: RunContext, name: str, args: dict[str, Any] | None) -> ToolOutcome:
    """Authorize, (maybe) wait for approval, run and record one tool call."""
    args = dict(args or {})
    if name.startswith(agent_mcp.NATIVE_PREFIX) and agent_tools(ctx) is not None:
        return _execute_agent_tool(ctx, name, args)
    if name not in KIND:
        ctx.record_step(
            ExecutionStep.Kind.TOOL,
            tool_name=name,
            input=args,
            status=ExecutionStep.Status.FAILED,
            output=f"Unknown tool '{name}'.",
        )
        names = [spec["name"] for spec in agent_tool_specs(ctx)]
        return ToolOutcome(f"Unknown tool '{name}'. Available: {', '.join(names)}.", is_error=True)
    verdict = ctx.authorize(name, args)
    handle = ctx.begin_step(KIND[name], tool_name=name, input=args, verdict=verdict)
    if verdict.action == "deny":
        handle.skip(f"Refused: {verdict.reason}")
        return ToolOutcome(
            f"Refused by Autopilot's guard: {verdict.reason}", is_error=True, step_id=handle.step_id
        )
    if verdict.action == "ask":
        approval = ctx.await_approval(handle, verdict.reason)
        if not approval.approved:
            message = approval.message or "no reason given"
            return ToolOutcome(
                f"Rejected by a human reviewer: {message}", is_error=True, step_id=handle.step_id
            )
    else:
        ctx.await_advance(handle)
        status = getattr(getattr(handle, "step", None), "status", "running")
        if status == ExecutionStep.Status.SKIPPED:
            return ToolOutcome("Skipped by a human.", is_error=True, step_id=handle.step_id)
    try:
        outcome = _run(ctx, name, args, handle)
    except GuardRefused as exc:
        handle.fail(f"Refused: {exc}")
        return ToolOutcome(f"Refused by Autopilot's guard: {exc}", is_error=True, step_id=handle.step_id)
    except (OSError, UnicodeError, ValueError) as exc:
        handle.fail(f"{type(exc).__name__}: {exc}")
        return ToolOutcome(f"Error: {exc}", is_error=True, step_id=handle.step_id)
    outcome.step_id = handle.step_id
    return outcome


def _execute_agent_tool(ctx: RunContext, name: str, args: dict[str, Any]) -> ToolOutcome:
    """One of Autopilot's operations, with the run's token: a `tool` step like any other call."""
    operation = name[len(agent_mcp.NATIVE_PREFIX) :]
    verdict = ctx.authorize(agent_mcp.TOOL_PREFIX + operation, args)
    handle = ctx.begin_step(ExecutionStep.Kind.TOOL, tool_name=name, input=args, verdict=verdict)
    if verdict.action == "deny":
        handle.skip(f"Refused: {verdict.reason}")
        return ToolOutcome(
            f"Refused by Autopilot's guard: {verdict.reason}", is_error=True, step_id=handle.step_id
        )
    ctx.await_advance(handle)
    if getattr(getattr(handle, "step", None), "status", "running") == ExecutionStep.Status.SKIPPED:
        return ToolOutcome("Skipped by a human.", is_error=True, step_id=handle.step_id)
    text, is_error = agent_tools(ctx).call(operation, args)
    if is_error:
        handle.fail(text)
    else:
        handle.complete(text)
    return ToolOutcome(text, is_error=is_error, step_id=handle.step_id)


def _run(ctx: RunContext, name: str, args: dict[str, Any], handle) -> ToolOutcome:
    if name == "read_file":
        path = ctx.resolve_path(str(args.get("path", "")))
        data = path.read_bytes()[:MAX_READ_BYTES]
        text = data.decode("utf-8", errors="replace")
        handle.complete(text)
        return ToolOutcome(text)
    if name == "write_file":
        path = ctx.resolve_path(str(args.get("path", "")), write=True)
        content = str(args.get("content", ""))
        return _change_file(ctx, path, content.encode(), handle)
    if name == "edit_file":
        path = ctx.resolve_path(str(args.get("path", "")), write=True)
        old, new = str(args.get("old_string", "")), str(args.get("new_string", ""))
        text = path.read_text()
        count = text.count(old) if old else 0
        if count != 1:
            message = f"old_string occurs {count} times in {_rel(ctx, path)}; it must occur exactly once."
            handle.fail(message)
            return ToolOutcome(message, is_error=True)
        return _change_file(ctx, path, text.replace(old, new, 1).encode(), handle)
    if name == "list_dir":
        path = ctx.resolve_path(str(args.get("path") or "."))
        entries = sorted(os.scandir(path), key=lambda e: e.name)
        text = "\n".join(e.name + ("/" if e.is_dir() else "") for e in entries if e.name != ".git")
        handle.complete(text)
        return ToolOutcome(text)
    if name == "search":
        text = _search(ctx, args)
        handle.complete(text)
        return ToolOutcome(text)
    if name == "run_terminal":
        timeout = args.get("timeout")
        result = ctx.run_command(str(args.get("command", "")), timeout=float(timeout) if timeout else None)
        text = f"exit code: {result.exit_code if not result.timed_out else 'timeout'}\n{result.output}"
        extra = {"sandbox": result.sandbox, "exit_code": result.exit_code}
        if result.ok:
            handle.complete(
                text,
                extra_input=extra,
                **({"artifact_path": result.artifact_path} if result.artifact_path else {}),
            )
        else:
            handle.fail(
                text,
                extra_input=extra,
                **({"artifact_path": result.artifact_path} if result.artifact_path else {}),
            )
        return ToolOutcome(text, is_error=not result.ok)
    if name == "finish":
        summary = str(args.get("summary", "")) or "done"
        handle.complete(summary)
        return ToolOutcome("Finished.", finished=True, summary=summary)
    raise ValueError(f"unknown tool {name}")


def _change_file(ctx: RunContext, path, content: bytes, handle) -> ToolOutcome:
    rel = _rel(ctx, path)
    snapshot = file_snapshot(path)
    before = path.read_bytes() if path.is_file() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    diff = unified_diff(rel, before, content)
    ctx.note_progress(changed_files=True)
    handle.complete(
        f"wrote {len(content)} bytes to {rel}",
        diff=diff,
        rollback={"path": rel, **snapshot},
    )
    return ToolOutcome(f"Wrote {rel} ({len(content)} bytes).")


def _search(ctx: RunContext, args: dict[str, Any]) -> str:
    query = str(args.get("query", ""))
    if not query:
        raise ValueError("search needs a query")
    base = ctx.resolve_path(str(args.get("path") or "."))
    pattern = re.compile(query if args.get("regex") else re.escape(query))
    hits: list[str] = []
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for filename in sorted(files):
            full = os.path.join(folder, filename)
            if os.path.islink(full):
                continue
            try:
                with open(full, "rb") as handle:
                    data = handle.read(MAX_READ_BYTES)
            except OSError:
                continue
            if b"\0" in data:
                continue
            for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
                if pattern.search(line):
                    rel = os.path.relpath(full, ctx.cwd)
                    hits.append(f"{rel}:{number}: {line[:300]}")
                    if len(hits) >= MAX_SEARCH_HITS:
                        return "\n".join(hits) + "\n[more matches not shown]"
    return "\n".join(hits) or "no matches"
