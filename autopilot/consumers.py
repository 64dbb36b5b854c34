"""Live events over websockets: `/ws/events/?project=ID[&subject=executionrun.ID][&after=EVENT_ID]`.

On connect the client gets every event after `after` from the table (so a reconnect misses nothing),
then live pushes from the channel layer. Messages are `{"type": "event", "event": {...}}`. When more
than REPLAY_LIMIT events were missed, the replay stops there and a `{"type": "resync"}` message tells
the client to reload its state instead (app.js reloads the page).
"""

from __future__ import annotations

from collections import deque
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from autopilot.events import project_group, serialize_event, subject_group
from autopilot.models import Event, Project
from autopilot.permissions import has_role

REPLAY_LIMIT = 500
SENT_MEMORY = 2000  # ids remembered to drop duplicates between the replay and live pushes


class EventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        params = parse_qs(self.scope.get("query_string", b"").decode())
        self.groups_joined: list[str] = []
        self.sent_ids: set[int] = set()
        self.sent_order: deque[int] = deque()
        try:
            project_id = int(params.get("project", [""])[0])
            after = int(params.get("after", ["0"])[0] or 0)
        except ValueError:
            await self.close(code=4400)
            return
        subject = params.get("subject", [""])[0]
        if not await self._allowed(project_id):
            await self.close(code=4403)
            return
        groups = [project_group(project_id)]
        self.subject = None
        if subject:
            subject_type, _, subject_id = subject.partition(".")
            if not subject_id.isdigit():
                await self.close(code=4400)
                return
            self.subject = (subject_type, int(subject_id))
            groups = [subject_group(subject_type, int(subject_id))]
        self.project_id = project_id
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

    async def autopilot_event(self, message):
        await self._forward(message["event"])

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
    def _allowed(self, project_id: int) -> bool:
        user = self.scope.get("user")
        project = Project.objects.filter(pk=project_id).first()
        return project is not None and has_role(user, project)

    @database_sync_to_async
    def _replay(self, after: int) -> list[dict]:
        if after <= 0:
            return []
        events = Event.objects.filter(project_id=self.project_id, id__gt=after)
        if self.subject:
            events = events.filter(subject_type=self.subject[0], subject_id=self.subject[1])
        return [serialize_event(e) for e in events.order_by("id")[: REPLAY_LIMIT + 1]]
