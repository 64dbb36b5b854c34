"""Real servers for tests: daphne (or `autopilot serve`) in a subprocess, plain HTTP helpers, a real login.

Used by tests/core (healthz, channels, serve) and tests/browser. Everything talks to 127.0.0.1 only.

    with LiveServer(env=subprocess_env) as server:       # daphne on a free port, waits for /healthz
        status, body = http_get(server.url + "/healthz")
        cookie = login(server.url, "alice", "pw")          # a real POST to /accounts/login/
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

START_TIMEOUT = 60


def pick_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, *, headers: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_json(url: str, **kwargs) -> tuple[int, dict]:
    status, body = http_get(url, **kwargs)
    return status, json.loads(body)


def wait_until(predicate, *, timeout: float = START_TIMEOUT, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; raise with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except Exception as exc:  # noqa: BLE001 - e.g. connection refused while the server starts
            last_error = exc
            result = None
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error!r})")


def login(base_url: str, username: str, password: str) -> str:
    """Log in through the real form; return a Cookie header value carrying the session."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login_url = base_url + "/accounts/login/"
    page = opener.open(login_url, timeout=30).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
    opener.open(
        urllib.request.Request(login_url, data=form.encode(), headers={"Referer": login_url}), timeout=30
    )
    cookies = {c.name: c.value for c in jar}
    assert "sessionid" in cookies, f"login as {username!r} failed"
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def process_groups_alive(pgids: set[int]) -> list[tuple[int, str]]:
    """(pid, cmdline) of every live (non-zombie) process whose process group is in `pgids`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        # Fields after the ")" that ends the command name: state ppid pgrp ...
        fields = stat.rsplit(")", 1)[1].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp in pgids and state != "Z":
            found.append((int(entry.name), cmdline))
    return found


def children_of(pid: int) -> list[int]:
    """Direct children of a process (from /proc)."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(entry.name))
    return kids


def descendants_of(pid: int) -> list[int]:
    out, frontier = [], [pid]
    while frontier:
        kids = children_of(frontier.pop())
        out.extend(kids)
        frontier.extend(kids)
    return out


def pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


class LiveServer:
    """daphne serving autopilot.asgi (HTTP, websockets, static files through whitenoise) on a free port.

    `env` must let the child open the test databases: pass the `subprocess_env` fixture (the test
    then needs `django_db(transaction=True)`, which that fixture implies). Extra environment
    variables can override settings for this server only (e.g. a broken REDIS_URL). `start()` waits
    until the server answers (by default until GET /healthz returns 200), `stop()` terminates its
    process group. Output goes to `log_path` (a temporary file unless given), shown on failure.
    """

    def __init__(
        self,
        *,
        env: dict,
        port: int | None = None,
        extra_env: dict | None = None,
        ready_path: str = "/healthz",
        ready_status: int | None = 200,
        log_path: Path | None = None,
        cmd: list[str] | None = None,
    ):
        self.port = port or pick_free_port()
        self.env = {**env, **(extra_env or {})}
        self.ready_path = ready_path
        self.ready_status = ready_status
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.cmd = cmd or [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            "autopilot.asgi:application",
        ]
        if log_path is None:
            import tempfile

            fd, name = tempfile.mkstemp(prefix="autopilot-live-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> LiveServer:
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the server
        self._log_file = log
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path(__file__).resolve().parent.parent,
        )

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            status, _ = http_get(self.url + self.ready_path, timeout=10)
            return self.ready_status is None or status == self.ready_status

        try:
            wait_until(ready, what=f"{self.url}{self.ready_path}")
        except BaseException:
            self.stop()
            raise AssertionError(f"server did not become ready; log:\n{self.log()[-4000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        if getattr(self, "_log_file", None):
            self._log_file.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
