"""Health checks: the database, a round trip through the task broker, the channel layer, and
starvation (work that waits for a worker longer than AUTOPILOT_STARVATION_SECONDS)."""

from __future__ import annotations

import asyncio
import time
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.apps import apps
from django.conf import settings
from django.db import connection
from django.utils import timezone

from autopilot import queues


def check_database() -> dict:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "vendor": connection.vendor, "ms": round((time.perf_counter() - started) * 1000, 2)}


def check_broker() -> dict:
    """Enqueue a message on a private queue of the configured broker, dequeue and acknowledge it."""
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    started = time.perf_counter()
    broker = get_broker(list_key=f"autopilot-healthz-{uuid.uuid4().hex[:12]}")
    token = uuid.uuid4().hex
    broker.enqueue(SignedPackage.dumps({"healthz": token}))
    got = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        messages = broker.dequeue()
        if messages:
            for task_id, payload in messages:
                got = SignedPackage.loads(payload)
                broker.acknowledge(task_id)
            break
        time.sleep(0.02)
    ok = bool(got) and got.get("healthz") == token
    return {
        "ok": ok,
        "broker": type(broker).__name__,
        "ms": round((time.perf_counter() - started) * 1000, 2),
        **({} if ok else {"error": "the message sent through the broker did not come back"}),
    }


def check_cluster() -> dict:
    """Informational: how many django-q2 clusters reported in (none while only the web runs)."""
    try:
        from django_q.status import Stat

        stats = Stat.get_all()
    except Exception as exc:  # noqa: BLE001
        return {"clusters": None, "error": str(exc)}
    return {
        "clusters": len(stats),
        "statuses": sorted({s.status for s in stats}),
        "workers": sum(len(s.workers) for s in stats),
        "pids": sorted(s.pid for s in stats),
    }


def check_starvation(now=None) -> dict:
    """Work that no worker takes. Control work (a tick, an ingestion, a sweep) waiting in its queue
    longer than AUTOPILOT_STARVATION_SECONDS; queued runs waiting that long while the global cap has
    room (no run worker free: e.g. every one held by a run waiting for approval) or while every slot
    of the cap is held by runs waiting for approval."""
    now = now or timezone.now()
    limit = settings.AUTOPILOT_STARVATION_SECONDS
    problems: list[str] = []
    waiting = [
        m for m in queues.pending(queues.CONTROL) if m.fetched_at is None and m.enqueued_at is not None
    ]
    oldest = min(waiting, key=lambda m: m.enqueued_at, default=None)
    control_wait = round((now - oldest.enqueued_at).total_seconds(), 1) if oldest else 0.0
    if control_wait > limit:
        problems.append(
            f"control work starved: {len(waiting)} task(s) waiting for a control worker, the oldest "
            f"({oldest.func}) for {control_wait:.0f} s"
        )
    run_model = apps.get_model("runs", "ExecutionRun")
    queued = run_model.objects.filter(status=run_model.Status.QUEUED, lease_owner="")
    stale = queued.filter(queued_at__lt=now - timezone.timedelta(seconds=limit)).count()
    active = run_model.objects.filter(status__in=list(run_model.ACTIVE)).count()
    approval = run_model.objects.filter(status=run_model.Status.WAITING_APPROVAL).count()
    cap = settings.AUTOPILOT_MAX_CONCURRENT_RUNS
    if stale and (active < cap or approval >= active):
        why = (
            f"{cap - active} of {cap} run slots free but no run worker took them"
            if active < cap
            else f"every one of the {cap} run slots is held"
        )
        problems.append(
            f"runs starved: {stale} queued run(s) waiting over {limit} s; {why} "
            f"({approval} run(s) waiting for approval hold a run worker)"
        )
    return {
        "ok": not problems,
        "limit_s": limit,
        "control_oldest_wait_s": control_wait,
        "queued_runs_waiting": stale,
        "active_runs": active,
        "waiting_for_approval": approval,
        "max_concurrent_runs": cap,
        **({"error": "; ".join(problems)} if problems else {}),
    }


async def check_channel_layer() -> dict:
    started = time.perf_counter()
    layer = get_channel_layer()
    if layer is None:
        return {"ok": False, "error": "no channel layer is configured"}
    # A process-specific channel, like every websocket consumer's: on the SQLite layer this goes
    # through the per-process background poller, so a broken poller shows up here.
    token = uuid.uuid4().hex
    channel = await layer.new_channel(prefix="healthz")
    await layer.send(channel, {"type": "healthz", "token": token})
    try:
        message = await asyncio.wait_for(layer.receive(channel), timeout=5)
    except TimeoutError:
        return {"ok": False, "backend": type(layer).__name__, "error": "no message came back within 5 s"}
    ok = message.get("token") == token
    return {"ok": ok, "backend": type(layer).__name__, "ms": round((time.perf_counter() - started) * 1000, 2)}


async def run_checks() -> dict:
    results: dict = {}
    for name, check in (
        ("database", check_database),
        ("broker", check_broker),
        ("starvation", check_starvation),
    ):
        try:
            results[name] = await sync_to_async(check, thread_sensitive=True)()
        except Exception as exc:  # noqa: BLE001 - a health check reports, it doesn't crash
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    try:
        results["channel_layer"] = await check_channel_layer()
    except Exception as exc:  # noqa: BLE001
        results["channel_layer"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    results["cluster"] = await sync_to_async(check_cluster, thread_sensitive=True)()
    failed = [
        name for name in ("database", "broker", "channel_layer", "starvation") if not results[name]["ok"]
    ]
    if results["channel_layer"].get("backend") is None and (layer := get_channel_layer()) is not None:
        results["channel_layer"]["backend"] = type(layer).__name__
    return {"status": "error" if failed else "ok", "failed": failed, "checks": results}
