"""Websocket scope (/ws/events/): a socket gets exactly what the caller's role on the project allows.

Two projects: "own" (A, where the members are) and "other" (B). The connect matrix runs every
`subject` form for every kind of user against the real ASGI application (autopilot.asgi, through its
origin and session middleware) with channels' WebsocketCommunicator, so the close code is visible.
The delivery tests run a real daphne and real websocket clients; events are recorded by a separate
process (like a worker), other-project events first, so a leaked one would arrive before the
expected ones and break the exact comparison.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from autopilot.asgi import application
from tests.factories import (
    BlueprintFactory,
    ExecutionRunFactory,
    ExecutionStepFactory,
    IngestionJobFactory,
    MembershipFactory,
    PlanNodeFactory,
    ProjectFactory,
    ProposalFactory,
    TaskFactory,
    UserFactory,
)
from tests.liveserver import LiveServer, login

PASSWORD = "pw-for-tests-123"  # tests.factories.UserFactory's password
RECV_TIMEOUT = 30
pytestmark = pytest.mark.django_db(transaction=True)
ACCEPT = "accept"
FORBIDDEN = 4403
BAD_REQUEST = 4400

USERS = ["anonymous", "non-member", "viewer", "operator", "owner", "staff", "superuser"]
MAY_SEE_OWN = {"viewer", "operator", "owner", "superuser"}

# Subject forms: id -> a function of the world giving the `subject` value, and whether it is a valid
# subject of the own project (accepted for whoever may see that project, refused for everybody else).
SUBJECTS = {
    "none": (lambda w: "", True),
    "project-own": (lambda w: f"project.{w.own.pk}", True),
    "project-other": (lambda w: f"project.{w.other.pk}", False),
    "run-own": (lambda w: f"executionrun.{w.objects['own']['run'].pk}", True),
    "run-other": (lambda w: f"executionrun.{w.objects['other']['run'].pk}", False),
    "step-own": (lambda w: f"executionstep.{w.objects['own']['step'].pk}", True),
    "step-other": (lambda w: f"executionstep.{w.objects['other']['step'].pk}", False),
    "task-own": (lambda w: f"task.{w.objects['own']['task'].pk}", True),
    "task-other": (lambda w: f"task.{w.objects['other']['task'].pk}", False),
    "blueprint-own": (lambda w: f"blueprint.{w.objects['own']['blueprint'].pk}", True),
    "blueprint-other": (lambda w: f"blueprint.{w.objects['other']['blueprint'].pk}", False),
    "ingestionjob-own": (lambda w: f"ingestionjob.{w.objects['own']['job'].pk}", True),
    "ingestionjob-other": (lambda w: f"ingestionjob.{w.objects['other']['job'].pk}", False),
    "plannode-own": (lambda w: f"plannode.{w.objects['own']['node'].pk}", True),
    "plannode-other": (lambda w: f"plannode.{w.objects['other']['node'].pk}", False),
    "proposal-own": (lambda w: f"proposal.{w.objects['own']['proposal'].pk}", True),
    "proposal-other": (lambda w: f"proposal.{w.objects['other']['proposal'].pk}", False),
    "run-missing": (lambda w: f"executionrun.{w.objects['other']['run'].pk + 1000}", False),
    "project-missing": (lambda w: f"project.{w.other.pk + 1000}", False),
    # Not subjects a socket may follow, even with an id of the own project's object or user.
    "membership-own": (lambda w: f"projectmembership.{w.membership.pk}", False),
    "user-self": (lambda w: f"user.{w.users['viewer'].pk}", False),
    "event-own": (lambda w: f"event.{w.own_event.pk}", False),
    # Malformed.
    "run-abc": (lambda w: "executionrun.abc", False),
    "unknown-type": (lambda w: "x.1", False),
    "empty-type": (lambda w: f".{w.objects['own']['run'].pk}", False),
    "empty-id": (lambda w: "executionrun.", False),
    "no-dot": (lambda w: "executionrun", False),
    "huge-id": (lambda w: "executionrun.99999999999999999999", False),
    "bigint-overflow": (lambda w: "executionrun.9223372036854775808", False),
    "negative-id": (lambda w: f"executionrun.-{w.objects['own']['run'].pk}", False),
    "zero-id": (lambda w: "executionrun.0", False),
    "superscript-digit": (lambda w: "executionrun.\u00b2", False),
    "arabic-digits": (lambda w: "executionrun.\u0661", False),
    "upper-case": (lambda w: f"EXECUTIONRUN.{w.objects['own']['run'].pk}", False),
    "extra-part": (lambda w: f"executionrun.{w.objects['own']['run'].pk}.1", False),
    "spaces": (lambda w: f" executionrun.{w.objects['own']['run'].pk}", False),
    "group-name-junk": (lambda w: "a b!.1", False),
    "very-long": (lambda w: "x" * 5000 + ".1", False),
}


class World:
    """Two projects with one object of every subject type each, and one user of every kind."""

    def __init__(self):
        self.own, self.other = ProjectFactory(), ProjectFactory()
        self.objects = {"own": self._objects(self.own), "other": self._objects(self.other)}
        self.users = {
            "anonymous": None,
            "non-member": UserFactory(),
            "viewer": MembershipFactory(project=self.own, role="viewer").user,
            "operator": MembershipFactory(project=self.own, role="operator").user,
            "owner": MembershipFactory(project=self.own, role="owner").user,
            "staff": UserFactory(is_staff=True),
            "superuser": UserFactory(is_staff=True, is_superuser=True),
        }
        # Every member of the own project is also a member of nothing else; the other project has its own
        self.membership = MembershipFactory(project=self.other, role="owner")
        from autopilot.models import Event

        self.own_event = Event.objects.create(project=self.own, kind="test.seed")

    @staticmethod
    def _objects(project):
        run = ExecutionRunFactory(project=project)
        blueprint = BlueprintFactory(project=project)
        task = TaskFactory(project=project)
        return {
            "run": run,
            "step": ExecutionStepFactory(run=run),
            "task": task,
            "blueprint": blueprint,
            "job": IngestionJobFactory(blueprint=blueprint, project=project),
            "node": PlanNodeFactory(blueprint=blueprint, project=project),
            "proposal": ProposalFactory(task=task, project=project),
        }


@pytest.fixture
def world(transactional_db):
    return World()


def session_cookie(user) -> bytes | None:
    if user is None:
        return None
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def connect_in_process(cookie: bytes | None, query: str):
    """Open /ws/events/?query on the real ASGI app: ACCEPT, or the close code of the refusal."""

    async def attempt():
        headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
        if cookie:
            headers.append((b"cookie", cookie))
        communicator = WebsocketCommunicator(application, f"/ws/events/?{query}", headers=headers)
        connected, code = await communicator.connect(timeout=30)
        if connected:
            await communicator.disconnect()
            return ACCEPT
        return code

    return async_to_sync(attempt)()


def expected_outcome(user_kind: str, valid_for_own: bool):
    return ACCEPT if user_kind in MAY_SEE_OWN and valid_for_own else FORBIDDEN


@pytest.mark.parametrize("user_kind", USERS)
def test_connect_matrix_every_subject_form_for_every_kind_of_user(world, user_kind):
    # Given a user of this kind (member of the own project, or not) and every subject form
    cookie = session_cookie(world.users[user_kind])

    # When they open the own project's socket with each subject
    outcome = {}
    for name, (subject_of, _) in SUBJECTS.items():
        subject = subject_of(world)
        query = f"project={world.own.pk}" + (f"&subject={subject}" if subject else "")
        outcome[name] = connect_in_process(cookie, query)

    # Then exactly the valid subjects of the own project are accepted, for exactly the users with a
    # role on it; everything else gets the close code a non-member gets
    expected = {name: expected_outcome(user_kind, valid) for name, (_, valid) in SUBJECTS.items()}
    assert outcome == expected


@pytest.mark.parametrize("user_kind", USERS)
def test_the_other_projects_socket_is_refused_with_any_subject(world, user_kind):
    # Given a user with no role on the other project (superusers have one everywhere)
    cookie = session_cookie(world.users[user_kind])
    others = world.objects["other"]
    subjects = [
        "",
        f"project.{world.other.pk}",
        f"executionrun.{others['run'].pk}",
        f"task.{others['task'].pk}",
        f"executionrun.{world.objects['own']['run'].pk}",
    ]

    # When they open the other project's socket, Then it is refused (superuser: only the own run is,
    # as it is not a subject of the other project)
    outcome = [
        connect_in_process(cookie, f"project={world.other.pk}" + (f"&subject={s}" if s else ""))
        for s in subjects
    ]
    if user_kind == "superuser":
        assert outcome == [ACCEPT, ACCEPT, ACCEPT, ACCEPT, FORBIDDEN]
    else:
        assert outcome == [FORBIDDEN] * len(subjects)


@pytest.mark.parametrize(
    ("query", "code"),
    [
        pytest.param("", BAD_REQUEST, id="no-project"),
        pytest.param("project=", BAD_REQUEST, id="empty-project"),
        pytest.param("project=abc", BAD_REQUEST, id="project-abc"),
        pytest.param("project=1.5", BAD_REQUEST, id="project-float"),
        pytest.param("project=99999999999999999999", BAD_REQUEST, id="project-huge"),
        pytest.param("project=%C2%B2", BAD_REQUEST, id="project-superscript"),
        pytest.param("project={own}&after=abc", BAD_REQUEST, id="after-abc"),
        pytest.param("project={own}&after=99999999999999999999", BAD_REQUEST, id="after-huge"),
        pytest.param("project=0", FORBIDDEN, id="project-zero"),
        pytest.param("project=-{own}", FORBIDDEN, id="project-negative"),
        pytest.param("project={missing}", FORBIDDEN, id="project-missing"),
        pytest.param("project={other}", FORBIDDEN, id="project-other"),
        pytest.param("project={own}&after=", ACCEPT, id="after-empty"),
        pytest.param("project={own}&after=-5", ACCEPT, id="after-negative"),
        pytest.param("project={own}&after=9223372036854775807", ACCEPT, id="after-max"),
    ],
)
def test_project_and_after_parameters(world, query, code):
    # Given a viewer of the own project
    cookie = session_cookie(world.users["viewer"])
    query = query.format(own=world.own.pk, other=world.other.pk, missing=world.other.pk + 1000)

    # When they connect with these parameters, Then they get this outcome (never a server error)
    assert connect_in_process(cookie, query) == code


# --- Delivery over a real server -------------------------------------------------------------------

WORKER_CODE = """
import json, sys
import django
django.setup()
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import transaction
from autopilot import services
from autopilot.events import record_event
from autopilot.models import Project

for action in json.loads(sys.argv[1]):
    with transaction.atomic():
        if action[0] == "record":
            _, label, pk, kind = action
            record_event(kind=kind, subject=apps.get_model(label).objects.get(pk=pk), data={"from": "worker"})
        elif action[0] == "record-no-project":
            record_event(kind=action[1], data={"from": "worker"})
        elif action[0] == "remove-member":
            project = Project.objects.get(pk=action[1])
            services.membership_remove(project=project, user=get_user_model().objects.get(pk=action[2]))
"""


def in_worker(env: dict, *actions) -> None:
    """A separate Python process (like a django-q2 worker) does `actions`, one transaction each."""
    done = subprocess.run(
        [sys.executable, "-c", WORKER_CODE, json.dumps(actions)],
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


def receive(ws, count: int) -> list[dict]:
    events = []
    for _ in range(count):
        message = json.loads(ws.recv(timeout=RECV_TIMEOUT))
        assert message["type"] == "event", message
        events.append(message["event"])
    return events


def record_actions(world: World, side: str) -> list[list]:
    """One event per object of the `side` project (plus one on the project itself)."""
    project = world.own if side == "own" else world.other
    actions = [["record", "autopilot.Project", project.pk, f"test.{side}.project"]]
    for key, obj in world.objects[side].items():
        actions.append(["record", obj._meta.label, obj.pk, f"test.{side}.{key}"])
    return actions


@pytest.fixture
def web(subprocess_env):
    with LiveServer(env=subprocess_env) as server:
        yield server
    print(server.log()[-6000:])  # shown when the test failed


@pytest.mark.parametrize("user_kind", ["viewer", "superuser"])
def test_sockets_receive_only_their_own_projects_events(world, web, subprocess_env, user_kind):
    # Given a user with a role on the own project, logged in through the real form
    cookie = login(web.url, world.users[user_kind].username, PASSWORD)
    own = world.objects["own"]
    # and the exploit of the security review refused: the own project's role, the other's group
    for subject in [f"project.{world.other.pk}", f"executionrun.{world.objects['other']['run'].pk}"]:
        with pytest.raises(InvalidStatus) as refused:
            open_socket(web, cookie, f"project={world.own.pk}&subject={subject}")
        assert refused.value.response.status_code == 403

    # When sockets are open on the whole own project, on its run and on its task
    base = f"project={world.own.pk}"
    with (
        open_socket(web, cookie, base) as project_ws,
        open_socket(web, cookie, f"{base}&subject=executionrun.{own['run'].pk}") as run_ws,
        open_socket(web, cookie, f"{base}&subject=task.{own['task'].pk}") as task_ws,
    ):
        # and a worker records events on every object of the other project and one with no project,
        # then (in a later process, so those are in the channel layer first) on every object of the own one
        in_worker(subprocess_env, *record_actions(world, "other"), ["record-no-project", "test.no_project"])
        in_worker(subprocess_env, *record_actions(world, "own"))

        # Then each socket gets exactly the own project's events for its scope, nothing before them
        own_kinds = {action[3] for action in record_actions(world, "own")}
        got = {
            name: receive(ws, count)
            for name, ws, count in [
                ("project", project_ws, len(own_kinds)),
                ("run", run_ws, 1),
                ("task", task_ws, 1),
            ]
        }
        assert {e["kind"] for e in got["project"]} == own_kinds
        assert [e["kind"] for e in got["run"]] == ["test.own.run"]
        assert [e["kind"] for e in got["task"]] == ["test.own.task"]
        assert {e["project"] for events in got.values() for e in events} == {world.own.pk}
        # and nothing after them either
        for ws in (project_ws, run_ws, task_ws):
            with pytest.raises(TimeoutError):
                ws.recv(timeout=1)


@pytest.mark.parametrize(
    "query_of",
    [
        pytest.param(lambda w: f"project={w.own.pk}", id="project-socket"),
        pytest.param(
            lambda w: f"project={w.own.pk}&subject=executionrun.{w.objects['own']['run'].pk}", id="run-socket"
        ),
    ],
)
def test_membership_removed_while_connected_closes_the_socket(world, subprocess_env, query_of):
    # Given a viewer with a socket open (the server re-checks the role before every event)
    viewer = world.users["viewer"]
    with LiveServer(env=subprocess_env, extra_env={"AUTOPILOT_WS_RECHECK_SECONDS": "0"}) as server:
        cookie = login(server.url, viewer.username, PASSWORD)
        with open_socket(server, cookie, query_of(world)) as ws:
            run_pk = world.objects["own"]["run"].pk
            in_worker(subprocess_env, ["record", "runs.ExecutionRun", run_pk, "test.before"])
            assert [e["kind"] for e in receive(ws, 1)] == ["test.before"]

            # When their membership is removed, then the run records an event
            in_worker(
                subprocess_env,
                ["remove-member", world.own.pk, viewer.pk],
                ["record", "runs.ExecutionRun", world.objects["own"]["run"].pk, "test.after"],
            )

            # Then the socket is closed with 4403 and neither event reached it
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=RECV_TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == FORBIDDEN


def test_membership_removal_closes_a_project_socket_at_once_with_the_default_recheck_interval(
    world, web, subprocess_env
):
    # Given a viewer with the project socket open on a server with the default (cached) re-check
    viewer = world.users["viewer"]
    cookie = login(web.url, viewer.username, PASSWORD)
    with open_socket(web, cookie, f"project={world.own.pk}") as ws:
        # When their membership is removed (an event naming them), then the project records an event
        in_worker(
            subprocess_env,
            ["remove-member", world.own.pk, viewer.pk],
            ["record", "autopilot.Project", world.own.pk, "test.after"],
        )

        # Then the socket is closed with 4403 at once: not even the membership event was sent
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=RECV_TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == FORBIDDEN


def test_logging_out_closes_the_socket(world, subprocess_env):
    # Given a viewer with a socket open (the server re-checks the session before every event)
    viewer = world.users["viewer"]
    with LiveServer(env=subprocess_env, extra_env={"AUTOPILOT_WS_RECHECK_SECONDS": "0"}) as server:
        cookie = login(server.url, viewer.username, PASSWORD)
        with open_socket(server, cookie, f"project={world.own.pk}") as ws:
            # When that session logs out (its row is deleted), then the project records an event
            from django.contrib.sessions.models import Session

            Session.objects.filter(session_key=cookie.split("sessionid=")[1].split(";")[0]).delete()
            in_worker(subprocess_env, ["record", "autopilot.Project", world.own.pk, "test.after"])

            # Then the socket is closed with 4403 and the event did not reach it
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=RECV_TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == FORBIDDEN
