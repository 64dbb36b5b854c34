"""`scripted`: a deterministic, offline backend for tests and the zero-configuration demo.

It uses no model at all and is labelled "scripted (offline demo)" wherever it appears. It follows a
script — a list of actions — from run.settings["script"], or from the prompt when the prompt is a
JSON list, or from the task's body when it is one (the tick's runs of script tasks) or when it holds a
fenced block whose info string is `scripted` (a blueprint section that carries the actions
implementing it, as the demo's do: the body's first ```scripted block, a JSON list; a task's later
runs — retry, rework, a reaction to a merge conflict — follow its ```scripted follow-up block when it
has one), or else the built-in notes script (write a notes file with the prompt, list the directory,
finish). Every action is one turn and goes through the same guarded tools as the native backend, so
approvals, refusals, diffs and rollback behave exactly as with a real agent.

Actions (one key names the action):
    {"say": "text"}                               an assistant message (llm_turn step)
    {"read": "path"}                              read_file
    {"write": "path", "content": "..."}           write_file
    {"edit": "path", "old": "...", "new": "..."}  edit_file
    {"list": "dir"}                               list_dir
    {"search": "query"}                           search
    {"run": "command"}                            run_terminal
    {"sleep": seconds}                            wait (stop-aware), e.g. to stop a run mid-way
    {"usage": {"model": m, "input_tokens": n, "output_tokens": n}}   record a model call's usage
    {"fail": "reason"}                            end the run as failed
    {"finish": "summary"}                         end the run (also the default at the end)
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from runs.backends.base import Backend, BackendError, BackendResult, RunContext, RunStopped
from runs.models import ExecutionStep
from runs.tools import execute_tool

TOOL_OF = {
    "read": "read_file",
    "write": "write_file",
    "edit": "edit_file",
    "list": "list_dir",
    "search": "search",
    "run": "run_terminal",
}


def demo_script(prompt: str) -> list[dict[str, Any]]:
    return [
        {
            "say": "Scripted (offline demo) backend: no model is called. "
            "Writing the prompt to AUTOPILOT_NOTES.md."
        },
        {"write": "AUTOPILOT_NOTES.md", "content": f"# Notes from a scripted run\n\n{prompt.strip()}\n"},
        {"list": "."},
        {"finish": "Wrote AUTOPILOT_NOTES.md (scripted demo)."},
    ]


# A fenced code block (``` or ~~~; the closing fence at least as long as the opening one) at the start of
# a line whose info string is `scripted` (the script of a task's first run) or `scripted follow-up`
# (the script of its later runs: a retry, a rework, a reaction to a merge conflict or failed tests).
SCRIPT_BLOCK = re.compile(
    r"^(?P<fence>`{3,}|~{3,})[ \t]*scripted(?P<follow_up>[ \t]+follow-up)?[ \t]*\n"
    r"(?P<body>.*?)^(?P=fence)[`~]*[ \t]*$",
    re.MULTILINE | re.DOTALL,
)


def script_in(body: str, *, follow_up: bool = False) -> str | None:
    """The JSON text of a task body's script: the whole body when it is a JSON list, else its first
    ```scripted fenced block (for a follow-up run, its first ```scripted follow-up block when it has
    one); None when it has none."""
    text = (body or "").strip()
    if text.startswith("["):
        return text
    blocks = {}
    for block in SCRIPT_BLOCK.finditer(body or ""):
        blocks.setdefault(bool(block.group("follow_up")), block.group("body").strip())
    return blocks.get(True) if follow_up and True in blocks else blocks.get(False)


def script_for(ctx: RunContext) -> list[dict[str, Any]]:
    script = ctx.settings.get("script")
    if script is None:
        text, from_task = (ctx.run.prompt or "").strip(), False
        if not text.startswith("[") and ctx.run.task_id:  # a task that carries its script (demo, benches)
            follow_up = ctx.run.attempt > 1 or ctx.run.retry_of_id is not None
            task_script = script_in(ctx.run.task.body, follow_up=follow_up)
            if task_script is not None:
                text, from_task = task_script, True
        if text.startswith("[") or from_task:
            try:
                script = json.loads(text)
            except json.JSONDecodeError as exc:
                source = "The task's script" if from_task else "The prompt looks like a JSON script but"
                raise BackendError(f"{source} does not parse: {exc}.") from exc
        else:
            script = demo_script(ctx.prompt)
    if not isinstance(script, list) or not all(isinstance(a, dict) and a for a in script):
        raise BackendError("A scripted run's script must be a list of one-key action objects.")
    return script


MAX_SCRIPT_ACTIONS = 10_000
MAX_SLEEP_SECONDS = 7 * 24 * 3600
TEXT_ACTIONS = ("say", "read", "write", "edit", "list", "search", "run", "fail", "finish")
TEXT_OPTIONS = ("content", "old", "new")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_action(action: dict[str, Any]) -> str | None:
    """What is wrong with one (known) action's values, or None."""
    for key in TEXT_ACTIONS:
        if key in action and not isinstance(action[key], str):
            return f"'{key}' must be text, got {type(action[key]).__name__}"
    for key in TEXT_OPTIONS:
        if key in action and not isinstance(action[key], str):
            return f"'{key}' must be text, got {type(action[key]).__name__}"
    if "sleep" in action and not (_is_number(action["sleep"]) and 0 <= action["sleep"] <= MAX_SLEEP_SECONDS):
        return f"'sleep' must be a number of seconds from 0 to {MAX_SLEEP_SECONDS}, got {action['sleep']!r}"
    if "timeout" in action and not (_is_number(action["timeout"]) and action["timeout"] > 0):
        return f"'timeout' must be a positive number of seconds, got {action['timeout']!r}"
    if "regex" in action and not isinstance(action["regex"], bool):
        return "'regex' must be true or false"
    if "usage" in action:
        usage = action["usage"]
        if not isinstance(usage, dict):
            return "'usage' must be an object"
        if "model" in usage and not isinstance(usage["model"], str):
            return "'usage.model' must be text"
        for key, value in usage.items():
            if key.endswith("_tokens") and not (
                isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
            ):
                return f"'usage.{key}' must be a whole number of tokens, got {value!r}"
    return None


def validate_script(script: Any) -> None:
    """Raise ValueError naming the first bad action and what is wrong with it (used by run_create for a
    clear 400, so a bad script never reaches a worker and fails there with a traceback)."""
    if not isinstance(script, list):
        raise ValueError("script must be a list of actions")
    if len(script) > MAX_SCRIPT_ACTIONS:
        raise ValueError(f"script has {len(script)} actions; at most {MAX_SCRIPT_ACTIONS}")
    known = set(TOOL_OF) | {"say", "sleep", "usage", "fail", "finish"}
    for index, action in enumerate(script):
        if not isinstance(action, dict) or not (set(action) & known):
            raise ValueError(f"script[{index}] is not a known action (one of {', '.join(sorted(known))})")
        problem = _check_action(action)
        if problem:
            raise ValueError(f"script[{index}]: {problem}")


class ScriptedBackend(Backend):
    name = "scripted"
    label = "scripted (offline demo)"

    def run(self, ctx: RunContext) -> BackendResult:
        script = script_for(ctx)
        session = ctx.resume_session_id or f"scripted-{ctx.run_id}"
        ctx.set_session_id(session)
        for action in script:
            ctx.check()
            for message in ctx.take_messages():
                ctx.record_step(
                    ExecutionStep.Kind.LLM_TURN, tool_name="assistant", output=f"Noted: {message}"
                )
            ctx.count_turn()
            if "finish" in action:
                execute_tool(ctx, "finish", {"summary": str(action["finish"])})
                return BackendResult(summary=str(action["finish"]), session_id=session)
            if "fail" in action:
                return BackendResult(succeeded=False, error=str(action["fail"]), session_id=session)
            if "say" in action:
                ctx.record_step(ExecutionStep.Kind.LLM_TURN, tool_name="assistant", output=str(action["say"]))
                continue
            if "sleep" in action:
                if ctx.stop_event_wait(float(action["sleep"])):
                    raise RunStopped(ctx.stop_reason or "stopped by request")
                continue
            if "usage" in action:
                usage = dict(action["usage"])
                ctx.record_usage(
                    model=str(usage.pop("model", ctx.model or "scripted")),
                    **{k: int(v) for k, v in usage.items() if k.endswith("_tokens")},
                )
                continue
            key = next((k for k in action if k in TOOL_OF), None)
            if key is None:
                raise BackendError(f"Unknown scripted action {action!r}.")
            execute_tool(ctx, TOOL_OF[key], self._args(key, action))
        ctx.check()
        return BackendResult(summary="script finished", session_id=session)

    @staticmethod
    def _args(key: str, action: dict[str, Any]) -> dict[str, Any]:
        value = action[key]
        if key == "write":
            return {"path": value, "content": action.get("content", "")}
        if key == "edit":
            return {"path": value, "old_string": action.get("old", ""), "new_string": action.get("new", "")}
        if key == "search":
            return {"query": value, **({"regex": action["regex"]} if "regex" in action else {})}
        if key == "run":
            return {"command": value, **({"timeout": action["timeout"]} if "timeout" in action else {})}
        return {"path": value}
