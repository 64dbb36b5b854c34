"""Benchmark: live events from a writer process to a dashboard websocket, through `autopilot serve`.

    .venv/bin/python bench/events.py [--events 10000] [--modes embedded,redis] [--redis-url URL]
                                     [--streams flood,paced] [--rate 10000]

For each channel layer (the embedded SQLite one, and Redis when --modes names it) a child process of
this script gets a fresh data directory (`autopilot setup`), then measures:
  - the baseline: the round trip of a bare channel-layer send/receive (p50/p95, same layer);
  - the dashboard: server time and queries of GET / for a superuser, empty and with 200 active runs
    over 20 projects (Django's test client in-process: the view's own time, no network);
  - the event stream: `autopilot serve` runs; a websocket client listens on the dashboard's stream
    (/ws/events/?project=ID, logged in through the real form) while a separate process records
    N events (one transaction each, pushed on commit), twice:
      - flood: as fast as it can. The writer outruns the consumer, so a queue builds up and the delay
        measures that backlog; the delivered rate is the stream's capacity.
      - paced: at a fixed rate (--rate per minute, evenly spaced; default 10,000/min, the target), so
        the delay is the latency at the target throughput.
    It prints, side by side, events per minute written and delivered, p50/p95 write-to-receipt delay,
    and the events lost after catch-up (the client reconnects with after=<last id seen>, as app.js
    does; must be 0), and whether each target is met.
Targets (reported, not asserted): ≥ 10,000 events/min; p95 ≤ 250 ms embedded, ≤ 50 ms on Redis;
dashboard ≤ 300 ms with the same number of queries as the empty one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AUTOPILOT = [sys.executable, "-m", "autopilot.cli"]
QUIET_SECONDS = 3.0


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--modes", default="embedded,redis")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--streams", default="flood,paced", help="which stream runs: flood, paced or both")
    parser.add_argument("--rate", type=int, default=10_000, help="paced mode: events written per minute")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        streams = [s for s in args.streams.split(",") if s]
        print("RESULT " + json.dumps(child(args.child, args.events, streams, args.rate)), flush=True)
        return 0
    results = {}
    for mode in args.modes.split(","):
        env = {
            key: value
            for key, value in os.environ.items()
            if key
            not in ("DATABASE_URL", "REDIS_URL", "AUTOPILOT_SQLITE_PATH", "AUTOPILOT_CHANNELS_SQLITE_PATH")
        }
        env.update(
            AUTOPILOT_DATA_DIR=tempfile.mkdtemp(prefix=f"autopilot-bench-events-{mode}-"),
            AUTOPILOT_LOG_LEVEL="WARNING",
            DJANGO_SETTINGS_MODULE="autopilot.settings",
            PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        )
        if mode == "redis":
            env.update(REDIS_URL=args.redis_url, AUTOPILOT_CHANNEL_PREFIX=f"ap-bench-{os.getpid()}")
        done = subprocess.run(
            [
                *(sys.executable, __file__, "--child", mode, "--events", str(args.events)),
                *("--streams", args.streams, "--rate", str(args.rate)),
            ],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            print(
                f"bench/events.py: the {mode} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}",
                file=sys.stderr,
            )
            return 1
        results[mode] = json.loads(line[len("RESULT ") :])
        errors = [ln for ln in done.stderr.splitlines() if "Error" in ln or "could not push" in ln]
        if errors:
            print(f"{mode}: {len(errors)} error line(s) in the child's output, e.g.: {errors[:3]}")
    report(results, args.events)
    return 0


def report(results: dict, events: int) -> None:
    targets = {"embedded": 250, "redis": 50}
    for mode, r in results.items():
        base, dash, streams = r["baseline"], r["dashboard"], r["streams"]
        target = targets.get(mode, 250)
        print(f"== {mode} channel layer ==")
        print(
            f"  baseline: bare channel-layer send/receive round trip  p50 {base['p50_ms']:.1f} ms"
            f"  p95 {base['p95_ms']:.1f} ms  ({base['n']} round trips)"
        )
        names = list(streams)
        print(f"  stream: {events} events each{'':22}" + "".join(f"{name:>22}" for name in names))

        def row(label: str, fmt, streams=streams, names=names) -> None:
            print(f"    {label:<46}" + "".join(f"{fmt(streams[name]):>22}" for name in names))

        row("writer", lambda s: f"{s['write_s']:.1f} s, {s['written_per_min']:,.0f}/min")
        row(
            "record_event (insert + commit) p50 / p95",
            lambda s: f"{s['commit_p50_ms']:.1f} / {s['commit_p95_ms']:.1f} ms",
        )
        row("delivered live", lambda s: f"{s['delivered_live']}")
        row("delivered events/min (target >= 10,000)", lambda s: f"{s['delivered_per_min']:,.0f}")
        row("write-to-receipt p50", lambda s: f"{s['p50_ms']:.1f} ms")
        row(f"write-to-receipt p95 (target <= {target} ms)", lambda s: f"{s['p95_ms']:.1f} ms")
        row("p95 / baseline p95", lambda s, base=base: f"{s['p95_ms'] / base['p95_ms']:.1f}x")
        row("write-to-receipt max", lambda s: f"{s['max_ms']:.1f} ms")
        row("caught up after reconnect", lambda s: f"{s['caught_up']}")
        row("lost after catch-up (must be 0)", lambda s: f"{s['lost']}")
        print("  targets:")
        if "flood" in streams:
            f = streams["flood"]
            met = f["delivered_per_min"] >= 10_000
            print(
                f"    throughput >= 10,000/min (flood capacity {f['delivered_per_min']:,.0f}/min):"
                f" {'MET' if met else 'NOT MET'}"
            )
        if "paced" in streams:
            p = streams["paced"]
            # Within 1%: N evenly spaced events span (N-1)/rate, and the writer's own start-up adds a little.
            kept = p["written_per_min"] >= 9_900 and p["delivered_per_min"] >= 0.99 * p["written_per_min"]
            print(
                f"    paced writer reached {p['written_per_min']:,.0f}/min (>= 10,000 within 1%) and delivery"
                " kept up"
                f" ({p['delivered_per_min']:,.0f}/min): {'MET' if kept else 'NOT MET'}"
            )
        for name in names:
            s = streams[name]
            met = s["p95_ms"] <= target and s["lost"] == 0
            note = " (backlog, not latency)" if name == "flood" else ""
            print(
                f"    p95 <= {target} ms, 0 lost, {name}{note}: p95 {s['p95_ms']:.1f} ms, lost {s['lost']}:"
                f" {'MET' if met else 'NOT MET'}"
            )
        print(
            f"  dashboard: empty {dash['empty_ms']:.1f} ms / {dash['empty_queries']} queries;"
            f" {dash['runs']} active runs over {dash['projects']} projects {dash['full_ms']:.1f} ms /"
            f" {dash['full_queries']} queries ({dash['full_ms'] / dash['empty_ms']:.1f}x empty;"
            " target <= 300 ms,"
            f" same queries)"
        )


# --- The child: one channel layer ------------------------------------------------------------------


def child(mode: str, events: int, streams: list[str], rate: int) -> dict:
    done = subprocess.run([*AUTOPILOT, "setup"], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"autopilot setup failed: {done.stdout}{done.stderr}")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from autopilot.models import Project
    from tests.gitrepo import make_repo

    repo = make_repo(Path(tempfile.mkdtemp(prefix="autopilot-bench-repo-")) / "repo")
    project = Project.objects.create(name="Bench events", slug="bench-events", repo_path=str(repo))
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-pw-123456")
    result = {"baseline": asyncio.run(baseline())}
    result["dashboard"] = dashboard(user, repo)
    result["streams"] = {name: stream(project, events, rate if name == "paced" else 0) for name in streams}
    return result


async def baseline(n: int = 300) -> dict:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = await layer.new_channel()
    times = []
    for i in range(n):
        started = time.perf_counter()
        await layer.send(channel, {"type": "bench.ping", "i": i})
        await layer.receive(channel)
        times.append((time.perf_counter() - started) * 1000)
    return {"n": n, "p50_ms": statistics.median(times), "p95_ms": pct(times, 95)}


def dashboard(user, repo: Path) -> dict:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from autopilot.models import Project
    from runs.models import ExecutionRun

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)

    def measure() -> tuple[float, int]:
        client.get("/")  # warm
        best, queries = float("inf"), 0
        for _ in range(5):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get("/")
                best = min(best, (time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.status_code
            queries = len(captured)
        return best, queries

    empty_ms, empty_queries = measure()
    projects = Project.objects.bulk_create(
        [Project(name=f"Bench {i}", slug=f"bench-{i}", repo_path=str(repo)) for i in range(20)]
    )
    statuses = ["running", "queued", "waiting_approval", "preparing"]
    ExecutionRun.objects.bulk_create(
        [
            ExecutionRun(
                project=projects[i % 20],
                status=statuses[i % 4],
                agent_backend="scripted",
                model="scripted",
                prompt=f"Bench run {i}",
                last_step_seq=i % 30,
            )
            for i in range(200)
        ]
    )
    full_ms, full_queries = measure()
    return {
        "empty_ms": empty_ms,
        "empty_queries": empty_queries,
        "full_ms": full_ms,
        "full_queries": full_queries,
        "runs": 200,
        "projects": 20,
    }


WRITER = """
import sys, time, django
django.setup()
from autopilot.events import flush_pushes, record_event
from autopilot.models import Project
project = Project.objects.get(pk=int(sys.argv[1]))
n = int(sys.argv[2])
interval = 60 / int(sys.argv[3]) if int(sys.argv[3]) else 0  # 0: flood, as fast as possible
print("ready", flush=True)
sys.stdin.readline()
started = time.time()
spent = []  # each record_event's own time (insert + commit): the writer's share of the delay
for i in range(n):
    if interval:  # paced: event i is due at started + i * interval (no catch-up burst beyond that)
        wait = started + i * interval - time.time()
        if wait > 0:
            time.sleep(wait)
    t = time.time()
    record_event(kind="bench.event", project=project, data={"i": i, "t": t})
    spent.append((time.time() - t) * 1000)
flush_pushes(60)
spent.sort()
print("wrote", time.time() - started, spent[len(spent) // 2], spent[int(0.95 * (len(spent) - 1))], flush=True)
"""


def stream(project, events: int, rate: int) -> dict:
    from autopilot.models import Event
    from tests.liveserver import http_get, login, pick_free_port, wait_until

    port = pick_free_port()
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the server's output, kept for a post-mortem
        prefix="autopilot-bench-serve-", suffix=".log", delete=False
    )
    serve = subprocess.Popen(
        [
            *AUTOPILOT,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--control-workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_get(base + "/healthz", timeout=5)[0] == 200, timeout=120, what="autopilot serve"
        )
        cookie = login(base, "bench", "bench-pw-123456")
        after = Event.objects.order_by("-id").values_list("id", flat=True).first() or 0
        return asyncio.run(listen(f"ws://127.0.0.1:{port}", base, cookie, project.pk, events, after, rate))
    finally:
        try:
            os.killpg(serve.pid, signal.SIGTERM)
            serve.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()


async def listen(
    ws_base: str, origin: str, cookie: str, project_id: int, events: int, after: int, rate: int
) -> dict:
    from websockets.asyncio.client import connect

    headers = {"Cookie": cookie}
    url = f"{ws_base}/ws/events/?project={project_id}&after={after}"
    delays: list[float] = []
    seen: set[int] = set()
    receipts: list[float] = []
    async with connect(url, additional_headers=headers, origin=origin, max_size=2**22) as ws:
        writer = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            str(project_id),
            str(events),
            str(rate),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(ROOT),
        )
        assert (await writer.stdout.readline()).startswith(b"ready")
        await asyncio.sleep(0.5)  # the socket has joined its group
        writer.stdin.write(b"go\n")
        await writer.stdin.drain()
        write_started = time.time()
        finished = asyncio.ensure_future(writer.wait())
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=QUIET_SECONDS)
            except TimeoutError:
                if finished.done():
                    break
                continue
            now = time.time()
            message = json.loads(raw)
            if message.get("type") != "event" or message["event"]["kind"] != "bench.event":
                continue
            event = message["event"]
            if event["id"] in seen:
                continue
            seen.add(event["id"])
            delays.append((now - event["data"]["t"]) * 1000)
            receipts.append(now)
            if len(seen) >= events and finished.done():
                break
        output = (await writer.stdout.read()).decode()
        wrote = [float(x) for x in output.split("wrote", 1)[1].split()] if "wrote" in output else []
        write_s, commit_p50, commit_p95 = (wrote + [float("nan")] * 3)[:3]
    delivered_live = len(seen)
    # Catch-up as app.js does it: reconnect after the last id seen, until nothing new arrives.
    last = max(seen) if seen else after
    caught_up = 0
    for _ in range(100):
        if len(seen) >= events:
            break
        new = 0
        async with connect(
            f"{ws_base}/ws/events/?project={project_id}&after={last}",
            additional_headers=headers,
            origin=origin,
        ) as ws:
            while True:
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=2))
                except TimeoutError:
                    break
                if message.get("type") == "event" and message["event"]["id"] not in seen:
                    seen.add(message["event"]["id"])
                    last = max(last, message["event"]["id"])
                    new += 1
        caught_up += new
        if not new:
            break
    if rate:
        # Paced: the rate of delivery from the first receipt to the last (from the write's start it would
        # be below the offered rate by construction: the last event is written at (N-1)/rate).
        span = (receipts[-1] - receipts[0]) if len(receipts) > 1 else float("nan")
        delivered_count = len(receipts) - 1
    else:
        span = (receipts[-1] - write_started) if receipts else float("nan")
        delivered_count = len(receipts)
    return {
        "write_s": write_s,
        "written_per_min": events / write_s * 60 if write_s else float("nan"),
        "commit_p50_ms": commit_p50,
        "commit_p95_ms": commit_p95,
        "delivered_live": delivered_live,
        "delivered_per_min": delivered_count / span * 60 if span else 0,
        "p50_ms": statistics.median(delays) if delays else float("nan"),
        "p95_ms": pct(delays, 95),
        "max_ms": max(delays) if delays else float("nan"),
        "caught_up": caught_up,
        "lost": events - len(seen),
    }


if __name__ == "__main__":
    sys.exit(main())
