"""Live events over websockets: `/ws/events/?project=ID[&subject=TYPE.ID][&after=EVENT_ID]`.

On connect the client gets every event after `after` from the table (so a reconnect misses nothing),
then live pushes from the channel layer. Messages are `{"type": "event", "event": {...}}`. When more
than REPLAY_LIMIT events were missed, the replay stops there and a `{"type": "resync"}` message tells
the client to reload its state instead (app.js reloads the page).

Scope (every group joined is checked against the caller's rights on that very group):
- the caller needs a role on `project` (superusers have one everywhere); otherwise close 4403;
- `subject` must name an object of that project: `project.<the same id>` (the same as no subject: every
  event of the project) or one of SUBJECT_MODELS (`executionrun.7`, `task.3`, ...) whose row exists
  AND belongs to `project`. Anything else, malformed
  or unknown or another project's, is refused with the same 4403 a non-member gets, so a socket never
  tells whether another project's object exists. Only a non-integer `project` / `after` is a 4400;
- every forwarded event must carry the socket's project (and its subject, for a subject socket):
  events with `project=None` (a deleted project, a new user, the queue cleared) are never sent over a
  websocket, to anybody; they stay in the event log (admin, API);
- the caller's right is checked again while connected: before forwarding an event when the last check
  is older than AUTOPILOT_WS_RECHECK_SECONDS, and at once on a membership change naming the caller.
  The user is re-read from the session (logged out, deactivated, password changed, membership removed
  all count); a failed check closes the socket with 4403 and the event is not sent.
"""

from __future__ import annotations

import re
import time
from collections import deque
from importlib import import_module
from urllib.parse import parse_qs

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from autopilot.events import project_group, serialize_event, subject_group
from autopilot.manager.models import Proposal
from autopilot.models import Event, Project
from autopilot.permissions import has_role
from blueprints.models import Blueprint, IngestionJob, PlanNode, Task
from runs.models import ExecutionRun, ExecutionStep

REPLAY_LIMIT = 500
SENT_MEMORY = 2000  # ids remembered to drop duplicates between the replay and live pushes
CLOSE_BAD_REQUEST = 4400
CLOSE_FORBIDDEN = 4403
MAX_ID = 2**63 - 1  # the largest primary key (BigAutoField); a larger number names nothing
SUBJECT = re.compile(r"([a-z]{1,40})\.([0-9]{1,19})", re.ASCII)
INTEGER = re.compile(r"-?[0-9]{1,19}", re.ASCII)

# Subject types a socket may follow: model name (as record_event writes it) -> lookup from that model
# to its project's id. `project.<id>` is handled apart (it must be the socket's own project).
SUBJECT_MODELS = {
    model._meta.model_name: (model, lookup)
    for model, lookup in (
        (Proposal, "project_id"),
        (Blueprint, "project_id"),
        (IngestionJob, "project_id"),
        (PlanNode, "project_id"),
        (Task, "project_id"),
        (ExecutionRun, "project_id"),
        (ExecutionStep, "run__project_id"),
    )
}
PROJECT_SUBJECT = Project._meta.model_name


def _integer(value: str, default: int | None = None) -> int | None:
    """A decimal integer in the id range, `default` for an empty value, None for anything else."""
    if value == "" and default is not None:
        return default
    if not INTEGER.fullmatch(value):
        return None
    number = int(value)
    return number if -MAX_ID <= number <= MAX_ID else None


class EventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        query = self.scope.get("query_string", b"").decode(errors="replace")
        params = parse_qs(query, keep_blank_values=True)
        self.groups_joined: list[str] = []
        self.sent_ids: set[int] = set()
        self.sent_order: deque[int] = deque()
        self.subject: tuple[str, int] | None = None
        project_id = _integer(params.get("project", [""])[0])
        after = _integer(params.get("after", [""])[0], default=0)
        if project_id is None or after is None:
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        user = self.scope.get("user")
        if project_id <= 0 or not await self._allowed(user, project_id):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.project_id = project_id
        subject = params.get("subject", [""])[0]
        if subject:
            self.subject = await self._subject_of_project(subject, project_id)
            if self.subject is None:
                await self.close(code=CLOSE_FORBIDDEN)
                return
            if self.subject[0] == PROJECT_SUBJECT:  # its group IS the project's: the whole project
                self.subject = None
        groups = [subject_group(*self.subject) if self.subject else project_group(project_id)]
        self.user_id = user.pk
        self.session_key = self.scope["session"].session_key
        self.checked_at = time.monotonic()
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        await self.accept()
        replayed = await self._replay(after)
        for payload in replayed[:REPLAY_LIMIT]:
            await self._forward(payload)
        if len(replayed) > REPLAY_LIMIT:
            await self.send_json({"type": "resync", "reason": f"more than {REPLAY_LIMIT} events were missed"})

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []

    async def autopilot_event(self, message):
        if not self.groups_joined:  # closed by a failed re-check; pushes may still be in flight
            return
        payload = message["event"]
        if not self._in_scope(payload):
            return
        if not await self._still_allowed(payload):
            await self.disconnect(CLOSE_FORBIDDEN)
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self._forward(payload)

    def _in_scope(self, payload) -> bool:
        """The event belongs to this socket's project (and subject): never forward anything else."""
        if payload.get("project") != self.project_id:
            return False
        if self.subject is not None:
            return (payload.get("subject_type"), payload.get("subject_id")) == self.subject
        return True

    async def _still_allowed(self, payload) -> bool:
        """Re-check the caller's role when the last check is stale or the event changes their membership."""
        data = payload.get("data") or {}
        about_me = payload.get("kind") == "project.membership" and data.get("user") == self.user_id
        if not about_me and time.monotonic() - self.checked_at < settings.AUTOPILOT_WS_RECHECK_SECONDS:
            return True
        engine = import_module(settings.SESSION_ENGINE)
        user = await get_user({"session": engine.SessionStore(self.session_key)})  # re-read, never cached
        allowed = user.pk == self.user_id and await self._allowed(user, self.project_id)
        self.checked_at = time.monotonic()
        return allowed

    async def _forward(self, payload):
        # Replay and live pushes overlap (the group is joined before the replay query), so drop what
        # was already sent. By id, not "id <= last": on PostgreSQL a lower id can commit (and be
        # pushed) after a higher one.
        event_id = payload["id"]
        if event_id is None:  # a transient push (e.g. ingestion progress), never stored: no dedupe
            await self.send_json({"type": "event", "event": payload})
            return
        if event_id in self.sent_ids:
            return
        self.sent_ids.add(event_id)
        self.sent_order.append(event_id)
        if len(self.sent_order) > SENT_MEMORY:
            self.sent_ids.discard(self.sent_order.popleft())
        await self.send_json({"type": "event", "event": payload})

    @database_sync_to_async
    def _allowed(self, user, project_id: int) -> bool:
        project = Project.objects.filter(pk=project_id).first()
        return project is not None and has_role(user, project)

    @database_sync_to_async
    def _subject_of_project(self, subject: str, project_id: int) -> tuple[str, int] | None:
        """(type, id) when `subject` names an existing object of project `project_id`, else None."""
        match = SUBJECT.fullmatch(subject)
        if match is None:
            return None
        subject_type, subject_id = match.group(1), int(match.group(2))
        if subject_type == PROJECT_SUBJECT:
            return (subject_type, subject_id) if subject_id == project_id else None
        if subject_type not in SUBJECT_MODELS or not 0 < subject_id <= MAX_ID:
            return None
        model, lookup = SUBJECT_MODELS[subject_type]
        if not model._default_manager.filter(pk=subject_id, **{lookup: project_id}).exists():
            return None
        return subject_type, subject_id

    @database_sync_to_async
    def _replay(self, after: int) -> list[dict]:
        if after <= 0:
            return []
        events = Event.objects.filter(project_id=self.project_id, id__gt=after)
        if self.subject:
            events = events.filter(subject_type=self.subject[0], subject_id=self.subject[1])
        return [serialize_event(e) for e in events.order_by("id")[: REPLAY_LIMIT + 1]]
