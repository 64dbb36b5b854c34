"""Live events cross processes: a worker process records an event, the web process (daphne) pushes it
to a browser's websocket. Runs on the embedded default (channels-lite's SQLite layer, DB alias
"channels") and, on the PostgreSQL + Redis pass, on channels-redis: same test, same assertions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.conf import settings
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from autopilot.models import Event
from tests.factories import MembershipFactory, UserFactory
from tests.liveserver import LiveServer, http_json, login

PASSWORD = "pw-for-tests-123"  # tests.factories.UserFactory's password
RECV_TIMEOUT = 30

WORKER_CODE = """
import sys
import django
django.setup()
from django.db import transaction
from autopilot.events import record_event
from autopilot.models import Project

project = Project.objects.get(pk=int(sys.argv[1]))
for kind in sys.argv[2:]:
    with transaction.atomic():
        record_event(kind=kind, subject=project, data={"from": "worker"})
"""


def record_in_worker(env: dict, project_id: int, *kinds: str) -> None:
    """A separate Python process (like a django-q2 worker) records events, one transaction each."""
    done = subprocess.run(
        [sys.executable, "-c", WORKER_CODE, str(project_id), *kinds],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def open_socket(server: LiveServer, cookie: str | None, query: str):
    headers = {"Cookie": cookie} if cookie else {}
    return connect(
        f"{server.ws_url}/ws/events/?{query}", additional_headers=headers, origin=server.url, open_timeout=30
    )


def next_event(ws) -> dict:
    message = json.loads(ws.recv(timeout=RECV_TIMEOUT))
    assert message["type"] == "event"
    return message["event"]


@pytest.fixture
def member(project):
    return MembershipFactory(project=project, role="viewer").user


@pytest.fixture
def web(subprocess_env):
    with LiveServer(env=subprocess_env) as server:
        # /healthz round-trips a message through a process-specific channel inside an HTTP request.
        # That request starts the layer's per-process poller; it must keep serving websockets after
        # the request is gone (the channels-lite poller bug fixed in autopilot/channel_layer.py).
        status, report = http_json(server.url + "/healthz")
        assert status == 200, report
        yield server


@pytest.mark.django_db(transaction=True)
def test_event_recorded_by_a_worker_process_reaches_the_websocket(project, member, web, subprocess_env):
    # Given a project member logged in through the real login form, with a websocket open
    cookie = login(web.url, member.username, PASSWORD)
    with open_socket(web, cookie, f"project={project.pk}") as ws:
        # When a separate worker process records an event for that project
        record_in_worker(subprocess_env, project.pk, "test.from_worker")

        # Then the web process pushes it to the socket
        event = next_event(ws)
    stored = Event.objects.get(kind="test.from_worker")
    assert event["id"] == stored.pk
    assert event["project"] == project.pk
    assert event["data"] == {"from": "worker"}


@pytest.mark.django_db(transaction=True)
def test_reconnect_with_after_replays_missed_events_in_order_without_duplicates(
    project, member, web, subprocess_env
):
    # Given a client that saw one event, then went away
    cookie = login(web.url, member.username, PASSWORD)
    with open_socket(web, cookie, f"project={project.pk}") as ws:
        record_in_worker(subprocess_env, project.pk, "test.seen")
        seen = next_event(ws)
    # and three events happened while it was away
    record_in_worker(subprocess_env, project.pk, "test.missed.1", "test.missed.2", "test.missed.3")

    # When it reconnects with after=<last id it saw>
    with open_socket(web, cookie, f"project={project.pk}&after={seen['id']}") as ws:
        replayed = [next_event(ws) for _ in range(3)]
        # and one more event happens live
        record_in_worker(subprocess_env, project.pk, "test.live")
        live = next_event(ws)

    # Then it got the missed events in order, then the live one, and nothing twice
    assert [e["kind"] for e in replayed] == ["test.missed.1", "test.missed.2", "test.missed.3"]
    ids = [e["id"] for e in replayed] + [live["id"]]
    assert ids == sorted(set(ids))
    assert live["kind"] == "test.live"
    assert seen["id"] < ids[0]


@pytest.mark.django_db(transaction=True)
def test_socket_of_a_non_member_is_refused(project, web):
    # Given a logged-in user who is not a member of the project
    outsider = UserFactory()
    cookie = login(web.url, outsider.username, PASSWORD)

    # When they (or an anonymous client) open the project's event socket, Then the handshake is refused
    with pytest.raises(InvalidStatus) as refused:
        open_socket(web, cookie, f"project={project.pk}")
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        open_socket(web, None, f"project={project.pk}")


@pytest.mark.django_db(transaction=True)
def test_channel_layer_in_use_is_the_configured_one(web):
    # The same tests above ran on this layer: SQLite (embedded) or Redis (scale-out)
    _, report = http_json(web.url + "/healthz")
    expected = "RedisChannelLayer" if settings.REDIS_URL else "SQLiteChannelLayer"
    assert report["checks"]["channel_layer"]["backend"] == expected


@pytest.mark.django_db(transaction=True)
def test_reconnect_after_too_many_missed_events_gets_the_first_page_then_resync(project, member, web):
    # Given more events were missed than a replay sends (written directly: nothing is pushed)
    from autopilot.consumers import REPLAY_LIMIT

    Event.objects.bulk_create(
        [Event(project=project, kind=f"test.bulk.{i}") for i in range(REPLAY_LIMIT + 2)]
    )
    first = Event.objects.filter(project=project).order_by("id").first()
    cookie = login(web.url, member.username, PASSWORD)

    # When the client reconnects after the first one
    with open_socket(web, cookie, f"project={project.pk}&after={first.pk}") as ws:
        replayed = [next_event(ws) for _ in range(REPLAY_LIMIT)]
        tail = json.loads(ws.recv(timeout=RECV_TIMEOUT))

    # Then it gets the oldest REPLAY_LIMIT missed events in order, then a resync instruction
    assert [e["kind"] for e in replayed] == [f"test.bulk.{i}" for i in range(1, REPLAY_LIMIT + 1)]
    assert tail["type"] == "resync"
