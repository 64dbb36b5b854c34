"""The browser terminal's websocket (/ws/runs/<id>/terminal/, runs.consumers.TerminalConsumer) over the
real ASGI application (autopilot.asgi: origin check, session auth) with channels' WebsocketCommunicator,
against real interactive sessions (runs.interactive: a real tmux server, a real worktree).

Who may attach (operator and up; a viewer, a non-member, staff and anonymous get 4403), which runs
(interactive and live, else 4409; a missing or another project's run is the non-member's 4403), bad
connect parameters and bad frames (4400 with a message naming the problem), typing and reading back,
resize, the session ending under the terminal, the right re-checked while attached, and the close
that leaves no tmux client process behind while the session itself lives on.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import Client

from autopilot.asgi import application
from autopilot.models import Event, ProjectMembership
from runs import interactive
from runs.consumers import MAX_FRAME_BYTES
from runs.models import ExecutionRun, RunKind
from tests.factories import ExecutionRunFactory, MembershipFactory, ProjectFactory, TaskFactory, UserFactory
from tests.runs.helpers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
ACCEPT, FORBIDDEN, NOT_LIVE, BAD_REQUEST = "accept", 4403, 4409, 4400
WAIT = 30
USERS = ("anonymous", "non-member", "viewer", "operator", "owner", "staff", "superuser")
MAY_ATTACH = {"operator", "owner", "superuser"}


@pytest.fixture(autouse=True)
def _no_leftover_tmux():
    yield
    directory = interactive.socket_dir()
    if directory.is_dir():
        for entry in directory.glob("run-*.sock"):
            interactive.kill_server(int(entry.stem.split("-")[1]))


@pytest.fixture(autouse=True)
def _own_artifacts(settings, tmp_path):
    settings.AUTOPILOT_ARTIFACT_ROOT = tmp_path / "artifacts"  # run ids repeat between tests


class World:
    """A project with a live interactive session and one user of every kind."""

    def __init__(self):
        self.project = ProjectFactory()
        self.users = {
            "anonymous": None,
            "non-member": UserFactory(),
            "viewer": MembershipFactory(project=self.project, role="viewer").user,
            "operator": MembershipFactory(project=self.project, role="operator").user,
            "owner": MembershipFactory(project=self.project, role="owner").user,
            "staff": UserFactory(is_staff=True),
            "superuser": UserFactory(is_staff=True, is_superuser=True),
        }
        task = TaskFactory(project=self.project, title="Work by hand")
        self.run = interactive.start(task=task, actor=self.users["operator"])
        wait_for(lambda: f"[run #{self.run.pk}]" in screen(self.run), message="no prompt in the session")


@pytest.fixture
def world():
    return World()


@pytest.fixture
def cookies(world):
    return {who: cookie_of(user) for who, user in world.users.items()}


def tmux(run, *args) -> str:
    return subprocess.run(
        [interactive.tmux_binary(), "-S", str(interactive.socket_path(run)), *args],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout


def screen(run) -> str:
    return tmux(run, "capture-pane", "-p", "-t", interactive.session_name(run))


def clients(run) -> list[str]:
    """The tmux clients attached to the run's session: "pid WIDTHxHEIGHT" each."""
    return tmux(run, "list-clients", "-F", "#{client_pid} #{client_width}x#{client_height}").split("\n")[:-1]


def cookie_of(user) -> bytes | None:
    if user is None:
        return None
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def communicator(
    cookie: bytes | None, path: str, origin: bytes = b"http://127.0.0.1"
) -> WebsocketCommunicator:
    """A client of the real ASGI app; `cookie` from cookie_of(user), made before any event loop runs."""
    headers = [(b"origin", origin), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers)


def socket_path(run_id, query: str = "") -> str:
    return f"/ws/runs/{run_id}/terminal/" + (f"?{query}" if query else "")


def attempt(user, path: str, origin: bytes = b"http://127.0.0.1"):
    """Open the socket: ACCEPT (then close it), or the close code of the refusal."""
    cookie = cookie_of(user)

    async def scenario():
        ws = communicator(cookie, path, origin)
        connected, code = await ws.connect(timeout=WAIT)
        if connected:
            await ws.disconnect()
            return ACCEPT
        return code

    return async_to_sync(scenario)()


async def read_until(ws: WebsocketCommunicator, needle: str) -> str:
    """Output (binary frames) until `needle` shows; fails with what was seen."""
    seen = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while needle not in seen.decode(errors="replace"):
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"{needle!r} never came; the terminal sent {bytes(seen[-2000:])!r}")
        message = await ws.receive_output(timeout=left)
        assert message["type"] == "websocket.send", message
        if message.get("bytes") is not None:
            seen.extend(message["bytes"])
    return seen.decode(errors="replace")


async def until_closed(ws: WebsocketCommunicator) -> tuple[list[dict], int]:
    """The control messages received until the close, and its code (output is skipped)."""
    controls = []
    while True:
        message = await ws.receive_output(timeout=WAIT)
        if message["type"] == "websocket.close":
            return controls, message.get("code", 1000)
        if message.get("text") is not None:
            controls.append(json.loads(message["text"]))


# --- Who may attach, to what -----------------------------------------------------------------------


@pytest.mark.parametrize("who", USERS)
def test_only_operators_owners_and_superusers_may_attach(world, who):
    assert attempt(world.users[who], socket_path(world.run.pk)) == (
        ACCEPT if who in MAY_ATTACH else FORBIDDEN
    )


def test_runs_without_a_live_terminal_and_other_projects_runs_are_refused(world):
    operator = world.users["operator"]
    autonomous = ExecutionRunFactory(project=world.project, status=ExecutionRun.Status.RUNNING)
    ended = ExecutionRunFactory(
        project=world.project, kind=RunKind.INTERACTIVE, status=ExecutionRun.Status.SUCCEEDED
    )
    other = ExecutionRunFactory(project=ProjectFactory(), kind=RunKind.INTERACTIVE)
    outcome = {
        "autonomous": attempt(operator, socket_path(autonomous.pk)),
        "interactive-ended": attempt(operator, socket_path(ended.pk)),
        "other-project": attempt(operator, socket_path(other.pk)),
        "missing": attempt(operator, socket_path(other.pk + 1000)),
        "zero": attempt(operator, socket_path(0)),
        "bigint-overflow": attempt(operator, socket_path(2**63)),
        "huge": attempt(operator, socket_path("9" * 30)),
    }
    assert outcome == {
        "autonomous": NOT_LIVE,
        "interactive-ended": NOT_LIVE,
        "other-project": FORBIDDEN,
        "missing": FORBIDDEN,
        "zero": FORBIDDEN,
        "bigint-overflow": FORBIDDEN,
        "huge": FORBIDDEN,
    }
    # The viewer of this project gets the non-member's answer for the runs it can see, too
    assert attempt(world.users["viewer"], socket_path(autonomous.pk)) == FORBIDDEN


def test_a_socket_from_another_origin_is_refused(world):
    outcome = attempt(world.users["operator"], socket_path(world.run.pk), origin=b"http://evil.example")
    assert outcome != ACCEPT
    assert clients(world.run) == []


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("cols=abc", BAD_REQUEST),
        ("cols=0", BAD_REQUEST),
        ("rows=1001", BAD_REQUEST),
        ("cols=-5", BAD_REQUEST),
        ("cols=99999999999999999999", BAD_REQUEST),
        ("cols=%C2%B2", BAD_REQUEST),
        ("cols=&rows=", ACCEPT),
        ("cols=1000&rows=1", ACCEPT),
    ],
)
def test_the_size_parameters(world, query, code):
    assert attempt(world.users["operator"], socket_path(world.run.pk, query)) == code


# --- Typing and reading back ------------------------------------------------------------------------


def test_typing_runs_in_the_session_resize_follows_and_leaving_detaches_without_leftovers(world, cookies):
    run = world.run

    async def scenario():
        ws = communicator(cookies["operator"], socket_path(run.pk, "cols=90&rows=30"))
        connected, _ = await ws.connect(timeout=WAIT)
        assert connected
        # When the operator types a command (a JSON input frame), Then its output comes back
        await ws.send_to(text_data=json.dumps({"type": "input", "data": "echo hello-$((6*7))\r"}))
        await read_until(ws, "hello-42")
        # Keystrokes as a binary frame work the same
        await ws.send_to(bytes_data="echo bytes-$((5+5))-ünï\r".encode())
        await read_until(ws, "bytes-10-ünï")
        # The browser's size is the tmux client's size, and follows a resize
        [client] = clients(run)
        pid, size = client.split()
        assert size == "90x30"
        await ws.send_to(text_data=json.dumps({"type": "resize", "cols": 120, "rows": 40}))
        await wait_until_async(lambda: clients(run) and clients(run)[0].split()[1] == "120x40")
        # When the browser leaves
        await ws.disconnect()
        return int(pid)

    pid = async_to_sync(scenario)()

    # Then the tmux client (the PTY's process) is gone, the session lives on with what was typed
    assert clients(run) == []
    assert not os.path.exists(f"/proc/{pid}")
    assert interactive.is_live(run)
    assert "hello-42" in screen(run)
    kinds = list(
        Event.objects.filter(subject_type="executionrun", subject_id=run.pk).values_list("kind", "actor")
    )
    operator = world.users["operator"].pk
    assert ("executionrun.terminal_attached", operator) in kinds
    assert ("executionrun.terminal_detached", operator) in kinds


async def wait_until_async(predicate):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not predicate():
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.05)


BAD_FRAMES = [
    ("text", "not json", "must be JSON"),
    ("text", "[1, 2]", "JSON object"),
    ("text", '{"type": "shell", "data": "ls"}', "'input' or 'resize'"),
    ("text", '{"data": "ls"}', "'input' or 'resize'"),
    ("text", '{"type": "input"}', "'data', a string"),
    ("text", '{"type": "input", "data": 5}', "'data', a string"),
    ("text", '{"type": "input", "data": "\\ud800"}', "not valid text"),
    ("text", '{"type": "resize", "cols": "80", "rows": 24}', "'cols', an integer from 1 to 1000"),
    ("text", '{"type": "resize", "cols": true, "rows": 24}', "'cols', an integer from 1 to 1000"),
    ("text", '{"type": "resize", "cols": 80, "rows": 0}', "'rows', an integer from 1 to 1000"),
    ("text", '{"type": "resize", "cols": 80.5, "rows": 24}', "'cols', an integer"),
    ("text", '{"type": "resize", "cols": 1001, "rows": 24}', "'cols', an integer"),
    (
        "text",
        json.dumps({"type": "input", "data": "x" * MAX_FRAME_BYTES}),
        f"at most {MAX_FRAME_BYTES} bytes",
    ),
    ("bytes", b"y" * (MAX_FRAME_BYTES + 1), f"at most {MAX_FRAME_BYTES} bytes"),
]


def test_bad_frames_close_with_4400_and_a_message_naming_the_problem(world, cookies):
    run = world.run

    async def scenario():
        outcome = []
        for kind, frame, _ in BAD_FRAMES:
            ws = communicator(cookies["operator"], socket_path(run.pk))
            connected, _ = await ws.connect(timeout=WAIT)
            assert connected
            await ws.send_to(**{f"{kind}_data": frame})
            controls, code = await until_closed(ws)
            errors = [c["message"] for c in controls if c.get("type") == "error"]
            outcome.append((code, errors[0] if errors else ""))
            await ws.wait()
        return outcome

    outcome = async_to_sync(scenario)()
    for (_kind, frame, words), (code, message) in zip(BAD_FRAMES, outcome, strict=True):
        assert code == BAD_REQUEST and words in message, (frame[:80], code, message)
    # Nothing of the bad frames reached the session, and no client is left
    wait_for(lambda: clients(run) == [], message="a tmux client was left attached")
    assert "yyyy" not in screen(run) and "xxxx" not in screen(run)


def test_the_session_ending_under_the_terminal_closes_it(world, cookies):
    run = world.run

    async def scenario():
        ws = communicator(cookies["owner"], socket_path(run.pk))
        connected, _ = await ws.connect(timeout=WAIT)
        assert connected
        await ws.send_to(text_data=json.dumps({"type": "input", "data": "echo before-end\r"}))
        await read_until(ws, "before-end")
        # When the session's tmux server goes away (its end, an idle sweep, a stop)
        await asyncio.get_running_loop().run_in_executor(None, interactive.kill_server, run)
        # Then the terminal says so and closes normally
        return await until_closed(ws)

    controls, code = async_to_sync(scenario)()
    assert {"type": "exit"} in controls and code == 1000


def test_a_membership_lowered_while_attached_closes_the_terminal(world, cookies, settings):
    settings.AUTOPILOT_WS_RECHECK_SECONDS = 0.2
    run, operator = world.run, world.users["operator"]

    async def scenario():
        ws = communicator(cookies["operator"], socket_path(run.pk))
        connected, _ = await ws.connect(timeout=WAIT)
        assert connected
        await ws.send_to(text_data=json.dumps({"type": "input", "data": "echo still-here\r"}))
        await read_until(ws, "still-here")
        # When the operator becomes a viewer
        await asyncio.get_running_loop().run_in_executor(None, demote, operator.pk, world.project.pk)
        # Then the terminal is closed with the non-member's code
        return await until_closed(ws)

    controls, code = async_to_sync(scenario)()
    assert code == FORBIDDEN
    assert any("no longer" in c.get("message", "") for c in controls)
    wait_for(lambda: clients(run) == [], message="the demoted user's tmux client was left attached")


def demote(user_id: int, project_id: int) -> None:
    try:
        ProjectMembership.objects.filter(user_id=user_id, project_id=project_id).update(role="viewer")
    finally:
        connection.close()


def test_an_autonomous_run_taken_over_gets_the_browser_terminal_while_its_terminal_is_live(
    world, cookies, tmp_path
):
    # Given an autonomous run whose worktree a human took over (its terminal opened, like
    # runs.interactive.open_takeover does once the agent paused)
    run = ExecutionRunFactory(
        project=world.project, status=ExecutionRun.Status.WAITING_APPROVAL, worktree_path=str(tmp_path)
    )
    refused_before = attempt(world.users["operator"], socket_path(run.pk))
    interactive.open_terminal(run, cwd=tmp_path, title=f"run #{run.pk} (taken over)")
    wait_for(lambda: f"[run #{run.pk}]" in screen(run), message="no prompt in the taken-over terminal")

    async def scenario():
        ws = communicator(cookies["operator"], socket_path(run.pk))
        connected, _ = await ws.connect(timeout=WAIT)
        assert connected
        await ws.send_to(text_data=json.dumps({"type": "input", "data": "echo taken-$((40+2))\r"}))
        await read_until(ws, "taken-42")
        await ws.disconnect()

    # Then an operator attaches and types; a viewer still may not
    async_to_sync(scenario)()
    assert refused_before == NOT_LIVE
    assert attempt(world.users["viewer"], socket_path(run.pk)) == FORBIDDEN
    interactive.kill_server(run)
    assert attempt(world.users["operator"], socket_path(run.pk)) == NOT_LIVE
