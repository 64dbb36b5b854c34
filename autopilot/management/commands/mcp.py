"""`autopilot mcp [serve]`: Autopilot's MCP server over stdio (token from AUTOPILOT_TOKEN).
`autopilot mcp config --client claude-code|codex|cursor [--url URL] [--token T]`: the client's snippet."""

from __future__ import annotations

import os
import shutil
import sys

from autopilot.cli_support import AutopilotCommand
from autopilot.mcp.auth import TOKEN_ENV, principal_from_token
from autopilot.mcp.config import CLIENTS, snippet
from autopilot.mcp.server import build_server, fixed_principal_from_token


class Command(AutopilotCommand):
    help = "Serve Autopilot's MCP server over stdio, or print the configuration for an MCP client."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", metavar="{serve,config}")
        self.add_action(sub, "serve", f"Serve over stdio (the default); the API token is in ${TOKEN_ENV}.")
        config = self.add_action(sub, "config", "Print the snippet that adds Autopilot to an MCP client.")
        config.add_argument("--client", required=True, choices=CLIENTS)
        config.add_argument(
            "--url", default="", help="Use streamable HTTP at this URL (…/mcp) instead of stdio."
        )
        config.add_argument(
            "--token", default="", help="Put this token in the snippet (default: a placeholder)."
        )

    def handle(self, *args, **options):
        if options.get("action") == "config":
            return self.do_config(options)
        return self.do_serve(options)

    def do_config(self, options):
        program = shutil.which("autopilot")
        command = [program, "mcp"] if program else [sys.executable, "-m", "autopilot.cli", "mcp"]
        data = snippet(options["client"], command=command, token=options["token"], url=options["url"])
        self.emit(data, data["text"])

    def do_serve(self, options):
        token = os.environ.get(TOKEN_ENV, "")
        principal_from_token(token)  # refuse a missing or wrong token at once, with the reason (exit 2)
        build_server(fixed_principal_from_token(token)).run("stdio")
