"""The append-only event log, and its live push to websocket clients after commit.

Groups: `project.<id>` gets every event of a project; `<subject_type>.<id>` (e.g. `executionrun.7`)
gets the events of one object. Consumers replay from the table on (re)connect, so a push lost while
a client was away is never lost for good.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import models, transaction

from autopilot.models import Event

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
    """Append an event (inside the caller's transaction) and push it to live clients on commit."""
    project_id = getattr(project, "pk", project) if project is not None else _project_id_of(subject)
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    event = Event.objects.create(
        project_id=project_id,
        kind=kind,
        subject_type=subject._meta.model_name if subject is not None else "",
        subject_id=subject.pk if subject is not None else None,
        actor=actor,
        data=data or {},
    )
    if push:
        payload = serialize_event(event)
        transaction.on_commit(lambda: push_event(payload))
    return event


def push_event(payload: dict[str, Any]) -> None:
    """Send one serialized event to its groups. Never raises: the table is the source of truth."""
    layer = get_channel_layer()
    if layer is None:
        return
    groups = []
    if payload.get("project"):
        groups.append(project_group(payload["project"]))
    if payload.get("subject_type") and payload.get("subject_id"):
        groups.append(subject_group(payload["subject_type"], payload["subject_id"]))
    for group in groups:
        try:
            async_to_sync(layer.group_send)(group, {"type": PUSH_TYPE, "event": payload})
        except Exception:  # noqa: BLE001 - a push failure must never break the write that caused it
            logger.exception("could not push event %s to %s", payload.get("id"), group)
