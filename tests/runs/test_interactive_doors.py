"""The API and web doors of interactive sessions and take-over: create with kind=interactive, stop,
takeover/handback, the task page's button; permissions (operator acts, viewer cannot, non-member
sees nothing); clear 4xx answers; the orphan sweep after the owning process is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from rest_framework.test import APIClient

from runs import interactive
from runs.models import ExecutionRun, ExecutionStep, RunKind
from tests.cli.cli_runs_support import autopilot, ok
from tests.factories import MembershipFactory, ProjectFactory, TaskFactory, UserFactory
from tests.runs.helpers import run_in_thread, scripted, status_of, wait_for
from tests.runs.test_interactive import screen, type_line

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_leftover_tmux():
    yield
    directory = interactive.socket_dir()
    if directory.is_dir():
        for entry in directory.glob("run-*.sock"):
            interactive.kill_server(int(entry.stem.split("-")[1]))


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def team(db):
    project = ProjectFactory(autonomy_mode="full_auto")
    users = {role: MembershipFactory(project=project, role=role).user for role in ("operator", "viewer")}
    users["outsider"] = UserFactory()
    return project, users


def test_api_creates_and_stops_an_interactive_session(team):
    project, users = team
    task = TaskFactory(project=project, title="Tidy up")
    url = f"/api/projects/{project.pk}/runs/"
    body = {"kind": "interactive", "task": task.pk}
    assert client_for(users["viewer"]).post(url, body, format="json").status_code == 403
    assert client_for(users["outsider"]).post(url, body, format="json").status_code == 404
    bad = client_for(users["operator"]).post(url, {"kind": "interactive", "prompt": "x"}, format="json")
    assert bad.status_code == 400 and "needs a task" in str(bad.data)
    bad = client_for(users["operator"]).post(url, {**body, "agent": "native"}, format="json")
    assert bad.status_code == 400 and "can launch claude_code or codex" in str(bad.data)
    bad = client_for(users["operator"]).post(url, {**body, "kind": "robot"}, format="json")
    assert bad.status_code == 400 and "kind" in bad.data
    assert not ExecutionRun.objects.exists()

    created = client_for(users["operator"]).post(url, body, format="json")
    assert created.status_code == 201, created.data
    assert created.data["kind"] == "interactive" and created.data["status"] == "running"
    run = ExecutionRun.objects.get(pk=created.data["id"])
    assert interactive.is_live(run) and run.created_by == users["operator"]
    again = client_for(users["operator"]).post(url, body, format="json")
    assert again.status_code == 409

    wait_for(lambda: f"[run #{run.pk}]" in screen(run))
    type_line(run, "echo api > api.txt; echo wrote-$((1+2))")
    wait_for(lambda: "wrote-3" in screen(run))
    assert client_for(users["viewer"]).post(f"/api/runs/{run.pk}/stop/", {}, format="json").status_code == 403
    assert (
        client_for(users["outsider"]).post(f"/api/runs/{run.pk}/stop/", {}, format="json").status_code == 404
    )
    stopped = client_for(users["operator"]).post(
        f"/api/runs/{run.pk}/stop/", {"reason": "done"}, format="json"
    )
    assert stopped.status_code == 200 and stopped.data["status"] == "succeeded"
    assert "api.txt" in run.steps.get(kind=ExecutionStep.Kind.COMMIT).diff
    detail = client_for(users["viewer"]).get(f"/api/runs/{run.pk}/").data
    assert detail["kind"] == "interactive" and [s["kind"] for s in detail["steps"]] == ["commit"]


def test_api_takeover_and_handback(team):
    project, users = team
    run = scripted(
        project,
        [*[{"sleep": 0.1}] * 80, {"finish": "ok"}],
        run_settings={"stuck_idle_turns": 1000},
        max_turns=1000,
    )
    worker = run_in_thread(run.pk)
    wait_for(lambda: status_of(run.pk) == "running" and ExecutionRun.objects.get(pk=run.pk).worktree_path)
    takeover, handback = f"/api/runs/{run.pk}/takeover/", f"/api/runs/{run.pk}/handback/"
    assert client_for(users["viewer"]).post(takeover, format="json").status_code == 403
    assert client_for(users["outsider"]).post(takeover, format="json").status_code == 404
    assert client_for(users["operator"]).post(handback, {"note": "x"}, format="json").status_code == 409
    answer = client_for(users["operator"]).post(takeover, format="json")
    assert answer.status_code == 202 and answer.data["run"] == run.pk
    assert client_for(users["operator"]).post(takeover, format="json").status_code == 409
    assert interactive.wait_paused(run, timeout=30)
    # the terminal opens when the run paused: on the next request, or the reconciler's sweep
    interactive.sweep()
    assert interactive.is_live(run)
    wait_for(lambda: f"[run #{run.pk}]" in screen(run))
    type_line(run, "echo from-api > handed.txt")
    wait_for(
        lambda: os.path.exists(os.path.join(ExecutionRun.objects.get(pk=run.pk).worktree_path, "handed.txt"))
    )
    too_long = client_for(users["operator"]).post(handback, {"note": "x" * 100_000}, format="json")
    assert too_long.status_code == 400 and "note" in too_long.data
    assert client_for(users["viewer"]).post(handback, {"note": "x"}, format="json").status_code == 403
    back = client_for(users["operator"]).post(handback, {"note": "over to you"}, format="json")
    assert back.status_code == 200, back.data
    assert back.data["files"] == [{"path": "handed.txt", "added": 1, "removed": 0}]
    worker.join(timeout=60)
    run.refresh_from_db()
    assert run.status == "succeeded" and "over to you" in run.steps.get(kind="message").input["body"]


def test_task_page_button_opens_a_session(client, team):
    project, users = team
    task = TaskFactory(project=project)
    client.force_login(users["viewer"])
    page = client.get(f"/projects/{project.pk}/tasks/{task.pk}/")
    assert page.status_code == 200 and b"interactive-button" not in page.content
    url = f"/projects/{project.pk}/tasks/{task.pk}/interactive/"
    assert client.post(url).status_code in (403, 404)
    client.force_login(users["outsider"])
    assert client.post(url).status_code == 404
    assert not ExecutionRun.objects.exists()
    client.force_login(users["operator"])
    page = client.get(f"/projects/{project.pk}/tasks/{task.pk}/")
    assert b'data-testid="interactive-button"' in page.content
    assert client.post(f"/projects/{project.pk}/tasks/999999/interactive/").status_code == 404
    response = client.post(url)
    run = ExecutionRun.objects.get(kind=RunKind.INTERACTIVE)
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert interactive.is_live(run)
    refused = client.post(url, follow=True)  # a second one on the same task: a message, no 500
    assert refused.status_code == 200 and b"already has a queued or active" in refused.content
    assert client.post(f"/runs/{run.pk}/stop/").status_code == 302
    run.refresh_from_db()
    assert run.status == "cancelled" and not interactive.is_live(run)


def test_sigkilled_owner_leaves_no_orphan_terminal(subprocess_env, team, tmp_path):
    """The process that opened a session is SIGKILLed with the run still open; its tmux server lives
    on (it is a daemon). Once the run is failed (the server's recovery) the reconciler's sweep —
    `autopilot reconcile`, what `serve` runs on start — kills that tmux server and removes its socket."""
    project, users = team
    task = TaskFactory(project=project)
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import django, sys, time; django.setup();"
            "from blueprints.models import Task; from runs import interactive;"
            f"run = interactive.start(task=Task.objects.get(pk={task.pk}));"
            "print(run.pk, flush=True); time.sleep(3600)",
        ],
        env=subprocess_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        run_id = int(owner.stdout.readline())
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
    assert interactive.is_live(run_id)
    pid = interactive.server_pid(run_id)
    # the run is still open: the sweep keeps it (a live session survives a server restart)
    ok(autopilot(subprocess_env, "reconcile", "--json", cwd=tmp_path))
    assert interactive.is_live(run_id)
    # the run ends behind the terminal's back (failed by hand here, as a reaper or an admin would)
    ExecutionRun.objects.filter(pk=run_id).update(status=ExecutionRun.Status.FAILED)
    swept = ok(autopilot(subprocess_env, "reconcile", "--json", cwd=tmp_path)).stdout
    assert f'"orphans_killed": [{run_id}]' in swept
    assert not interactive.is_live(run_id) and not interactive.socket_path(run_id).exists()
    wait_for(lambda: subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0)


def test_a_crash_while_opening_and_a_dead_tmux_server_are_recovered(team):
    project, _ = team
    task, other = TaskFactory(project=project), TaskFactory(project=project)
    # a session whose tmux server died with the machine: SIGKILL leaves the socket file behind
    run = interactive.start(task=task)
    os.kill(interactive.server_pid(run), signal.SIGKILL)
    wait_for(lambda: not interactive.is_live(run))
    assert interactive.socket_path(run).exists()
    # a session whose opening process died before the terminal opened: stuck in preparing
    stuck = interactive.services.run_create(
        project=project, prompt="x", task=other, enqueue=False, kind=RunKind.INTERACTIVE
    )
    ExecutionRun.objects.filter(pk=stuck.pk).update(status=ExecutionRun.Status.PREPARING)
    now = stuck.created_at.timestamp()
    assert interactive.sweep(now=now + 1)["ended"] == [run.pk]  # still opening: left alone
    assert interactive.sweep(now=now + 3600)["ended"] == [stuck.pk]
    run.refresh_from_db(), stuck.refresh_from_db()
    assert run.status == "cancelled" and "shell exited" in run.status_reason
    assert stuck.status == "failed" and "never opened" in stuck.status_reason
    assert not interactive.socket_path(run).exists()


def test_recording_exports_redacted_from_the_api_and_the_cli(subprocess_env, team, tmp_path):
    project, users = team
    run = interactive.start(task=TaskFactory(project=project))
    secret = "sk-ant-api03-" + "q" * 40
    wait_for(lambda: f"[run #{run.pk}]" in screen(run))
    type_line(run, f"echo exported-$((4*4)) {secret}")
    wait_for(lambda: "exported-16" in screen(run))
    interactive.finish(run)

    url = f"/api/runs/{run.pk}/export/?format=cast"
    answer = client_for(users["viewer"]).get(url)
    assert answer.status_code == 200 and answer["Content-Type"].startswith("application/x-asciicast")
    body = answer.content.decode()
    assert body.startswith('{"version": 2') and "exported-16" in body and "q" * 40 not in body
    assert client_for(users["outsider"]).get(url).status_code == 404
    agent_run = scripted(project, [{"finish": "ok"}])
    interactive.recording_path(agent_run).unlink(missing_ok=True)  # test databases reuse run ids
    missing = client_for(users["viewer"]).get(f"/api/runs/{agent_run.pk}/export/?format=cast")
    assert missing.status_code == 404 and b"no terminal recording" in missing.content

    target = tmp_path / "session.cast"
    ok(autopilot(subprocess_env, "export", run.pk, "--format", "cast", "-o", target, cwd=tmp_path))
    exported = target.read_text()
    assert exported == body
    refused = autopilot(subprocess_env, "export", agent_run.pk, "--format", "cast", cwd=tmp_path)
    assert refused.returncode != 0 and "no terminal recording" in refused.stderr


def test_the_run_page_offers_take_over_then_hand_back_to_operators_only(team, client, tmp_path):
    project, users = team
    run = ExecutionRun.objects.create(
        project=project,
        agent_backend="scripted",
        prompt="work",
        status=ExecutionRun.Status.RUNNING,
        worktree_path=str(tmp_path),
    )
    client.force_login(users["viewer"])
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'data-testid="takeover"' not in page and 'data-testid="handback"' not in page
    client.force_login(users["operator"])
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'data-testid="takeover"' in page and 'data-testid="handback"' not in page
    # When the operator takes it over, the page offers to hand it back (with a note) instead
    interactive.takeover(run, actor=users["operator"])
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert 'data-testid="handback"' in page and 'name="note"' in page and 'data-testid="takeover"' not in page
