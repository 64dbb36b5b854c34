"""A process on a pseudo-terminal, driven from an asyncio event loop (the browser terminal's bridge).

`TerminalProcess.spawn(argv, on_output=..., on_exit=...)` starts `argv` as the leader of a new
session whose controlling terminal is a fresh PTY (like a terminal emulator does; through setsid(1)),
then:
- output: the PTY's master is watched with the loop's `add_reader`; each read (at most READ_CHUNK
  bytes) goes to `on_output(bytes)`; end of file (the session's last writer gone) calls `on_exit()`
  once. Nothing here ever blocks the loop;
- input: `write(bytes)` writes without blocking; what the PTY cannot take yet waits in a buffer
  flushed by `add_writer`. More than MAX_PENDING bytes waiting (a process that stopped reading) is
  refused with `TerminalFull`;
- `resize(cols, rows)`: TIOCSWINSZ on the PTY (the kernel sends SIGWINCH to the foreground job);
- `aclose()`: closes the PTY and ends every process of the session — the process group first
  (SIGHUP, like a closed terminal, then SIGKILL after CLOSE_GRACE_SECONDS) and any process still in
  the session in its own group (a shell's background jobs) — and reaps the leader. Nothing is left
  behind. Processes that left the session on purpose (a tmux server daemonizes itself; that is what
  keeps an interactive run alive between attaches) are not ours and are not touched.

Linux only (it reads the session id of processes from /proc).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import termios
from collections.abc import Callable
from pathlib import Path

READ_CHUNK = 65536
MAX_PENDING = 1024 * 1024  # input bytes waiting for the PTY before writes are refused
CLOSE_GRACE_SECONDS = 2.0
MIN_SIZE, MAX_SIZE = 1, 1000  # columns / rows a resize accepts


class TerminalFull(Exception):
    """The process stopped reading its input and too much is waiting."""


# util-linux's setsid(1) makes the child a session leader with the PTY (its stdin) as controlling
# terminal, then execs the command in place (same pid). No preexec_fn: running Python between fork
# and exec is unsafe in a threaded server (daphne's thread pool).
SETSID = shutil.which("setsid") or "/usr/bin/setsid"


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def session_processes(sid: int) -> list[int]:
    """The pids of every live process whose session id is `sid` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces or parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


class TerminalProcess:
    def __init__(self, process: subprocess.Popen, master: int, loop: asyncio.AbstractEventLoop):
        self.process = process
        self.pid = process.pid  # also its process group and session id
        self.master = master
        self.loop = loop
        self.pending = bytearray()
        self.closed = False
        self.paused = False
        self._on_output: Callable[[bytes], None] | None = None
        self._on_exit: Callable[[], None] | None = None
        self._writer_registered = False

    @classmethod
    def spawn(
        cls,
        argv: list[str],
        *,
        on_output: Callable[[bytes], None],
        on_exit: Callable[[], None],
        cols: int = 80,
        rows: int = 24,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> TerminalProcess:
        """Start `argv` on a new PTY and watch it on the running loop. Raises OSError when it cannot start."""
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        try:
            _set_size(master, cols, rows)
            environment = dict(os.environ if env is None else env)
            environment.setdefault("TERM", "xterm-256color")
            process = subprocess.Popen(  # noqa: S603 - argv comes from the caller (runs.interactive)
                [SETSID, "--ctty", *argv],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=environment,
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        terminal = cls(process, master, loop)
        terminal._on_output, terminal._on_exit = on_output, on_exit
        loop.add_reader(master, terminal._readable)
        return terminal

    # --- output -------------------------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            data = os.read(self.master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: every process holding the slave is gone
            if exc.errno != errno.EIO:
                raise
            data = b""
        if data:
            self._on_output(data)
            return
        self._stop_watching()
        if self._on_exit is not None:
            on_exit, self._on_exit = self._on_exit, None
            on_exit()

    def pause_reading(self) -> None:
        """Stop reading output until resume_reading (the consumer's queue is full); the process blocks."""
        if not self.paused and self.master >= 0:
            self.loop.remove_reader(self.master)
            self.paused = True

    def resume_reading(self) -> None:
        if self.paused and self.master >= 0:
            self.loop.add_reader(self.master, self._readable)
        self.paused = False

    def _stop_watching(self) -> None:
        if self.master < 0:
            return
        self.loop.remove_reader(self.master)
        if self._writer_registered:
            self.loop.remove_writer(self.master)
            self._writer_registered = False

    # --- input --------------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed or self.master < 0:
            return
        if len(self.pending) + len(data) > MAX_PENDING:
            raise TerminalFull(f"the terminal is not reading its input ({len(self.pending)} bytes waiting)")
        self.pending += data
        self._flush()

    def _flush(self) -> None:
        while self.pending:
            try:
                written = os.write(self.master, self.pending)
            except BlockingIOError:
                break
            except OSError:  # the process is gone: its output side reports the end
                self.pending.clear()
                break
            del self.pending[:written]
        if self.pending and not self._writer_registered:
            self.loop.add_writer(self.master, self._flush)
            self._writer_registered = True
        elif not self.pending and self._writer_registered:
            self.loop.remove_writer(self.master)
            self._writer_registered = False

    def resize(self, cols: int, rows: int) -> None:
        if not (MIN_SIZE <= cols <= MAX_SIZE and MIN_SIZE <= rows <= MAX_SIZE):
            raise ValueError(f"a terminal size is {MIN_SIZE} to {MAX_SIZE} columns and rows")
        if self.master >= 0:
            _set_size(self.master, cols, rows)

    # --- the end ------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the PTY and end the session's processes; returns once the leader is reaped."""
        if self.closed:
            return
        self.closed = True
        self._on_exit = None
        self._stop_watching()
        with contextlib.suppress(OSError):
            os.close(self.master)
        self.master = -1
        self._signal_session(signal.SIGHUP)
        self._signal_session(signal.SIGCONT)  # stopped jobs must run to see the hangup
        deadline = self.loop.time() + CLOSE_GRACE_SECONDS
        while self.loop.time() < deadline and (self.process.poll() is None or session_processes(self.pid)):
            await asyncio.sleep(0.05)
        if self.process.poll() is None or session_processes(self.pid):
            self._signal_session(signal.SIGKILL)
        while self.process.poll() is None:
            await asyncio.sleep(0.02)

    def _signal_session(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)
        with contextlib.suppress(ProcessLookupError, PermissionError):  # not yet its own group
            if self.process.poll() is None:
                os.kill(self.pid, signum)
        for pid in session_processes(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)


# --- Recordings (asciicast v2) ----------------------------------------------------------------------

MERGE_GAP_SECONDS = 1.0  # output chunks closer than this are redacted (and replayed) together
MERGE_MAX_CHARS = 65536


class BadRecording(ValueError):
    pass


def redact_cast(text: str, redact: Callable[[str], str]) -> str:
    """An asciicast v2 recording with every event's text passed through `redact`.

    A secret can straddle two output chunks (the terminal's reads split anywhere), so output is
    redacted line by line: consecutive "o" chunks are joined until a newline, a pause of more than
    MERGE_GAP_SECONDS or MERGE_MAX_CHARS, and written as one event at the time of its first chunk.
    Lines that are not events are dropped; a first line that is not a v2 header is BadRecording."""
    lines = text.splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("version") != 2:
        raise BadRecording("the recording is not an asciicast v2 file (its first line is not a v2 header)")
    out = [json.dumps(redact_data_strings(header, redact), ensure_ascii=False)]
    pending: list[str] = []
    pending_at: float | None = None
    last_at = 0.0

    def flush(upto: str | None = None) -> None:
        nonlocal pending, pending_at
        if pending_at is None:
            return
        joined = "".join(pending)
        head, rest = (
            (joined, "")
            if upto is None
            else (joined[: joined.rfind("\n") + 1], joined[joined.rfind("\n") + 1 :])
        )
        if head:
            out.append(json.dumps([pending_at, "o", redact(head)], ensure_ascii=False))
        pending, pending_at = ([rest], last_at) if rest else ([], None)

    for line in lines[1:]:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if (
            not isinstance(event, list)
            or len(event) != 3
            or isinstance(event[0], bool)
            or not isinstance(event[0], (int, float))
            or not isinstance(event[1], str)
            or not isinstance(event[2], str)
        ):
            continue
        at, code, data = float(event[0]), event[1], event[2]
        if code != "o":
            flush()
            out.append(json.dumps([at, code, redact(data)], ensure_ascii=False))
            continue
        if pending_at is not None and at - last_at > MERGE_GAP_SECONDS:
            flush()
        last_at = at
        if pending_at is None:
            pending_at = at
        pending.append(data)
        if "\n" in data:
            flush(upto="\n")
        elif sum(map(len, pending)) > MERGE_MAX_CHARS:
            flush()
    flush()
    return "\n".join(out) + "\n"


def redact_data_strings(value: dict, redact: Callable[[str], str]) -> dict:
    """The header with its string values (title, env) redacted."""
    return {
        k: redact(v) if isinstance(v, str) else redact_data_strings(v, redact) if isinstance(v, dict) else v
        for k, v in value.items()
    }
