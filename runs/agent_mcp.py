"""The seam through which the agents Autopilot starts get Autopilot's MCP server.

The MCP server is a door above `runs` (it calls the run services), so `runs` cannot import it. The
core app registers a provider in `AutopilotConfig.ready()`; backends ask it for their run's server:

- `sdk_server(run)`: an in-process `mcp.server.Server` scoped to the run (Claude Code, through
  claude-agent-sdk's `mcp_servers={"autopilot": {"type": "sdk", …}}`);
- `http_config(run)`: {"url", "token"} for a backend that reaches the server over HTTP (Codex), or None
  when no URL is configured (settings.AUTOPILOT_MCP_URL).

Tools of this server reach the agent as `mcp__autopilot__<tool>`; the guard allows them (they act
only within the run's project, with the run's token).
"""

from __future__ import annotations

from typing import Any, Protocol

SERVER_NAME = "autopilot"
TOOL_PREFIX = f"mcp__{SERVER_NAME}__"


class Provider(Protocol):
    def sdk_server(self, run) -> Any: ...

    def http_config(self, run) -> dict[str, str] | None: ...


_provider: Provider | None = None


def register(provider: Provider) -> None:
    global _provider
    _provider = provider


def provider() -> Provider | None:
    return _provider
