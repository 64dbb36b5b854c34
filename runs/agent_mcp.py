"""The seam through which the agents Autopilot starts get Autopilot's MCP server.

The MCP server is a door above `runs` (it calls the run services), so `runs` cannot import it. The
core app registers a provider in `AutopilotConfig.ready()`; backends ask it for their run's server:

- `sdk_server(run)`: an in-process `mcp.server.Server` scoped to the run (Claude Code, through
  claude-agent-sdk's `mcp_servers={"autopilot": {"type": "sdk", …}}`);
- `http_config(run)`: {"url", "token"} for a backend that reaches the server over HTTP (Codex), or None
  when no URL is configured (settings.AUTOPILOT_MCP_URL);
- `agent_tools(run)`: the same operations as plain tools (`AgentTools`: JSON schemas and a sync call)
  for a backend with its own tool-use loop (native), which offers them as `autopilot__<tool>`.

Tools of this server reach a CLI agent as `mcp__autopilot__<tool>`; the guard allows them (they act
only within the run's project, with the run's token).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

SERVER_NAME = "autopilot"
TOOL_PREFIX = f"mcp__{SERVER_NAME}__"
NATIVE_PREFIX = f"{SERVER_NAME}__"  # the native backend's names: `autopilot__task_create`


@dataclass(frozen=True)
class AgentTools:
    """Autopilot's operations for one run, as plain tools.

    specs: [{"name": "<tool>", "description": …, "parameters": <JSON schema>}] (bare names, no prefix).
    call(name, arguments) -> (text, is_error): runs one operation with the run's token, synchronously;
    a refused or invalid call is (its message, True), never an exception.
    """

    specs: list[dict[str, Any]]
    call: Callable[[str, dict[str, Any]], tuple[str, bool]]


class Provider(Protocol):
    def sdk_server(self, run) -> Any: ...

    def http_config(self, run) -> dict[str, str] | None: ...

    def agent_tools(self, run) -> AgentTools | None: ...


_provider: Provider | None = None


def register(provider: Provider) -> None:
    global _provider
    _provider = provider


def provider() -> Provider | None:
    return _provider
