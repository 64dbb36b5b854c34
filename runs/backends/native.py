"""`native`: Autopilot's own tool-use loop over the official SDKs.

- Anthropic Messages API through `anthropic` (tools as `input_schema`, `tool_use` / `tool_result`).
- Any OpenAI-compatible Chat Completions endpoint through `openai` (`tools` / `tool_calls`): OpenAI,
  Ollama, vLLM, llama.cpp server, LM Studio, OpenRouter…

Model names: "anthropic:claude-sonnet-4-6", "openai:gpt-5-mini", or a bare name (a name starting with
"claude" goes to Anthropic, anything else to the OpenAI-compatible endpoint). Base URLs and keys come
from settings (ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY, OPENAI_BASE_URL / OPENAI_API_KEY).

Every tool call goes through runs.tools.execute_tool (guard, approval, step with diff and rollback
data), Autopilot's own operations too (`autopilot__task_create`, … from runs.agent_mcp, scoped by the
run's token like a Claude Code run's MCP server). Every model call is a `llm_turn` step with its
usage priced from the price table. Human messages are appended as user turns between model calls;
stop and limits are checked between calls. The conversation is saved as an artifact after every turn;
resuming a run loads it (session id "native:<run id>") and continues with the new prompt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings

from runs.backends.base import Backend, BackendError, BackendResult, RunContext
from runs.models import ExecutionStep
from runs.tools import agent_tool_specs, execute_tool

SYSTEM_PROMPT = (
    "You are a coding agent working inside a git worktree managed by Autopilot. Use the tools to read, "
    "search, edit files and run commands (no shell: no pipes, redirections or $VARS). Paths are relative to "
    "the workspace root. Keep changes focused on the task. When the task is done, call `finish` with a short "
    "summary. The `autopilot__*` tools read your task and its spec, file follow-up tasks and report results."
)
MAX_TOKENS = 4096


def split_model(model: str) -> tuple[str, str]:
    """("anthropic" | "openai", model name) for a native model string."""
    model = (model or "").strip()
    if ":" in model:
        provider, name = model.split(":", 1)
        if provider in {"anthropic", "openai"}:
            return provider, name
    if not model:
        model = settings.AUTOPILOT_DEFAULT_MODEL
        if ":" in model:
            return split_model(model)
    return ("anthropic" if model.startswith("claude") else "openai"), model


def conversation_path(run_id: int) -> Path:
    return Path(settings.AUTOPILOT_ARTIFACT_ROOT) / "runs" / str(run_id) / "conversation.json"


class NativeBackend(Backend):
    name = "native"
    label = "native tool-use loop"

    def run(self, ctx: RunContext) -> BackendResult:
        provider, model = split_model(ctx.model)
        session = f"native:{ctx.run_id}"
        ctx.set_session_id(session)
        messages = self._resume(ctx, provider)
        if provider == "anthropic":
            loop = AnthropicLoop(ctx, model)
        else:
            loop = OpenAILoop(ctx, model)
        if not messages:
            messages = loop.start(ctx.prompt)
        else:
            loop.add_user(messages, ctx.prompt)
        while True:
            ctx.check()
            for text in ctx.take_messages():
                loop.add_user(messages, f"Message from a human supervising this run: {text}")
            reply = loop.call(messages)
            self._save(ctx, provider, messages)
            if not reply.tool_calls:
                return BackendResult(summary=reply.text or "finished", session_id=session)
            results = []
            finished = None
            for call in reply.tool_calls:
                if finished is not None:
                    results.append((call, "Not run: the task was already finished.", True))
                    continue
                outcome = execute_tool(ctx, call["name"], call["input"])
                results.append((call, outcome.text, outcome.is_error))
                if outcome.finished:
                    finished = outcome.summary
            loop.add_tool_results(messages, results)
            self._save(ctx, provider, messages)
            if finished is not None:
                return BackendResult(summary=finished, session_id=session)

    def _resume(self, ctx: RunContext, provider: str) -> list[dict[str, Any]]:
        if not ctx.resume_session_id.startswith("native:"):
            return []
        previous = ctx.resume_session_id.split(":", 1)[1]
        path = conversation_path(int(previous)) if previous.isdigit() else None
        if path is None or not path.is_file():
            return []
        data = json.loads(path.read_text())
        if data.get("provider") != provider:
            return []
        return data.get("messages", [])

    def _save(self, ctx: RunContext, provider: str, messages: list[dict[str, Any]]) -> None:
        path = conversation_path(ctx.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        redactor = getattr(ctx, "redactor", None)
        payload = {"provider": provider, "model": ctx.model, "messages": messages}
        text = json.dumps(payload, default=str)
        path.write_text(redactor(text) if redactor else text)


class Reply:
    def __init__(self, text: str, tool_calls: list[dict[str, Any]]):
        self.text = text
        self.tool_calls = tool_calls


def _retries() -> int:
    return int(getattr(settings, "AUTOPILOT_LLM_MAX_RETRIES", 2))


def _timeout() -> float:
    return float(getattr(settings, "AUTOPILOT_LLM_TIMEOUT", 600))


class AnthropicLoop:
    def __init__(self, ctx: RunContext, model: str):
        import anthropic

        self.anthropic = anthropic
        self.ctx = ctx
        self.model = model
        self.client = anthropic.Anthropic(
            base_url=settings.ANTHROPIC_BASE_URL or None,
            api_key=settings.ANTHROPIC_API_KEY or "not-set",
            max_retries=_retries(),
            timeout=_timeout(),
        )
        self.tools = [
            {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
            for t in agent_tool_specs(ctx)
        ]

    def start(self, prompt: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": [{"type": "text", "text": prompt}]}]

    def add_user(self, messages: list[dict[str, Any]], text: str) -> None:
        if messages and messages[-1]["role"] == "user":
            messages[-1]["content"].append({"type": "text", "text": text})
        else:
            messages.append({"role": "user", "content": [{"type": "text", "text": text}]})

    def add_tool_results(self, messages, results) -> None:
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call["id"], "content": text, "is_error": is_error}
                    for call, text, is_error in results
                ],
            }
        )

    def call(self, messages: list[dict[str, Any]]) -> Reply:
        ctx = self.ctx
        handle = ctx.begin_step(
            ExecutionStep.Kind.LLM_TURN,
            tool_name=f"anthropic:{self.model}",
            input={"messages": len(messages)},
        )
        try:
            response = self.client.messages.create(
                model=self.model,
                max_tokens=MAX_TOKENS,
                system=SYSTEM_PROMPT,
                tools=self.tools,
                messages=messages,
            )
        except self.anthropic.APIError as exc:
            handle.fail(f"{type(exc).__name__}: {exc}")
            raise BackendError(f"Anthropic API error: {exc}") from exc
        usage = response.usage
        ctx.record_usage(
            model=self.model,
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cache_read_tokens=getattr(usage, "cache_read_input_tokens", 0) or 0,
            cache_write_tokens=getattr(usage, "cache_creation_input_tokens", 0) or 0,
            step_id=handle.step_id,
        )
        ctx.count_turn()
        content = [block.model_dump(exclude_none=True) for block in response.content]
        messages.append({"role": "assistant", "content": content})
        text = "\n".join(b.get("text", "") for b in content if b.get("type") == "text").strip()
        calls = [
            {"id": b["id"], "name": b["name"], "input": b.get("input") or {}}
            for b in content
            if b.get("type") == "tool_use"
        ]
        handle.complete(
            text or f"(tool calls: {', '.join(c['name'] for c in calls)})",
            extra_input={"stop_reason": response.stop_reason},
        )
        return Reply(text, calls)


class OpenAILoop:
    def __init__(self, ctx: RunContext, model: str):
        import openai

        self.openai = openai
        self.ctx = ctx
        self.model = model
        self.client = openai.OpenAI(
            base_url=settings.OPENAI_BASE_URL or None,
            api_key=settings.OPENAI_API_KEY or "not-set",
            max_retries=_retries(),
            timeout=_timeout(),
        )
        self.tools = [{"type": "function", "function": t} for t in agent_tool_specs(ctx)]

    def start(self, prompt: str) -> list[dict[str, Any]]:
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]

    def add_user(self, messages, text: str) -> None:
        messages.append({"role": "user", "content": text})

    def add_tool_results(self, messages, results) -> None:
        for call, text, _is_error in results:
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": text})

    def call(self, messages) -> Reply:
        ctx = self.ctx
        handle = ctx.begin_step(
            ExecutionStep.Kind.LLM_TURN, tool_name=f"openai:{self.model}", input={"messages": len(messages)}
        )
        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=messages, tools=self.tools
            )
        except self.openai.APIError as exc:
            handle.fail(f"{type(exc).__name__}: {exc}")
            raise BackendError(f"OpenAI-compatible API error: {exc}") from exc
        usage = response.usage
        cached = 0
        if usage is not None and getattr(usage, "prompt_tokens_details", None) is not None:
            cached = usage.prompt_tokens_details.cached_tokens or 0
        ctx.record_usage(
            model=self.model,
            input_tokens=max(0, (usage.prompt_tokens or 0) - cached) if usage else 0,
            output_tokens=(usage.completion_tokens or 0) if usage else 0,
            cache_read_tokens=cached,
            step_id=handle.step_id,
        )
        ctx.count_turn()
        if not response.choices:
            handle.fail("no choices in the answer")
            raise BackendError("The model answered without any choice.")
        message = response.choices[0].message
        calls = []
        for call in message.tool_calls or []:
            try:
                args = json.loads(call.function.arguments or "{}")
            except json.JSONDecodeError:
                args = {"_unparsed_arguments": call.function.arguments}
            calls.append(
                {"id": call.id, "name": call.function.name, "input": args if isinstance(args, dict) else {}}
            )
        entry: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
        if message.tool_calls:
            entry["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.function.name, "arguments": c.function.arguments},
                }
                for c in message.tool_calls
            ]
        messages.append(entry)
        text = (message.content or "").strip()
        handle.complete(
            text or f"(tool calls: {', '.join(c['name'] for c in calls)})",
            extra_input={"finish_reason": response.choices[0].finish_reason},
        )
        return Reply(text, calls)
