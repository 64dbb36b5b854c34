"""The browser terminal: `/ws/runs/<run id>/terminal/[?cols=N&rows=N]`, a PTY bridged over a websocket.

On connect the caller is checked like every websocket (autopilot.asgi: the Origin must be an allowed
host; the user comes from the session): the run must exist and the caller must be a member of its
project with the operator role (superusers are), otherwise close 4403 — the same code the events
socket gives a non-member, whatever the reason, so a socket never tells whether another project's
run exists; a viewer may replay the recording on the run page but never attaches or types. The run
must be interactive and live (runs.interactive.is_live), otherwise close 4409. A `cols`/`rows`
that is not a number in 1..1000 is a 4400.

Then `runs.interactive.attach_argv(run)` (a tmux client attaching to the run's session) runs on a
fresh PTY (runs.terminal; it never blocks the event loop) and bytes flow both ways:
- server → client: binary frames, the terminal's raw output; text frames are JSON control messages:
  `{"type": "exit"}` when the attached process ended (then close 1000), `{"type": "error",
  "message": ...}` before a 4400 close or when input was dropped;
- client → server: binary frames are keystrokes (raw bytes); text frames are JSON,
  `{"type": "input", "data": "..."}` or `{"type": "resize", "cols": N, "rows": N}`. A frame over
  MAX_FRAME_BYTES, malformed JSON, an unknown type or a bad field closes the socket with 4400 and
  a message naming the problem.
The caller's right is checked again every AUTOPILOT_WS_RECHECK_SECONDS while connected (logged out,
deactivated, membership removed or lowered to viewer: close 4403). On disconnect the PTY's whole
session is ended (the tmux client detaches; the tmux session itself lives on). Attach and detach are
events on the run (`executionrun.terminal_attached` / `_detached`, with the user as actor).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from importlib import import_module
from urllib.parse import parse_qs

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from autopilot.consumers import CLOSE_BAD_REQUEST, CLOSE_FORBIDDEN, MAX_ID, _integer
from autopilot.events import record_event
from autopilot.models import Role
from autopilot.permissions import has_role
from runs import interactive
from runs.models import ExecutionRun
from runs.terminal import MAX_SIZE, MIN_SIZE, TerminalFull, TerminalProcess

CLOSE_NOT_LIVE = 4409  # not an interactive run, or its session has ended
CLOSE_FAILED = 1011  # the attach command could not start
MAX_FRAME_BYTES = 64 * 1024  # one client frame (a paste larger than this is split by the client)
OUTBOX_PAUSE, OUTBOX_RESUME = 64, 8  # output chunks queued for the socket: stop / resume reading the PTY
DEFAULT_COLS, DEFAULT_ROWS = 80, 24


def client_env() -> dict[str, str]:
    """The attach command's environment: nothing of the web server's own (its secrets stay there)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm-256color", "LANG": "C.UTF-8"}


class BadFrame(ValueError):
    pass


def parse_frame(text: str) -> tuple[str, object]:
    """A client's JSON text frame → ("input", bytes) or ("resize", (cols, rows)); BadFrame otherwise."""
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise BadFrame("a text frame must be JSON") from exc
    if not isinstance(message, dict):
        raise BadFrame("a text frame must be a JSON object with a 'type'")
    kind = message.get("type")
    if kind == "input":
        data = message.get("data")
        if not isinstance(data, str):
            raise BadFrame("'input' needs 'data', a string")
        try:
            return "input", data.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate
            raise BadFrame("'data' is not valid text") from exc
    if kind == "resize":
        cols, rows = message.get("cols"), message.get("rows")
        for name, value in (("cols", cols), ("rows", rows)):
            if type(value) is not int or not MIN_SIZE <= value <= MAX_SIZE:
                raise BadFrame(f"'resize' needs '{name}', an integer from {MIN_SIZE} to {MAX_SIZE}")
        return "resize", (cols, rows)
    raise BadFrame("the 'type' of a text frame is 'input' or 'resize'")


class TerminalConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        self.terminal: TerminalProcess | None = None
        self.tasks: list[asyncio.Task] = []
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.attached = False
        params = parse_qs(
            self.scope.get("query_string", b"").decode(errors="replace"), keep_blank_values=True
        )
        cols = _integer(params.get("cols", [""])[0], default=DEFAULT_COLS)
        rows = _integer(params.get("rows", [""])[0], default=DEFAULT_ROWS)
        if (
            cols is None
            or rows is None
            or not (MIN_SIZE <= cols <= MAX_SIZE and MIN_SIZE <= rows <= MAX_SIZE)
        ):
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        user = self.scope.get("user")
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        code, argv = await self._may_attach(user, run_id, spawn=True)
        if code is not None:
            await self.close(code=code)
            return
        self.run_id, self.user_id = run_id, user.pk
        self.session_key = self.scope["session"].session_key
        await self.accept()
        try:
            self.terminal = TerminalProcess.spawn(
                argv, on_output=self._output, on_exit=self._exited, cols=cols, rows=rows, env=client_env()
            )
        except OSError as exc:
            await self._send_control({"type": "error", "message": f"the terminal could not start: {exc}"})
            await self.close(code=CLOSE_FAILED)
            return
        self.attached = True
        await self._record("executionrun.terminal_attached")
        self.tasks = [asyncio.create_task(self._pump()), asyncio.create_task(self._recheck_loop())]

    async def disconnect(self, code):
        for task in getattr(self, "tasks", []):
            if task is not asyncio.current_task():
                task.cancel()
        if getattr(self, "terminal", None) is not None:
            terminal, self.terminal = self.terminal, None
            await terminal.aclose()
        if getattr(self, "attached", False):
            self.attached = False
            await self._record("executionrun.terminal_detached")

    # --- client → PTY ------------------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if self.terminal is None:
            return
        size = (
            len(bytes_data) if bytes_data is not None else len((text_data or "").encode("utf-8", "replace"))
        )
        try:
            if size > MAX_FRAME_BYTES:
                raise BadFrame(f"a frame is at most {MAX_FRAME_BYTES} bytes; this one is {size}")
            if bytes_data is not None:
                kind, value = "input", bytes_data
            else:
                kind, value = parse_frame(text_data or "")
        except BadFrame as exc:
            await self._refuse(CLOSE_BAD_REQUEST, str(exc))
            return
        if kind == "resize":
            self.terminal.resize(*value)
            return
        try:
            self.terminal.write(value)
        except TerminalFull as exc:
            await self._send_control({"type": "error", "message": f"{exc}; input dropped"})

    # --- PTY → client ------------------------------------------------------------------------------

    def _output(self, data: bytes) -> None:
        self.outbox.put_nowait(data)
        if self.outbox.qsize() >= OUTBOX_PAUSE and self.terminal is not None:
            self.terminal.pause_reading()

    def _exited(self) -> None:
        self.outbox.put_nowait(None)

    async def _pump(self):
        """Send the PTY's output in order; after its end, say so and close."""
        while True:
            data = await self.outbox.get()
            if data is None:
                await self._send_control({"type": "exit"})
                await self.close(code=1000)
                await self.disconnect(1000)
                return
            await self.send(bytes_data=data)
            if self.outbox.qsize() <= OUTBOX_RESUME and self.terminal is not None:
                self.terminal.resume_reading()

    async def _send_control(self, message: dict) -> None:
        await self.send(text_data=json.dumps(message))

    async def _refuse(self, code: int, message: str) -> None:
        await self._send_control({"type": "error", "message": message})
        await self.close(code=code)
        await self.disconnect(code)

    # --- rights ------------------------------------------------------------------------------------

    async def _recheck_loop(self):
        """The caller's right, re-read from the session, every AUTOPILOT_WS_RECHECK_SECONDS."""
        while True:
            await asyncio.sleep(settings.AUTOPILOT_WS_RECHECK_SECONDS)
            engine = import_module(settings.SESSION_ENGINE)
            user = await get_user({"session": engine.SessionStore(self.session_key)})
            code = CLOSE_FORBIDDEN
            if user.pk == self.user_id:
                code, _ = await self._may_attach(user, self.run_id, spawn=False)
            if code is not None:
                with contextlib.suppress(Exception):  # the socket may be closing already
                    await self._refuse(code, "you may no longer use this terminal")
                return

    @database_sync_to_async
    def _may_attach(self, user, run_id: int, *, spawn: bool) -> tuple[int | None, list[str]]:
        """(None, argv) when `user` may attach to run `run_id`'s terminal, else (close code, [])."""
        if user is None or not user.is_authenticated or not 0 < run_id <= MAX_ID:
            return CLOSE_FORBIDDEN, []
        run = ExecutionRun.objects.select_related("project").filter(pk=run_id).first()
        if run is None or not has_role(user, run.project, Role.OPERATOR):
            return CLOSE_FORBIDDEN, []
        if not interactive.is_live(run):  # an interactive session, or an autonomous run taken over
            return CLOSE_NOT_LIVE, []
        return None, (interactive.attach_argv(run) if spawn else [])

    @database_sync_to_async
    def _record(self, kind: str) -> None:
        run = ExecutionRun.objects.filter(pk=self.run_id).first()
        if run is None:
            return
        user = get_user_model().objects.filter(pk=self.user_id).first()
        with transaction.atomic():
            record_event(kind=kind, subject=run, actor=user)
