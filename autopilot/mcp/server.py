"""Autopilot's MCP server (the official `mcp` package, 2.x: mcp.server.mcpserver.MCPServer).

One server definition, three ways in:
- stdio: `autopilot mcp` (Claude Code, Codex, Cursor, editors), token from AUTOPILOT_TOKEN;
- streamable HTTP: `/mcp` in the ASGI app (autopilot.mcp.http), token from the Authorization header;
- in-process: an agent Autopilot starts (autopilot.mcp.agents), scoped by its run token.

`build_server(authenticate)` takes how a call finds its caller; each tool authenticates on every call
(a revoked token or an ended run stops working at once), calls autopilot.mcp.tools, and answers
compact, redacted JSON. A domain error becomes an MCP tool error (is_error) with its message; an
unexpected one is logged here and the client sees only "Error executing tool <name>".

Small on purpose: every client pays for every tool description, so descriptions are one line, the
schemas carry the detail (types, enums, bounds), and titles are stripped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from django.db import close_old_connections, connections
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from autopilot.errors import ApplicationError
from autopilot.mcp import tools
from autopilot.mcp.auth import Principal, principal_from_token, token_from_authorization

SERVER_NAME = "autopilot"
INSTRUCTIONS = (
    "Autopilot's tasks and runs. Tasks and runs are referred to by id; `project` is an id, slug or name "
    "(optional when the server is scoped to a run)."
)

Authenticate = Callable[[Context], Principal]

TaskStatus = Literal["todo", "ready", "in_progress", "review", "done", "blocked", "cancelled"]
Agent = Literal["claude_code", "codex", "native", "scripted", "test_worker"]
ProjectArg = Annotated[str | None, Field(description="Project id, slug or name.")]
TaskArg = Annotated[int | None, Field(ge=1, description="Task id (default: the run's task).")]
RunArg = Annotated[int | None, Field(ge=1, description="Run id (default: the caller's run).")]
Priority = Annotated[int | None, Field(ge=0, le=5, description="0 lowest, 5 highest.")]
Complexity = Annotated[int, Field(ge=1, le=10)]
Limit = Annotated[int, Field(ge=1, le=tools.MAX_PAGE)]
Offset = Annotated[int, Field(ge=0)]


def compact_schema(schema: Any) -> Any:
    """Pydantic's schemas repeat every name as a "title" and spell an optional argument as
    `anyOf: [X, null]` with `default: null`; clients pay for both in every request. Optional arguments
    are simply not required, so they are shown as X (null is still accepted)."""
    if isinstance(schema, list):
        return [compact_schema(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {k: compact_schema(v) for k, v in schema.items() if not (k == "title" and isinstance(v, str))}
    options = schema.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = next(o for o in options if o != {"type": "null"})
        schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **other}
        if schema.get("default", "") is None:
            del schema["default"]
    return schema


def build_server(authenticate: Authenticate) -> MCPServer:
    server = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS, log_level="WARNING")

    def call(ctx: Context, operation: Callable[..., dict], **arguments: Any) -> str:
        """Runs in a worker thread (the SDK runs sync tools with anyio.to_thread)."""
        close_old_connections()
        try:
            principal = authenticate(ctx)
            result = operation(principal, **arguments)
            return json.dumps(tools.clean(result), ensure_ascii=False, separators=(",", ":"))
        except ApplicationError as exc:
            raise ToolError(tools.clean(exc.message)) from None
        finally:
            connections.close_all()

    def tool(description: str):
        def register(fn):
            server.add_tool(fn, description=description, structured_output=False)
            registered = server._tool_manager.get_tool(fn.__name__)  # noqa: SLF001 - no public setter
            registered.parameters = compact_schema(registered.parameters)
            return fn

        return register

    @tool("The best ready task to work on next, and why.")
    def task_next(ctx: Context, project: ProjectArg = None) -> str:
        return call(ctx, tools.task_next, project=project)

    @tool("One task with its body, dependencies and spec section.")
    def task_get(ctx: Context, task: TaskArg = None) -> str:
        return call(ctx, tools.task_get, task=task)

    @tool("A project's tasks, best first; paginated (next_offset).")
    def task_list(
        ctx: Context,
        project: ProjectArg = None,
        status: Annotated[list[TaskStatus] | None, Field(description="Any of these statuses.")] = None,
        plan_node: Annotated[int | None, Field(description="Plan node id (its subtree).")] = None,
        search: Annotated[str | None, Field(description="Text in title or body.")] = None,
        limit: Limit = 20,
        offset: Offset = 0,
    ) -> str:
        return call(
            ctx,
            tools.task_list,
            project=project,
            status=status,
            plan_node=plan_node,
            search=search,
            limit=limit,
            offset=offset,
        )

    @tool(
        "Create a task. With follow_up_of (default for an agent: its own task) it joins that task's "
        "plan node and depends on it."
    )
    def task_create(
        ctx: Context,
        title: Annotated[str, Field(min_length=1, max_length=500)],
        body: str = "",
        project: ProjectArg = None,
        priority: Priority = None,
        complexity: Complexity = 3,
        plan_node: Annotated[int | None, Field(description="Plan node id.")] = None,
        follow_up_of: Annotated[int | None, Field(description="Task id this is follow-up work of.")] = None,
    ) -> str:
        return call(
            ctx,
            tools.task_create,
            title=title,
            body=body,
            project=project,
            priority=priority,
            complexity=complexity,
            plan_node=plan_node,
            follow_up_of=follow_up_of,
        )

    @tool("Edit a task's fields and/or move its status (allowed transitions only).")
    def task_update(
        ctx: Context,
        task: TaskArg = None,
        title: Annotated[str | None, Field(min_length=1, max_length=500)] = None,
        body: str | None = None,
        priority: Priority = None,
        complexity: Annotated[int | None, Field(ge=1, le=10)] = None,
        status: TaskStatus | None = None,
        reason: str = "",
    ) -> str:
        return call(
            ctx,
            tools.task_update,
            task=task,
            title=title,
            body=body,
            priority=priority,
            complexity=complexity,
            status=status,
            reason=reason,
        )

    @tool("Mark a task done (or ready for review) with a summary of the result.")
    def task_complete(
        ctx: Context,
        task: TaskArg = None,
        summary: str = "",
        status: Literal["done", "review"] = "done",
    ) -> str:
        return call(ctx, tools.task_complete, task=task, summary=summary, status=status)

    @tool("Queue a run: an agent working on a task or a prompt.")
    def run_start(
        ctx: Context,
        project: ProjectArg = None,
        prompt: str = "",
        task: Annotated[int | None, Field(ge=1)] = None,
        agent: Agent | None = None,
        model: str | None = None,
        role: Literal["code", "test", "docs"] = "code",
        budget_usd: Annotated[float | None, Field(ge=0)] = None,
    ) -> str:
        return call(
            ctx,
            tools.run_start,
            project=project,
            prompt=prompt,
            task=task,
            agent=agent,
            model=model,
            role=role,
            budget_usd=budget_usd,
        )

    @tool("A run's status, cost, tokens, result and queue position.")
    def run_status(ctx: Context, run: RunArg = None) -> str:
        return call(ctx, tools.run_status, run=run)

    @tool("A run's steps after seq `after`; paginated (next_after).")
    def run_logs(ctx: Context, run: RunArg = None, after: Offset = 0, limit: Limit = 20) -> str:
        return call(ctx, tools.run_logs, run=run, after=after, limit=limit)

    @tool("Send a message to a run's agent without stopping it.")
    def run_message(
        ctx: Context, run: Annotated[int, Field(ge=1)], body: Annotated[str, Field(min_length=1)]
    ) -> str:
        return call(ctx, tools.run_message, run=run, body=body)

    @tool("Stop a run (force: kill the agent after a grace period).")
    def run_stop(
        ctx: Context, run: Annotated[int, Field(ge=1)], reason: str = "", force: bool = False
    ) -> str:
        return call(ctx, tools.run_stop, run=run, reason=reason, force=force)

    @tool("The run queue with positions and capacity.")
    def queue_status(ctx: Context, project: ProjectArg = None) -> str:
        return call(ctx, tools.queue_status, project=project)

    return server


def fixed_principal_from_token(token: str) -> Authenticate:
    """stdio and in-process servers: one token for the whole session, checked on every call."""
    return lambda ctx: principal_from_token(token)


def principal_from_headers(ctx: Context) -> Principal:
    """HTTP: the Authorization header of the request carrying this call."""
    headers = ctx.headers or {}
    return principal_from_token(token_from_authorization(headers.get("authorization")))
