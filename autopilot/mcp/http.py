"""`/mcp`: the MCP server over streamable HTTP, mounted in the ASGI app next to Django.

Stateless and JSON-answering (`stateless_http`, `json_response`): any web process can answer any
request, so it scales out like the API. Every request needs `Authorization: Bearer <token>` (an API
token or a run token); without a valid one the answer is a 401 naming the problem, before the MCP
layer sees the request. Each tool call authenticates again from the header (autopilot.mcp.server).

The SDK's session manager needs a running task group, normally entered by an ASGI lifespan; daphne
sends no lifespan events, so the first request starts it in a background task that lives as long as
the event loop. DNS-rebinding protection (a Host/Origin allowlist) is off: a browser page cannot send
the bearer token, and Django's ALLOWED_HOSTS does not translate to the SDK's patterns.
"""

from __future__ import annotations

import asyncio
import json

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from mcp.server.transport_security import TransportSecuritySettings

from autopilot.mcp.auth import AuthError, principal_from_token, token_from_authorization
from autopilot.mcp.server import build_server, principal_from_headers

PATH = "/mcp"


def _check_token(header: str) -> None:
    close_old_connections()
    principal_from_token(token_from_authorization(header))


class MCPHttpApp:
    def __init__(self) -> None:
        self.server = build_server(principal_from_headers)
        self.app = self.server.streamable_http_app(
            streamable_http_path=PATH,
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self._lock: asyncio.Lock | None = None
        self._runner: asyncio.Task | None = None
        self._ready = False

    @staticmethod
    def handles(scope) -> bool:
        return scope.get("type") == "http" and (scope["path"] == PATH or scope["path"].startswith(PATH + "/"))

    async def _start(self) -> None:
        if self._ready:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._ready:
                return
            started = asyncio.Event()

            async def run_forever() -> None:
                async with self.server.session_manager.run():
                    started.set()
                    await asyncio.Event().wait()

            self._runner = asyncio.get_running_loop().create_task(run_forever())
            await started.wait()
            self._ready = True

    async def __call__(self, scope, receive, send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            await sync_to_async(_check_token)(headers.get("authorization", ""))
        except AuthError as exc:
            body = json.dumps({"error": exc.message}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b'Bearer realm="autopilot"'),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self._start()
        await self.app(scope, receive, send)


def with_mcp(django_app):
    """An ASGI app that sends /mcp to the MCP server and everything else to `django_app`."""
    mcp_app = MCPHttpApp()

    async def app(scope, receive, send):
        if MCPHttpApp.handles(scope):
            await mcp_app(scope, receive, send)
        else:
            await django_app(scope, receive, send)

    return app
