"""Autopilot's MCP server for the agents Autopilot starts (registered with runs.agent_mcp in ready()).

Each run gets a run token (autopilot.mcp.auth.mint_run_token: run, project, task, expiry; accepted
only while the run is active) and a server scoped by it. Claude Code gets the server in process
(claude-agent-sdk serves it to the CLI over its control channel: no subprocess, no database settings
or secrets handed to the agent); Codex gets the HTTP endpoint (settings.AUTOPILOT_MCP_URL) and the
token in an environment variable.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from autopilot.mcp.auth import mint_run_token


class AgentServers:
    def sdk_server(self, run) -> Any:
        # Imported here: the mcp package takes ~0.5 s to import, and only agent workers need it.
        from autopilot.mcp.server import build_server, fixed_principal_from_token

        server = build_server(fixed_principal_from_token(mint_run_token(run)))
        return server._lowlevel_server  # noqa: SLF001 - claude-agent-sdk serves an mcp.server.Server

    def http_config(self, run) -> dict[str, str] | None:
        url = getattr(settings, "AUTOPILOT_MCP_URL", "") or ""
        if not url:
            return None
        return {"url": url, "token": mint_run_token(run)}


PROVIDER = AgentServers()
