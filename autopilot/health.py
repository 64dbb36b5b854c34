"""Health checks: the database, a round trip through the task broker, and the channel layer."""

from __future__ import annotations

import asyncio
import time
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection


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
    for name, check in (("database", check_database), ("broker", check_broker)):
        try:
            results[name] = await sync_to_async(check, thread_sensitive=True)()
        except Exception as exc:  # noqa: BLE001 - a health check reports, it doesn't crash
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    try:
        results["channel_layer"] = await check_channel_layer()
    except Exception as exc:  # noqa: BLE001
        results["channel_layer"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    results["cluster"] = await sync_to_async(check_cluster, thread_sensitive=True)()
    failed = [name for name in ("database", "broker", "channel_layer") if not results[name]["ok"]]
    if results["channel_layer"].get("backend") is None and (layer := get_channel_layer()) is not None:
        results["channel_layer"]["backend"] = type(layer).__name__
    return {"status": "error" if failed else "ok", "failed": failed, "checks": results}
