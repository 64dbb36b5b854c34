"""Configuration snippets for MCP clients (`autopilot mcp config --client …`)."""

from __future__ import annotations

import json
import shlex

from autopilot.mcp.auth import TOKEN_ENV

CLIENTS = ("claude-code", "codex", "cursor")
TOKEN_PLACEHOLDER = "<your API token: autopilot user token NAME>"


def snippet(client: str, *, command: list[str], token: str = "", url: str = "") -> dict:
    """{"client", "format", "text"}: what to paste (or run) to add Autopilot to `client`.

    Over stdio by default (`command` starts `autopilot mcp`); with `url`, over streamable HTTP."""
    token = token or TOKEN_PLACEHOLDER
    if client == "claude-code":
        if url:
            text = shlex.join(
                [
                    "claude",
                    "mcp",
                    "add",
                    "--transport",
                    "http",
                    "autopilot",
                    url,
                    "--header",
                    f"Authorization: Bearer {token}",
                ]
            )
        else:
            text = shlex.join(
                ["claude", "mcp", "add", "autopilot", "--env", f"{TOKEN_ENV}={token}", "--", *command]
            )
        return {"client": client, "format": "shell", "text": text}
    if client == "codex":
        if url:
            lines = [
                "[mcp_servers.autopilot]",
                f"url = {json.dumps(url)}",
                f'bearer_token_env_var = "{TOKEN_ENV}"',
                f"# and export {TOKEN_ENV}={token} where codex runs",
            ]
        else:
            lines = [
                "[mcp_servers.autopilot]",
                f"command = {json.dumps(command[0])}",
                f"args = {json.dumps(command[1:])}",
                f"env = {{ {TOKEN_ENV} = {json.dumps(token)} }}",
            ]
        return {"client": client, "format": "toml (~/.codex/config.toml)", "text": "\n".join(lines)}
    if client == "cursor":
        entry: dict = (
            {"url": url, "headers": {"Authorization": f"Bearer {token}"}}
            if url
            else {"command": command[0], "args": command[1:], "env": {TOKEN_ENV: token}}
        )
        text = json.dumps({"mcpServers": {"autopilot": entry}}, indent=2)
        return {"client": client, "format": "json (.cursor/mcp.json)", "text": text}
    raise ValueError(client)
