"""The append-only event log, and its live push to websocket clients after commit.

Groups: `project.<id>` gets every event of a project; `<subject_type>.<id>` (e.g. `executionrun.7`)
gets the events of one object. Consumers replay from the table on (re)connect, so a push lost while
a client was away is never lost for good.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import queue
import threading
from typing import Any

from channels.layers import get_channel_layer
from django.db import models, transaction

from autopilot.models import Event
from autopilot.redaction import redact_data

logger = logging.getLogger(__name__)

PUSH_TYPE = "autopilot.event"


def project_group(project_id: int) -> str:
    return f"project.{project_id}"


def subject_group(subject_type: str, subject_id: int) -> str:
    return f"{subject_type}.{subject_id}"


def _project_id_of(subject: models.Model | None) -> int | None:
    if subject is None:
        return None
    if subject._meta.model_name == "project":
        return subject.pk
    project_id = getattr(subject, "project_id", None)
    if project_id is None and getattr(subject, "run_id", None) is not None:
        project_id = subject.run.project_id  # steps and messages belong to their run's project
    return project_id


def serialize_event(event: Event) -> dict[str, Any]:
    return {
        "id": event.pk,
        "kind": event.kind,
        "project": event.project_id,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "actor": event.actor_id,
        "data": event.data,
        "created_at": event.created_at.isoformat() if event.created_at else None,
    }


def record_event(
    *,
    kind: str,
    subject: models.Model | None = None,
    project=None,
    actor=None,
    data: dict[str, Any] | None = None,
    push: bool = True,
) -> Event:
    """Append an event (inside the caller's transaction) and push it to live clients on commit.

    `data` is redacted (known secret shapes) as a last line of defence: it is small (ids, titles,
    notes cut to 500 characters); callers redact long text, with their project's .env values too,
    before opening their transaction."""
    project_id = getattr(project, "pk", project) if project is not None else _project_id_of(subject)
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    event = Event.objects.create(
        project_id=project_id,
        kind=kind,
        subject_type=subject._meta.model_name if subject is not None else "",
        subject_id=subject.pk if subject is not None else None,
        actor=actor,
        data=redact_data(data or {}),
    )
    if push:
        payload = serialize_event(event)
        transaction.on_commit(lambda: push_event(payload))
    return event


def record_events(items: list[dict[str, Any]], *, actor=None, push: bool = True) -> list[Event]:
    """Append many events with ONE INSERT (each item: kind, subject, optional project and data) and
    push them on commit, in order — the bulk form of `record_event` (e.g. a tick starting 200 runs)."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    events = []
    for item in items:
        subject, project = item.get("subject"), item.get("project")
        events.append(
            Event(
                project_id=getattr(project, "pk", project)
                if project is not None
                else _project_id_of(subject),
                kind=item["kind"],
                subject_type=subject._meta.model_name if subject is not None else "",
                subject_id=subject.pk if subject is not None else None,
                actor=actor,
                data=redact_data(item.get("data") or {}),
            )
        )
    if not events:
        return []
    Event.objects.bulk_create(events)
    if push:
        payloads = [serialize_event(event) for event in events]
        transaction.on_commit(lambda: [push_event(payload) for payload in payloads])
    return events


def _groups_for(payload: dict[str, Any]) -> list[str]:
    groups = []
    if payload.get("project"):
        groups.append(project_group(payload["project"]))
    if payload.get("subject_type") and payload.get("subject_id"):
        groups.append(subject_group(payload["subject_type"], payload["subject_id"]))
    return list(dict.fromkeys(groups))  # a project's own events would name its group twice


async def _send(layer, payload: dict[str, Any]) -> None:
    for group in _groups_for(payload):
        try:
            await layer.group_send(group, {"type": PUSH_TYPE, "event": payload})
        except Exception:  # noqa: BLE001 - a push failure must never break anything: the table is the truth
            logger.exception("could not push event %s to %s", payload.get("id"), group)


SEND_CONCURRENCY = 8  # one gather of a whole batch exhausted Redis's connection pool and lost pushes


async def _send_batch(batch: list[dict[str, Any]]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for start in range(0, len(batch), SEND_CONCURRENCY):
        await asyncio.gather(*(_send(layer, payload) for payload in batch[start : start + SEND_CONCURRENCY]))


class _Pusher:
    """Sends pushes from one daemon thread per process, on an event loop of its own, in batches.

    The writer (a request, a tick starting 200 runs, a worker recording steps) only appends to a
    queue on commit; it never waits for the channel layer. Started lazily and again after a fork
    (django-q2 workers are forked). Pending pushes are flushed at interpreter exit.
    """

    BATCH = 200

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pid: int | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0

    def submit(self, payload: dict[str, Any]) -> None:
        with self._lock:
            if self._pid != os.getpid():
                self._start()
            self._pending += 1
        self._queue.put(payload)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every submitted push was sent (or failed). True when nothing is left."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def _start(self) -> None:
        # Caller holds the lock. A forked child inherits the parent's state but not its thread.
        self._pid = os.getpid()
        self._queue = queue.SimpleQueue()
        self._pending = 0
        threading.Thread(target=self._run, args=(self._queue,), name="event-pusher", daemon=True).start()

    def _run(self, work: queue.SimpleQueue) -> None:
        # Block on the queue in this thread itself (never in an executor thread: interpreter exit joins
        # executor threads, and one parked on an empty queue would hang the exit).
        loop = asyncio.new_event_loop()
        try:
            while True:
                batch = [work.get()]
                while len(batch) < self.BATCH:
                    try:
                        batch.append(work.get_nowait())
                    except queue.Empty:
                        break
                try:
                    loop.run_until_complete(_send_batch(batch))
                except Exception:  # noqa: BLE001 - keep the pusher alive whatever one batch did
                    logger.exception("could not push %d events", len(batch))
                with self._idle:
                    self._pending = max(0, self._pending - len(batch))
                    if self._pending == 0:
                        self._idle.notify_all()
        finally:
            loop.close()


_pusher = _Pusher()
try:
    # Flush at exit BEFORE concurrent.futures stops accepting work (it does so from a threading
    # exit hook, which runs before atexit handlers; the layer's database calls need an executor).
    threading._register_atexit(_pusher.flush)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover - other interpreters
    atexit.register(_pusher.flush)


def push_event(payload: dict[str, Any]) -> None:
    """Queue one serialized event for its groups (`project.<id>`, `<type>.<id>`). Never raises."""
    _pusher.submit(payload)


def flush_pushes(timeout: float = 5.0) -> bool:
    """Block until queued pushes were handed to the channel layer (CLI exit, tests, benchmarks)."""
    return _pusher.flush(timeout)
