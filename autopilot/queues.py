"""The two django-q2 queues and what is waiting in them.

Agent runs and control work never share workers: a run can hold its worker for hours (or while it
waits for a human's approval), and the tick, ingestion and the sweeps must go on meanwhile.

- CONTROL (the default cluster, `Q_CLUSTER["name"]`): ticks, ingestion, sweeps, schedules.
- RUNS (`Q_CLUSTER_NAME=autopilot-runs`, see ALT_CLUSTERS in settings): `runs.tasks.execute_run` only.

`pending(queue)` reads the broker's stored messages (ORM or Redis) without consuming them: the reaper
uses it to tell a run whose message is lost or stranded from one whose message is on its way, and
/healthz to see how long control work has waited for a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

CONTROL = settings.Q_CLUSTER["name"]
RUNS = settings.AUTOPILOT_RUNS_QUEUE


@dataclass(frozen=True)
class Message:
    ack_id: object  # the ORM row's pk (None on Redis)
    name: str  # the task name, e.g. "run-12"
    func: str
    enqueued_at: datetime | None
    fetched_at: datetime | None  # ORM: when a cluster took it (None while it waits in the queue)


def pending(queue: str, *, limit: int = 1000) -> list[Message]:
    """The messages stored in a queue, oldest first (up to `limit`); unreadable ones are skipped."""
    from django_q.brokers import get_broker
    from django_q.models import OrmQ
    from django_q.signing import BadSignature, SignedPackage

    broker = get_broker(queue)
    now = timezone.now()
    raw: list[tuple[object, object, datetime | None]] = []
    if type(broker).__name__ == "ORM":
        retry = timedelta(seconds=settings.Q_CLUSTER["retry"])
        rows = OrmQ.objects.using(settings.Q_CLUSTER.get("orm", "default")).filter(key=queue).order_by("pk")
        for pk, payload, lock in rows.values_list("pk", "payload", "lock")[:limit]:
            # dequeue() sets lock = fetch time + retry; a message never fetched has lock <= now
            raw.append((pk, payload, lock - retry if lock and lock > now else None))
    elif type(broker).__name__ == "Redis":
        raw = [(None, payload, None) for payload in broker.connection.lrange(broker.list_key, 0, limit - 1)]
    else:  # other brokers cannot be read without consuming
        return []
    messages = []
    for ack_id, payload, fetched_at in raw:
        try:
            task = SignedPackage.loads(payload)
        except (BadSignature, TypeError, ValueError, EOFError):
            continue
        messages.append(
            Message(
                ack_id=ack_id,
                name=str(task.get("name") or ""),
                func=str(task.get("func") or ""),
                enqueued_at=task.get("started"),
                fetched_at=fetched_at,
            )
        )
    return messages


def drop(queue: str, ack_ids: list) -> int:
    """Delete stored messages (ORM broker) by id; a cluster already holding one acknowledges a no-op."""
    from django_q.models import OrmQ

    ids = [i for i in ack_ids if i is not None]
    if not ids:
        return 0
    return (
        OrmQ.objects.using(settings.Q_CLUSTER.get("orm", "default")).filter(key=queue, pk__in=ids).delete()[0]
    )
