"""Fixtures for the MCP server tests: a project with a spec, its tasks, users of every role with API
tokens, and a helper that talks to `autopilot mcp` over stdio with the official MCP client."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from autopilot import services as core_services
from blueprints.ingestion import ingest_blueprint
from blueprints.models import Task
from tests.factories import MembershipFactory, ProjectFactory, UserFactory

SPEC = """# Parser

## Tokenizer

### Write the tokenizer

The tokenizer splits the input into tokens. Acceptance: `tokenize("a b")` returns two tokens.

### Handle quoted strings

Quoted strings are one token.

## Evaluator

### Write the evaluator

Evaluates the token stream.
"""

AUTOPILOT_MCP = [sys.executable, "-m", "autopilot.cli", "mcp"]


@dataclass
class World:
    project: Any
    other: Any
    tasks: dict[str, Task]
    tokens: dict[str, str]
    users: dict[str, Any]


@pytest.fixture
def world(transactional_db) -> World:
    project = ProjectFactory(name="Calc", slug="calc")
    other = ProjectFactory(name="Secret", slug="secret")
    users = {
        "owner": UserFactory(username="olive"),
        "operator": UserFactory(username="oscar"),
        "viewer": UserFactory(username="vera"),
        "outsider": UserFactory(username="otto"),
    }
    for role in ("owner", "operator", "viewer"):
        MembershipFactory(project=project, user=users[role], role=role)
    MembershipFactory(project=other, user=users["outsider"], role="owner")
    ingest_blueprint(project=project, text=SPEC, actor=users["owner"])
    tasks = {t.title: t for t in Task.objects.filter(project=project, kind=Task.Kind.WORK)}
    tokens = {name: core_services.user_token(user=user) for name, user in users.items()}
    return World(project=project, other=other, tasks=tasks, tokens=tokens, users=users)


def answer(result) -> Any:
    """A tool result's JSON (the call must have succeeded)."""
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


def error_text(result) -> str:
    assert result.is_error, result.content[0].text
    return result.content[0].text


def over_stdio(env: dict, token: str | None, session) -> Any:
    """Start `autopilot mcp` (a real subprocess) with `token` in AUTOPILOT_TOKEN, connect the official
    MCP client to it over stdio and run `await session(client)`."""
    child_env = {**env}
    child_env.pop("AUTOPILOT_TOKEN", None)
    if token is not None:
        child_env["AUTOPILOT_TOKEN"] = token

    async def main():
        params = StdioServerParameters(command=AUTOPILOT_MCP[0], args=AUTOPILOT_MCP[1:], env=child_env)
        async with Client(params, read_timeout_seconds=60) as client:
            return await session(client)

    return anyio.run(main)
