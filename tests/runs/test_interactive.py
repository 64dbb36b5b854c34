"""Interactive sessions (runs.interactive) against a real tmux server, a real git worktree and the
real database: start, type with `tmux send-keys`, read with `capture-pane`, end with a commit step;
the asciicast v2 recording; the limits; the idle sweep; the orphan sweep; not an agent slot."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from django.test import override_settings

from autopilot.errors import ApplicationError, CapacityExceeded, Conflict
from runs import interactive, services
from runs.models import ExecutionRun, ExecutionStep, RunKind
from runs.worker import AT_CAPACITY, NOT_CLAIMED, claim
from tests.factories import MembershipFactory, ProjectFactory, TaskFactory, UserFactory
from tests.runs.helpers import scripted, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def tmux(run, *args) -> str:
    return subprocess.run(
        [interactive.tmux_binary(), "-S", str(interactive.socket_path(run)), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout


def type_line(run, text: str) -> None:
    tmux(run, "send-keys", "-t", interactive.session_name(run), "-l", text)
    tmux(run, "send-keys", "-t", interactive.session_name(run), "Enter")


def screen(run) -> str:
    return tmux(run, "capture-pane", "-p", "-t", interactive.session_name(run))


def shows(run, text: str) -> bool:
    return text in screen(run)


@pytest.fixture(autouse=True)
def _no_leftover_tmux():
    yield
    directory = interactive.socket_dir()
    if directory.is_dir():
        for entry in directory.glob("run-*.sock"):
            interactive.kill_server(int(entry.stem.split("-")[1]))


@pytest.fixture
def task(db):
    return TaskFactory(project=ProjectFactory(), title="Add a greeting")


def test_session_runs_a_shell_in_its_worktree_and_ends_with_a_commit_step(task):
    operator = UserFactory()
    MembershipFactory(project=task.project, user=operator, role="operator")
    run = interactive.start(task=task, actor=operator)

    assert run.kind == RunKind.INTERACTIVE and run.status == ExecutionRun.Status.RUNNING
    assert run.branch.startswith("autopilot/add-a-greeting-") and run.worktree_path
    assert interactive.is_live(run)
    argv = interactive.attach_argv(run)
    assert argv[1:] == [
        "-S",
        str(interactive.socket_path(run)),
        "attach-session",
        "-t",
        f"autopilot-run-{run.pk}",
    ]

    wait_for(lambda: shows(run, f"[run #{run.pk}]"), message="no prompt on the terminal")
    type_line(run, "pwd; echo hello-from-the-human > greeting.txt; echo done-$((40+2))")
    wait_for(lambda: shows(run, "done-42"), message="the command did not run")
    assert run.worktree_path in screen(run)

    ended = interactive.finish(run, actor=operator)
    assert ended.status == ExecutionRun.Status.SUCCEEDED
    assert not interactive.is_live(run) and not interactive.socket_path(run).exists()
    commit = ended.steps.get(kind=ExecutionStep.Kind.COMMIT)
    assert "greeting.txt" in commit.diff and "+hello-from-the-human" in commit.diff
    assert ended.diff_summary["files"] == [{"path": "greeting.txt", "added": 1, "removed": 0}]
    shown = subprocess.run(
        ["git", "show", f"{ended.branch}:greeting.txt"],
        cwd=task.project.repo_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout == "hello-from-the-human\n"
    base_head = subprocess.run(
        ["git", "rev-parse", task.project.base_branch],
        cwd=task.project.repo_path,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert base_head == ended.base_commit  # the base branch never moved

    with pytest.raises(Conflict, match="already ended"):
        interactive.finish(ended, actor=operator)


def test_recording_is_asciicast_v2_and_replays_the_typed_command(task):
    run = interactive.start(task=task)
    wait_for(lambda: shows(run, f"[run #{run.pk}]"))
    type_line(run, "echo recorded-$((6*7)) sk-ant-api03-" + "x" * 40)
    wait_for(lambda: shows(run, "recorded-42"))
    interactive.finish(run)

    lines = interactive.recording_path(run).read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2 and header["width"] == interactive.WIDTH and header["height"] > 0
    events = [json.loads(line) for line in lines[1:]]
    assert events and all(
        isinstance(e, list) and len(e) == 3 and e[1] == "o" and isinstance(e[2], str) for e in events
    )
    times = [e[0] for e in events]
    assert times == sorted(times) and times[0] >= 0
    replay = "".join(e[2] for e in events)
    assert "echo recorded-$((6*7))" in replay and "recorded-42" in replay
    # raw on disk, redacted when served
    assert "sk-ant-api03-" + "x" * 40 in replay
    served = interactive.recording_events(run)
    assert served[0]["version"] == 2
    served_text = "".join(e[2] for e in served[1:])
    assert "recorded-42" in served_text and "x" * 40 not in served_text
    assert interactive.recording_text(run).startswith('{"version": 2')


def test_nothing_changed_cancels_and_the_shell_exiting_ends_the_session(task):
    run = interactive.start(task=task)
    wait_for(lambda: shows(run, f"[run #{run.pk}]"))
    type_line(run, "exit")
    wait_for(lambda: not interactive.is_live(run), message="the shell did not exit")
    swept = interactive.sweep()
    assert swept["ended"] == [run.pk]
    run.refresh_from_db()
    assert run.status == ExecutionRun.Status.CANCELLED
    assert "the terminal's shell exited" in run.status_reason and "nothing changed" in run.status_reason
    assert not run.steps.filter(kind=ExecutionStep.Kind.COMMIT).exists()


def test_idle_sessions_are_closed_by_the_sweep(task):
    run = interactive.start(task=task)
    wait_for(lambda: shows(run, f"[run #{run.pk}]"))
    type_line(run, "echo work > idle.txt")
    wait_for(lambda: (Path(run.worktree_path) / "idle.txt").exists())
    activity = interactive.last_activity(run)
    assert activity is not None
    with override_settings(AUTOPILOT_INTERACTIVE_IDLE_SECONDS=600):
        assert interactive.sweep(now=activity + 60)["ended"] == []  # not idle long enough
        assert interactive.is_live(run)
        assert interactive.sweep(now=activity + 601)["ended"] == [run.pk]
    run.refresh_from_db()
    assert run.status == ExecutionRun.Status.SUCCEEDED and "600s without activity" in run.status_reason
    assert run.steps.filter(kind=ExecutionStep.Kind.COMMIT).exists()
    assert not interactive.is_live(run)


def test_a_stop_request_from_another_door_is_honoured_by_the_sweep(task):
    run = interactive.start(task=task)
    services.run_stop(run=run, reason="done for today")
    assert interactive.sweep()["ended"] == [run.pk]
    run.refresh_from_db()
    assert run.status == ExecutionRun.Status.CANCELLED and "done for today" in run.status_reason


@override_settings(AUTOPILOT_INTERACTIVE_MAX_PER_PROJECT=2, AUTOPILOT_INTERACTIVE_MAX_PER_USER=1)
def test_limits_per_user_and_per_project():
    project = ProjectFactory()
    alice, bob, carol = UserFactory(), UserFactory(), UserFactory()
    tasks = [TaskFactory(project=project) for _ in range(4)]
    first = interactive.start(task=tasks[0], actor=alice)
    with pytest.raises(CapacityExceeded, match="MAX_PER_USER=1"):
        interactive.start(task=tasks[1], actor=alice)
    interactive.start(task=tasks[1], actor=bob)
    with pytest.raises(CapacityExceeded, match=f"Project '{project.name}' already has 2 open"):
        interactive.start(task=tasks[2], actor=carol)
    assert ExecutionRun.objects.filter(kind=RunKind.INTERACTIVE).count() == 2  # nothing half-made
    interactive.finish(first, actor=alice)
    assert interactive.start(task=tasks[2], actor=alice).status == ExecutionRun.Status.RUNNING


def test_bad_inputs_are_refused_with_a_clear_error(task):
    with pytest.raises(ApplicationError, match="can launch claude_code or codex, not 'native'"):
        interactive.start(task=task, agent="native")
    with override_settings(AUTOPILOT_CODEX_CLI="/nonexistent/codex", OPENAI_API_KEY=""):
        with pytest.raises(ApplicationError, match="cannot run here"):
            interactive.start(task=task, agent="codex")
    assert not ExecutionRun.objects.exists()
    run = interactive.start(task=task)
    with pytest.raises(Conflict, match="already has a queued or active"):
        interactive.start(task=task)
    with pytest.raises(Conflict, match="was a terminal session"):
        services.run_retry(run=run)
    with pytest.raises(Conflict, match="an agent cannot resume it"):
        services.run_resume(run=run, prompt="go on")
    with pytest.raises(Conflict, match="not an interactive session"):
        interactive.finish(scripted(TaskFactory().project, [{"finish": "x"}]))
    assert interactive.is_live(run)


def test_interactive_sessions_are_not_agent_slots(task):
    with override_settings(AUTOPILOT_MAX_CONCURRENT_RUNS=1):
        session = interactive.start(task=task)
        run = scripted(task.project, [{"finish": "ok"}], prompt="agent work")
        claimed = claim(run.pk, "test-worker")
        assert claimed not in (AT_CAPACITY, NOT_CLAIMED)  # the open terminal did not take the one slot
        assert claim(session.pk, "test-worker") == NOT_CLAIMED  # never a worker's


def test_orphan_tmux_servers_are_killed_and_live_ones_kept(task):
    run = interactive.start(task=task)
    other = interactive.start(task=TaskFactory(project=task.project))
    pid = interactive.server_pid(run)
    assert pid and interactive.is_live(run)
    # the run ends behind the terminal's back (e.g. the server was killed and the run reaped)
    ExecutionRun.objects.filter(pk=run.pk).update(status=ExecutionRun.Status.FAILED)
    ExecutionRun.objects.filter(pk=other.pk).delete()
    swept = interactive.sweep()
    assert sorted(swept["orphans_killed"]) == sorted([run.pk, other.pk])
    assert not interactive.is_live(run) and not interactive.socket_path(run).exists()
    wait_for(lambda: subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0)
