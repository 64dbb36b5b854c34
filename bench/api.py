"""Benchmark: the API and pages under 50 concurrent clients, against a bare Django view as baseline.

    .venv/bin/python bench/api.py [--duration 20] [--clients 50] [--runs 10000] [--projects 5]

A fresh SQLite data directory gets 10,000 runs (3 steps each) bulk-created over a few projects, with
tasks and one event per run; then `autopilot serve --no-cluster` is started as a subprocess on a
loopback port (the web process only: no worker competes for the CPU) and, for each scenario, N
threads (one keep-alive connection each, closed loop: next request as soon as the answer is read)
request one URL for a fixed time. Printed per scenario: requests/s, p50/p99 latency, errors, the
ratios to the baseline, the service time with a single client (p50, c=1) and the SQL queries one
request makes (counted in this process with Django's test client on the same database).

The baseline is GET /accounts/login/: Django's own LoginView rendering its form, through the same
daphne, ASGI handler and full middleware stack, with no database query: the cheapest real view the
server has. Nothing is added to the product for the benchmark.

Then "no request slowed by another's large payload": readers list a project's runs while a few
writers post large messages (--payload-kb, below any sane cap) to a run; the readers' p99 is printed
with and without the writers.

The target (p99 < 100 ms for list endpoints with 50 clients) is reported, not asserted. With a
closed loop, Little's law ties the figures: mean latency ≈ clients / throughput, so the target needs
about 500 requests/s on a list endpoint; the c=1 service time shows what one request costs.
"""

from __future__ import annotations

import argparse
import http.client
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def populate(tmp: Path, projects: int, runs: int) -> dict:
    """Bulk-create the data set behind the services' back; return ids the scenarios use."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from autopilot.models import Event, Project, ProjectMembership, Role
    from blueprints.models import Task
    from runs.models import ExecutionRun, ExecutionStep

    call_command("migrate", verbosity=0, interactive=False)
    if "channels" in settings.DATABASES:
        call_command("migrate", database="channels", verbosity=0, interactive=False)
    call_command("createcachetable", verbosity=0)
    user = get_user_model().objects.create_user("bench", password=PASSWORD)
    token = Token.objects.create(user=user).key
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@x",
    }
    repos = []
    for i in range(projects):
        repo = tmp / f"repo-{i}"
        subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
        subprocess.run(
            ["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "init"], check=True, env=env
        )
        repos.append(repo)
    Project.objects.bulk_create(
        [Project(name=f"Bench {i}", slug=f"bench-{i}", repo_path=str(repos[i])) for i in range(projects)]
    )
    project_ids = list(Project.objects.order_by("pk").values_list("pk", flat=True))
    ProjectMembership.objects.bulk_create(
        [ProjectMembership(project_id=p, user=user, role=Role.OPERATOR) for p in project_ids]
    )
    tasks_per_project = 400
    Task.objects.bulk_create(
        [
            Task(project_id=p, title=f"Task {p}-{i}", body="Implement the thing. " * 20)
            for p in project_ids
            for i in range(tasks_per_project)
        ],
        batch_size=1000,
    )
    task_ids = list(Task.objects.order_by("pk").values_list("pk", "project_id"))
    statuses = ["succeeded", "failed", "cancelled", "succeeded", "timed_out"]
    now = timezone.now()
    ExecutionRun.objects.bulk_create(
        [
            ExecutionRun(
                project_id=task_ids[i % len(task_ids)][1],
                task_id=task_ids[i % len(task_ids)][0],
                agent_backend="scripted",
                model="scripted",
                prompt="Do the thing.\n" * 40,
                status=statuses[i % len(statuses)],
                result_summary="Changed 3 files; tests pass.",
                cost_usd="0.0123",
                input_tokens=12_000,
                output_tokens=3_000,
                turns=7,
                started_at=now,
                ended_at=now,
            )
            for i in range(runs)
        ],
        batch_size=1000,
    )
    run_ids = list(ExecutionRun.objects.order_by("pk").values_list("pk", "project_id"))
    ExecutionStep.objects.bulk_create(
        [
            ExecutionStep(
                run_id=run_id,
                seq=seq,
                kind="read_file",
                tool_name="Read",
                status="completed",
                input={"path": f"src/module_{seq}.py"},
                output="x = 1\n" * 60,
            )
            for run_id, _ in run_ids
            for seq in (1, 2, 3)
        ],
        batch_size=2000,
    )
    Event.objects.bulk_create(
        [
            Event(
                project_id=project_id,
                kind="executionrun.status",
                subject_type="executionrun",
                subject_id=run_id,
                data={"status": "succeeded", "from": "running"},
            )
            for run_id, project_id in run_ids
        ],
        batch_size=2000,
    )
    connections.close_all()
    return {"token": token, "project": project_ids[0], "run": run_ids[-1][0], "projects": project_ids}


def query_counts(paths: list[str], token: str) -> dict[str, int]:
    """SQL statements per request, with Django's test client in this process on the same database."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    api = Client(HTTP_AUTHORIZATION=f"Token {token}", SERVER_NAME="127.0.0.1")
    web = Client(SERVER_NAME="127.0.0.1")
    web.post("/accounts/login/", {"username": "bench", "password": PASSWORD})
    counts = {}
    for path in paths:
        client = (
            api
            if path.startswith("/api/")
            else web
            if path != "/accounts/login/"
            else Client(SERVER_NAME="127.0.0.1")
        )
        client.get(path)  # warm (content types, session)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        counts[path] = len(captured) if response.status_code == 200 else -response.status_code
    return counts


def login_cookie(base: str) -> str:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base + "/accounts/login/", timeout=30).read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": "bench", "password": PASSWORD, "csrfmiddlewaretoken": csrf})
    opener.open(
        urllib.request.Request(
            base + "/accounts/login/", data=form.encode(), headers={"Referer": base + "/accounts/login/"}
        ),
        timeout=30,
    )
    cookies = {c.name: c.value for c in jar}
    if "sessionid" not in cookies:
        raise SystemExit("bench/api.py: could not log in through the form")
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


class Load:
    """Closed-loop clients on keep-alive connections for `duration` seconds."""

    def __init__(self, port: int, duration: float):
        self.port = port
        self.duration = duration

    def run(self, groups: list[tuple[int, str, str, dict, bytes | None]]) -> list[dict]:
        """groups: (clients, method, path, headers, body). Returns one result dict per group."""
        stop = threading.Event()
        results = [{"lat": [], "errors": 0, "bytes": 0} for _ in groups]
        lock = threading.Lock()

        def worker(index: int, method: str, path: str, headers: dict, body: bytes | None):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            lat, errors, size = [], 0, 0
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    conn.request(method, path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    ok = response.status < 400
                    if response.getheader("Connection", "").lower() == "close":
                        conn.close()
                except (OSError, http.client.HTTPException):
                    ok, data = False, b""
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                elapsed = time.perf_counter() - t0
                if stop.is_set():
                    break
                lat.append(elapsed)
                size += len(data)
                errors += not ok
            conn.close()
            with lock:
                results[index]["lat"].extend(lat)
                results[index]["errors"] += errors
                results[index]["bytes"] += size

        threads = [
            threading.Thread(target=worker, args=(i, method, path, headers, body), daemon=True)
            for i, (clients, method, path, headers, body) in enumerate(groups)
            for _ in range(clients)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(self.duration)
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        wall = time.perf_counter() - started
        for result in results:
            lat = sorted(result["lat"])
            result["n"] = len(lat)
            result["rps"] = len(lat) / wall
            result["p50"] = statistics.median(lat) * 1000 if lat else float("nan")
            result["p99"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
            result["kb"] = result["bytes"] / max(1, len(lat)) / 1024
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=20, help="Seconds per scenario (default 20).")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--projects", type=int, default=5)
    parser.add_argument("--writers", type=int, default=3, help="Clients posting large messages.")
    parser.add_argument("--payload-kb", type=int, default=64, help="Size of each posted message body.")
    parser.add_argument("--only", default="", help="Comma-separated scenario names to run (default: all).")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="autopilot-bench-api-"))
    for name in ("DATABASE_URL", "REDIS_URL", "AUTOPILOT_SQLITE_PATH", "AUTOPILOT_CHANNELS_SQLITE_PATH"):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "AUTOPILOT_DATA_DIR": str(tmp / "data"),
            "AUTOPILOT_LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "autopilot.settings",
            "PYTHONUNBUFFERED": "1",
        }
    )
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(ROOT))
    server = None
    try:
        t0 = time.perf_counter()
        ids = populate(tmp, args.projects, args.runs)
        print(
            f"data: {args.runs:,} runs ({args.runs * 3:,} steps, {args.runs:,} events) over {args.projects} "
            f"projects, {args.projects * 400:,} tasks; "
            f"bulk-created in {time.perf_counter() - t0:.1f} s (SQLite)"
        )
        port = free_port()
        log = open(tmp / "serve.log", "wb")  # noqa: SIM115 - closed in finally
        server = subprocess.Popen(
            [sys.executable, "-m", "autopilot.cli", "serve", "--no-cluster", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    print((tmp / "serve.log").read_text()[-3000:], file=sys.stderr)
                    raise SystemExit("bench/api.py: autopilot serve did not start") from None
                time.sleep(0.2)
        api = {"Authorization": f"Token {ids['token']}"}
        web = {"Cookie": login_cookie(base)}
        project, run = ids["project"], ids["run"]
        scenarios = [
            ("baseline", "/accounts/login/", {}, False),
            ("api projects", "/api/projects/", api, True),
            ("api project runs", f"/api/projects/{project}/runs/", api, True),
            ("api run detail", f"/api/runs/{run}/", api, False),
            ("api tasks", "/api/tasks/", api, True),
            ("api events", "/api/events/", api, True),
            ("page dashboard", "/", web, False),
            ("page project runs", f"/projects/{project}/runs/", web, False),
            ("page run", f"/runs/{run}/", web, False),
        ]
        only = {name.strip() for name in args.only.split(",") if name.strip()}
        if only:
            scenarios = [s for s in scenarios if s[0] in only or s[0] == "baseline"]
        counts = query_counts([path for _, path, _, _ in scenarios], ids["token"])
        load = Load(port, args.duration)
        single = Load(port, min(args.duration, 3))
        print(
            f"{args.clients} clients, {args.duration:.0f} s per scenario, `autopilot serve --no-cluster` "
            f"(daphne) on 127.0.0.1, {os.cpu_count()} CPUs"
        )
        header = (
            f"{'scenario':<20} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'KB/resp':>8} "
            f"{'rps/base':>8} {'p50/base':>8} {'c=1 p50':>8} {'queries':>7}  target"
        )
        print(header)
        baseline = None
        for name, path, headers, is_list in scenarios:
            one = single.run([(1, "GET", path, headers, None)])[0]
            res = load.run([(args.clients, "GET", path, headers, None)])[0]
            if baseline is None:
                baseline = res
            target = ("p99 < 100 ms: " + ("OK" if res["p99"] < 100 else "MISSED")) if is_list else ""
            print(
                f"{name:<20} {res['rps']:>7.1f} {res['p50']:>8.1f} {res['p99']:>8.1f} {res['errors']:>6} "
                f"{res['kb']:>8.1f} {res['rps'] / baseline['rps']:>8.2f} "
                f"{res['p50'] / baseline['p50']:>8.2f} "
                f"{one['p50']:>8.1f} {counts[path]:>7}  {target}"
            )

        # Large payloads: readers list a project's runs, with and without writers posting big messages.
        readers = args.clients - args.writers
        read_path = f"/api/projects/{project}/runs/"
        body = json.dumps({"body": "Please look at this log.\n" + "x" * (args.payload_kb * 1024)}).encode()
        post_headers = {**api, "Content-Type": "application/json"}
        alone = load.run([(readers, "GET", read_path, api, None)])[0]
        mixed, writes = load.run(
            [
                (readers, "GET", read_path, api, None),
                (args.writers, "POST", f"/api/runs/{run}/message/", post_headers, body),
            ]
        )
        print(
            f"large payloads: {readers} readers of {read_path}, alone: {alone['rps']:.1f} req/s, "
            f"p50 {alone['p50']:.1f} ms, p99 {alone['p99']:.1f} ms"
        )
        print(
            f"  with {args.writers} writers posting {len(body) / 1024:.0f} KB messages "
            f"({writes['rps']:.1f} posts/s, "
            f"p99 {writes['p99']:.1f} ms, errors {writes['errors']}): readers {mixed['rps']:.1f} req/s, "
            f"p50 {mixed['p50']:.1f} ms, p99 {mixed['p99']:.1f} ms = "
            f"{mixed['p99'] / alone['p99']:.2f}x alone "
            f"(errors {mixed['errors']})"
        )
        return 0
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
