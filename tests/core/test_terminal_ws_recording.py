"""GET /runs/<id>/recording.cast (runs.views_terminal): an interactive session's asciicast v2 recording,
redacted (known secret shapes and the project's .env values), for a viewer and up; a non-member gets
404; a run without a recording, an autonomous run, or a file that is not asciicast v2 is a 404 naming
the problem, never a 500. And the run page's terminal panel for each state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from runs import interactive
from runs.models import ExecutionRun, RunKind
from runs.views_terminal import MAX_RECORDING_BYTES
from tests.factories import ExecutionRunFactory, MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db
SECRET = "sk-ant-api03-" + "Hq2Lp9" * 8
ENV_VALUE = "hunter2-very-private"


@pytest.fixture(autouse=True)
def _own_artifacts(settings, tmp_path):
    """Recordings of this test only (run ids repeat between tests; old recordings must not answer)."""
    settings.AUTOPILOT_ARTIFACT_ROOT = tmp_path / "artifacts"


def write_cast(run, *events, header=None) -> None:
    path = interactive.recording_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = header or {"version": 2, "width": 80, "height": 24, "timestamp": 1, "title": f"run #{run.pk}"}
    path.write_text("\n".join(json.dumps(item) for item in (header, *events)) + "\n")


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def session():
    project = ProjectFactory()
    run = ExecutionRunFactory(project=project, kind=RunKind.INTERACTIVE, status=ExecutionRun.Status.SUCCEEDED)
    Path(project.repo_path, ".env").write_text(f"DEPLOY_PASSWORD={ENV_VALUE}\n")
    write_cast(
        run,
        [0.1, "o", "$ cat notes\r\n"],
        [0.2, "o", f"key {SECRET[:17]}"],
        [0.25, "o", f"{SECRET[17:]} and {ENV_VALUE}\r\n"],
        [1.0, "o", "done-42\r\n"],
    )
    yield run
    interactive.recording_path(run).unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("viewer", 200),
        ("operator", 200),
        ("owner", 200),
        ("superuser", 200),
        ("non-member", 404),
        ("staff", 404),
    ],
)
def test_who_may_read_the_recording(session, who, status):
    if who in ("viewer", "operator", "owner"):
        user = MembershipFactory(project=session.project, role=who).user
    else:
        user = UserFactory(is_staff=who != "non-member", is_superuser=who == "superuser")
    response = client_for(user).get(f"/runs/{session.pk}/recording.cast")
    assert response.status_code == status
    if status == 404:
        assert session.project.name not in response.content.decode()


def test_anonymous_is_sent_to_the_login_page(session):
    response = Client().get(f"/runs/{session.pk}/recording.cast")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_recording_is_served_redacted_as_asciicast_v2(session):
    viewer = MembershipFactory(project=session.project, role="viewer").user
    response = client_for(viewer).get(f"/runs/{session.pk}/recording.cast")
    assert response["Content-Type"] == "application/x-asciicast; charset=utf-8"
    assert response["Cache-Control"] == "private, no-store"
    text = response.content.decode()
    lines = text.splitlines()
    assert json.loads(lines[0])["version"] == 2
    events = [json.loads(line) for line in lines[1:]]
    output = "".join(e[2] for e in events)
    # The key split over two chunks and the project's .env value are masked, the rest is there
    assert SECRET[:17] not in text and SECRET[17:] not in text and ENV_VALUE not in text
    assert "[REDACTED" in output and "done-42" in output and output.startswith("$ cat notes")
    # the raw file still has them (it is the server's; only the redacted form leaves it)
    assert SECRET[:17] in interactive.recording_path(session).read_text()


def test_runs_without_a_readable_recording_are_404_naming_why():
    project = ProjectFactory()
    viewer = MembershipFactory(project=project, role="viewer").user
    client = client_for(viewer)
    autonomous = ExecutionRunFactory(project=project)
    missing = ExecutionRunFactory(project=project, kind=RunKind.INTERACTIVE)
    broken = ExecutionRunFactory(project=project, kind=RunKind.INTERACTIVE)
    path = interactive.recording_path(broken)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is not a recording\n")
    try:
        answers = {
            name: client.get(f"/runs/{run_id}/recording.cast")
            for name, run_id in [
                ("autonomous", autonomous.pk),
                ("missing", missing.pk),
                ("broken", broken.pk),
                ("no-run", broken.pk + 1000),
            ]
        }
    finally:
        path.unlink()
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 404)
    assert "has no terminal recording" in answers["autonomous"].content.decode()
    assert "has no terminal recording" in answers["missing"].content.decode()
    assert "not an asciicast v2 file" in answers["broken"].content.decode()


def test_a_recording_over_the_cap_is_cut_at_a_line_with_a_marker(session, monkeypatch):
    # Given a recording larger than what is served (the cap lowered to keep the test small)
    monkeypatch.setattr("runs.views_terminal.MAX_RECORDING_BYTES", 2000)
    write_cast(session, *[[i / 10, "o", f"line {i:04d} " + "x" * 80 + "\r\n"] for i in range(100)])
    viewer = MembershipFactory(project=session.project, role="viewer").user

    text = client_for(viewer).get(f"/runs/{session.pk}/recording.cast").content.decode()

    events = [json.loads(line) for line in text.splitlines()[1:]]
    assert len(text.encode()) < 4000 and events[-1][1:] == [
        "m",
        "the recording is longer than the part served",
    ]
    assert all(isinstance(e, list) and len(e) == 3 for e in events)
    assert MAX_RECORDING_BYTES > 2000  # the real cap is larger than the test's


# --- The panel on the run page -----------------------------------------------------------------------


def test_the_panel_for_each_state(session):
    project = session.project
    viewer = MembershipFactory(project=project, role="viewer").user
    operator = MembershipFactory(project=project, role="operator").user
    autonomous = ExecutionRunFactory(project=project)
    waiting = ExecutionRunFactory(
        project=project, kind=RunKind.INTERACTIVE, status=ExecutionRun.Status.QUEUED
    )

    finished = client_for(viewer).get(f"/runs/{session.pk}/").content.decode()
    assert f'data-terminal-replay="/runs/{session.pk}/recording.cast"' in finished
    assert 'nonce="' in finished and "autopilot/terminal.js" in finished

    not_started = client_for(operator).get(f"/runs/{waiting.pk}/").content.decode()
    assert "not running yet" in not_started and "data-terminal" not in not_started
    assert "terminal.js" not in not_started

    plain = client_for(operator).get(f"/runs/{autonomous.pk}/").content.decode()
    assert 'id="terminal-panel"' not in plain
