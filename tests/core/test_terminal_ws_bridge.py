"""The browser terminal's bridge (runs.terminal) on its own: a real bash on a real PTY, driven from an
asyncio loop — output, input, resize, the end of the process, a process that stops reading, and the
close that leaves no process behind; and the redaction of a recording (asciicast v2) served to the
run page, including a secret split across two output chunks."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from autopilot.redaction import redact
from runs.terminal import (
    MAX_PENDING,
    BadRecording,
    TerminalFull,
    TerminalProcess,
    redact_cast,
    session_processes,
)

WAIT = 30  # seconds a test waits for a process to answer before failing
SECRET = "sk-ant-api03-" + "Q7x9" * 12


class Screen:
    """What a terminal printed, and a way to wait for a piece of it."""

    def __init__(self):
        self.data = bytearray()
        self.changed = asyncio.Event()
        self.ended = asyncio.Event()

    def output(self, chunk: bytes) -> None:
        self.data.extend(chunk)
        self.changed.set()

    def exit(self) -> None:
        self.ended.set()

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")

    async def wait_for(self, needle: str) -> str:
        async def poll():
            while needle not in self.text:
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(poll(), WAIT)
        except TimeoutError:
            raise AssertionError(
                f"{needle!r} never appeared; the terminal showed {self.text[-2000:]!r}"
            ) from None
        return self.text


def bash(screen: Screen, tmp_path, **kwargs) -> TerminalProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PS1": "$ ", "HOME": str(tmp_path)}
    return TerminalProcess.spawn(
        ["bash", "--norc", "--noprofile", "-i"],
        on_output=screen.output,
        on_exit=screen.exit,
        cwd=str(tmp_path),
        env=env,
        **kwargs,
    )


def run(coro):
    return asyncio.run(coro)


def test_a_shell_on_the_pty_answers_typed_input_and_follows_a_resize(tmp_path):
    async def scenario():
        screen = Screen()
        terminal = bash(screen, tmp_path, cols=100, rows=30)
        try:
            # When a command is typed
            terminal.write(b"echo hello-$((6*7)); stty size\r")
            # Then its output comes back, on a terminal of the size asked for
            await screen.wait_for("hello-42")
            await screen.wait_for("30 100")
            # When the terminal is resized, Then the shell sees the new size
            terminal.resize(132, 43)
            terminal.write(b"stty size; tty\r")
            await screen.wait_for("43 132")
            await screen.wait_for("/dev/pts/")
        finally:
            await terminal.aclose()

    run(scenario())


def test_close_ends_the_shell_and_its_background_jobs_and_nothing_is_left(tmp_path):
    async def scenario():
        screen = Screen()
        terminal = bash(screen, tmp_path)
        # Given a shell with background jobs (each in its own process group) and a foreground one
        terminal.write(b"sleep 1001 & sleep 1002 & echo jobs-$((1+1)); sleep 1003\r")
        await screen.wait_for("jobs-2")
        for _ in range(200):
            if len(session_processes(terminal.pid)) >= 4:
                break
            await asyncio.sleep(0.05)
        members = session_processes(terminal.pid)
        assert len(members) >= 4, members  # bash and the three sleeps

        # When the terminal is closed
        await terminal.aclose()

        # Then every process of its session is gone and the shell was reaped
        assert session_processes(terminal.pid) == []
        assert terminal.process.returncode is not None
        for pid in members:
            assert not os.path.exists(f"/proc/{pid}") or "Z" in _state(pid), pid

    run(scenario())


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_the_end_of_the_process_is_reported_once(tmp_path):
    async def scenario():
        screen = Screen()
        terminal = bash(screen, tmp_path)
        terminal.write(b"echo bye-$((2*3)); exit\r")
        await screen.wait_for("bye-6")
        await asyncio.wait_for(screen.ended.wait(), WAIT)
        await terminal.aclose()
        assert terminal.process.returncode == 0

    run(scenario())


def test_a_process_that_stops_reading_gets_its_input_refused_not_buffered_forever(tmp_path):
    async def scenario():
        screen = Screen()
        # Given a process that never reads its terminal
        terminal = TerminalProcess.spawn(
            ["sleep", "1000"], on_output=screen.output, on_exit=screen.exit, cwd=str(tmp_path)
        )
        try:
            # When more than the terminal and the bridge's buffer hold is typed, Then it is refused
            with pytest.raises(TerminalFull, match="not reading its input"):
                for _ in range(MAX_PENDING // 4096 + 64):
                    terminal.write(b"x" * 4095 + b"\r")
            assert len(terminal.pending) <= MAX_PENDING
        finally:
            await terminal.aclose()
        assert session_processes(terminal.pid) == []

    run(scenario())


@pytest.mark.parametrize(("cols", "rows"), [(0, 24), (80, 0), (1001, 24), (80, 1001), (-1, 5)])
def test_a_resize_outside_the_limits_is_refused(tmp_path, cols, rows):
    async def scenario():
        screen = Screen()
        terminal = bash(screen, tmp_path)
        try:
            with pytest.raises(ValueError, match="1 to 1000"):
                terminal.resize(cols, rows)
        finally:
            await terminal.aclose()

    run(scenario())


def test_a_command_that_cannot_start_says_so_on_the_terminal_and_ends(tmp_path):
    async def scenario():
        screen = Screen()
        terminal = TerminalProcess.spawn(
            [str(tmp_path / "missing")], on_output=screen.output, on_exit=screen.exit
        )
        await screen.wait_for("failed to execute")
        await asyncio.wait_for(screen.ended.wait(), WAIT)
        await terminal.aclose()
        assert terminal.process.returncode != 0

    run(scenario())


def test_a_terminal_that_cannot_be_set_up_raises_and_leaks_no_descriptor(tmp_path):
    async def scenario():
        before = len(os.listdir("/proc/self/fd"))
        with pytest.raises(OSError):
            TerminalProcess.spawn(["bash"], on_output=print, on_exit=print, cwd=str(tmp_path / "missing"))
        assert len(os.listdir("/proc/self/fd")) == before

    run(scenario())


# --- Recordings ------------------------------------------------------------------------------------

HEADER = {"version": 2, "width": 80, "height": 24, "timestamp": 1, "title": "run #1"}


def cast(*events, header=HEADER) -> str:
    return "\n".join(json.dumps(item) for item in (header, *events)) + "\n"


def parse(text: str) -> tuple[dict, list]:
    lines = text.splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def test_a_secret_split_across_two_output_chunks_is_redacted():
    # Given a recording where the terminal's reads cut a key in two
    text = cast(
        [0.1, "o", "$ cat .env\r\n"],
        [0.2, "o", "KEY=" + SECRET[:20]],
        [0.2001, "o", SECRET[20:] + "\r\nnext line\r\n"],
        [3.5, "o", "$ "],
    )

    # When it is redacted for serving
    header, events = parse(redact_cast(text, redact))

    # Then the key is nowhere, not even in pieces, and the timing and the rest are kept
    served = "".join(e[2] for e in events)
    assert SECRET[:20] not in served and SECRET[20:] not in served
    assert "[REDACTED" in served and "next line" in served and served.startswith("$ cat .env")
    assert header == HEADER
    assert [e[0] for e in events] == sorted(e[0] for e in events)
    assert events[0][0] == 0.1 and events[-1] == [3.5, "o", "$ "]


def test_typed_output_within_a_second_is_joined_and_pauses_are_kept():
    text = cast(
        [1.0, "o", "e"], [1.2, "o", "c"], [1.4, "o", "ho"], [4.0, "o", " hi\r\n"], [4.1, "r", "100x30"]
    )
    _, events = parse(redact_cast(text, redact))
    assert events == [[1.0, "o", "echo"], [4.0, "o", " hi\r\n"], [4.1, "r", "100x30"]]


def test_input_events_and_the_header_are_redacted_too():
    header = {**HEADER, "title": f"token {SECRET}", "env": {"SHELL": "/bin/bash"}}
    served_header, events = parse(
        redact_cast(cast([0.5, "i", f"export K={SECRET}\r"], header=header), redact)
    )
    assert SECRET not in json.dumps(served_header) and SECRET not in events[0][2]
    assert served_header["env"] == {"SHELL": "/bin/bash"}


def test_lines_that_are_not_events_are_dropped():
    text = (
        cast([0.1, "o", "kept\r\n"])
        + '{"not": "an event"}\n[1, "o"]\n[true, "o", "x"]\n[0.3, "o", 5]\nnot json\n'
    )
    _, events = parse(redact_cast(text, redact))
    assert events == [[0.1, "o", "kept\r\n"]]


@pytest.mark.parametrize(
    "text",
    ["", "not json\n", '{"version": 1, "width": 80}\n', '[0.1, "o", "x"]\n', '"a string"\n'],
    ids=["empty", "not-json", "version-1", "no-header", "string-header"],
)
def test_a_file_that_is_not_asciicast_v2_is_refused(text):
    with pytest.raises(BadRecording, match="not an asciicast v2 file"):
        redact_cast(text, redact)
