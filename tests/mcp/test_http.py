"""`/mcp` over streamable HTTP in the ASGI app, started for real with `autopilot serve` (daphne), driven
by the official MCP client with an `Authorization: Bearer` header."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from blueprints.models import Task
from tests.liveserver import pick_free_port, wait_until
from tests.mcp.conftest import answer, error_text

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def web(subprocess_env, tmp_path):
    """`autopilot serve --no-cluster` on the test database, on a free port."""
    port = pick_free_port()
    env = {**subprocess_env, "AUTOPILOT_DATA_DIR": str(tmp_path / "data")}
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "autopilot.cli", "serve", "--no-cluster", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return urllib.request.urlopen(url + "/healthz", timeout=5).status in (200, 503)
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    try:
        wait_until(up, timeout=90, what="autopilot serve")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def over_http(url: str, token: str, session):
    async def main():
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            async with Client(streamable_http_client(url + "/mcp", http_client=http)) as client:
                return await session(client)

    return anyio.run(main)


def post_json(url: str, payload: dict, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **headers,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_http_lists_and_calls_tools_with_the_callers_rights(world, web):
    tokenizer = world.tasks["Write the tokenizer"]

    async def operator(client):
        tools = (await client.list_tools()).tools
        got = answer(await client.call_tool("task_get", {"task": tokenizer.pk}))
        created = answer(
            await client.call_tool("task_create", {"project": "calc", "title": "From an editor"})
        )
        return {t.name for t in tools}, got, created

    async def viewer(client):
        return error_text(await client.call_tool("task_create", {"project": "calc", "title": "Nope"}))

    async def outsider(client):
        return error_text(await client.call_tool("task_get", {"task": tokenizer.pk}))

    names, got, created = over_http(web, world.tokens["operator"], operator)
    assert len(names) == 12 and "run_logs" in names
    assert got["title"] == "Write the tokenizer" and "tokenize" in got["spec"]
    assert Task.objects.get(pk=created["id"]).created_by == world.users["operator"]
    assert "needs the operator role" in over_http(web, world.tokens["viewer"], viewer)
    assert f"Task {tokenizer.pk} was not found." in over_http(web, world.tokens["outsider"], outsider)


def test_http_refuses_a_request_without_a_valid_token(world, web):
    hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    for headers, expected in (
        ({}, "No API token"),
        ({"Authorization": "Bearer " + "f" * 40}, "Invalid API token."),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "No API token"),
    ):
        status, body = post_json(web + "/mcp", hello, headers)
        assert status == 401, body
        assert expected in body["error"]
