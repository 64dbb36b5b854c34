"""Autopilot's MCP server for the agents Autopilot starts (registered with runs.agent_mcp in ready()).

Each run gets a run token (autopilot.mcp.auth.mint_run_token: run, project, task, expiry; accepted
only while the run is active) and a server scoped by it. Claude Code gets the server in process
(claude-agent-sdk serves it to the CLI over its control channel: no subprocess, no database settings
or secrets handed to the agent); Codex gets the HTTP endpoint (settings.AUTOPILOT_MCP_URL) and the
token in an environment variable. The native backend (Autopilot's own tool-use loop) gets the same
operations as plain tools (`agent_tools`): the in-process server's schemas and descriptions, called
through the server with the run's token, minus what a run token may not do (start, stop, message runs).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings

from autopilot.mcp.auth import mint_run_token
from runs.agent_mcp import AgentTools

logger = logging.getLogger(__name__)

# What an agent's own loop is offered: the run token refuses run_start / run_stop / run_message anyway,
# and every tool description is paid for in every model call.
AGENT_TOOLS = (
    "task_get",
    "task_list",
    "task_next",
    "task_create",
    "task_update",
    "task_complete",
    "run_status",
    "run_logs",
    "queue_status",
)


def run_server(run) -> Any:
    """The MCP server (mcp.server.mcpserver.MCPServer) scoped by a fresh token of `run`."""
    # Imported here: the mcp package takes ~0.5 s to import, and only agent workers need it.
    from autopilot.mcp.server import build_server, fixed_principal_from_token

    return build_server(fixed_principal_from_token(mint_run_token(run)))


class AgentServers:
    def sdk_server(self, run) -> Any:
        return run_server(run)._lowlevel_server  # noqa: SLF001 - claude-agent-sdk serves an mcp.server.Server

    def http_config(self, run) -> dict[str, str] | None:
        url = getattr(settings, "AUTOPILOT_MCP_URL", "") or ""
        if not url:
            return None
        return {"url": url, "token": mint_run_token(run)}

    def agent_tools(self, run) -> AgentTools:
        # Imported here like the server: only agent workers need the mcp package.
        import anyio
        from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError

        server = run_server(run)
        registered = {t.name: t for t in server._tool_manager.list_tools()}  # noqa: SLF001 - no public getter
        specs = [
            {
                "name": name,
                "description": registered[name].description,
                "parameters": registered[name].parameters,
            }
            for name in AGENT_TOOLS
            if name in registered
        ]
        offered = {spec["name"] for spec in specs}

        def call(name: str, arguments: dict[str, Any]) -> tuple[str, bool]:
            if name not in offered:
                return f"Unknown tool '{name}'. Available: {', '.join(sorted(offered))}.", True
            try:
                result = anyio.run(server.call_tool, name, dict(arguments or {}))
            except ToolError as exc:  # a domain error or invalid arguments; a crash says only its tool
                if isinstance(exc, UnexpectedToolError):
                    logger.error("MCP tool %s failed for run %s", name, run.pk, exc_info=exc.__cause__)
                return str(exc), True
            except Exception:  # never a traceback to the model
                logger.exception("MCP tool %s failed for run %s", name, run.pk)
                return f"Error executing tool {name}", True
            content = getattr(result, "content", None) or []
            text = "\n".join(getattr(block, "text", "") for block in content) or json.dumps(None)
            return text, bool(getattr(result, "is_error", False))

        return AgentTools(specs=specs, call=call)


PROVIDER = AgentServers()
