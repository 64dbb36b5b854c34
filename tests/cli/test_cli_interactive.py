"""`autopilot session start --type interactive | attach | stop | takeover | handback` through the real
console script. The user's terminal is a tmux pane of a test tmux server (a real TTY): the CLI execs
`tmux attach` in it; the session itself is driven with `tmux send-keys` / `capture-pane`; detach and
re-attach; permissions (a viewer cannot attach, a non-member does not see the run); bad arguments."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from runs import interactive
from runs.models import ExecutionRun, ExecutionStep, RunKind
from tests.cli.cli_runs_support import AUTOPILOT, assert_usage_error, autopilot, last_json
from tests.factories import MembershipFactory, ProjectFactory, TaskFactory, UserFactory
from tests.runs.helpers import run_in_thread, scripted, status_of, wait_for
from tests.runs.test_interactive import screen, type_line

pytestmark = pytest.mark.django_db(transaction=True)


class Terminal:
    """A user's terminal: a pane of a private tmux server running one command (kept after it exits)."""

    def __init__(self, path: Path, env: dict, command: list[str]):
        self.socket = str(path)
        self.env = {k: v for k, v in env.items() if k != "TMUX"}
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "user", "-x", "160", "-y", "45", "sleep 3600")
        self.tmux("set-option", "-g", "remain-on-exit", "on")
        self.tmux("respawn-pane", "-k", "-t", "user", "env -u TMUX " + shlex.join(command))

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", self.socket, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout

    def text(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "user")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "user", *keys)

    def exited(self) -> bool:
        return self.tmux("display-message", "-p", "-t", "user", "#{pane_dead}").strip() == "1"

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def terminals(tmp_path):
    opened: list[Terminal] = []

    def open_terminal(env, *args) -> Terminal:
        terminal = Terminal(tmp_path / f"user-{len(opened)}.sock", env, [AUTOPILOT, *map(str, args)])
        opened.append(terminal)
        return terminal

    yield open_terminal
    for terminal in opened:
        terminal.close()
    directory = interactive.socket_dir()
    if directory.is_dir():
        for entry in directory.glob("run-*.sock"):
            interactive.kill_server(int(entry.stem.split("-")[1]))


@pytest.fixture
def people(db):
    project = ProjectFactory(name="Terminal")
    task = TaskFactory(project=project, title="Fix the README")
    users = {}
    for role in ("operator", "viewer"):
        users[role] = UserFactory(username=role)
        MembershipFactory(project=project, user=users[role], role=role)
    users["outsider"] = UserFactory(username="outsider")
    return project, task, users


def test_start_attach_detach_reattach_and_stop(subprocess_env, terminals, people, tmp_path):
    project, task, _ = people
    user = terminals(
        subprocess_env, "session", "start", task.pk, "--type", "interactive", "--user", "operator"
    )
    run = wait_for(lambda: ExecutionRun.objects.filter(kind=RunKind.INTERACTIVE, status="running").first())
    assert run.task_id == task.pk and run.created_by.username == "operator"
    # the CLI became `tmux attach`: the user's terminal shows the session's prompt
    wait_for(lambda: f"[run #{run.pk}]" in user.text(), message="the user's terminal did not attach")

    type_line(run, "echo 'attached line' >> README.md; echo typed-$((3*3))")
    wait_for(lambda: "typed-9" in user.text(), message="the attached terminal did not show the output")
    assert "typed-9" in screen(run)

    user.keys("C-b", "d")  # tmux's detach: the CLI's process ends, the session keeps running
    wait_for(user.exited, message="detaching did not end the attach")
    assert interactive.is_live(run) and status_of(run.pk) == "running"

    again = terminals(subprocess_env, "session", "attach", run.pk, "--user", "operator")
    wait_for(lambda: "typed-9" in again.text(), message="re-attaching did not show the session")
    again.keys("-l", "echo second-$((5+5))")
    again.keys("Enter")
    wait_for(lambda: "second-10" in screen(run))

    listed = last_json(
        autopilot(subprocess_env, "session", "list", "--type", "interactive", "--json", cwd=tmp_path)
    )
    assert [(r["id"], r["type"], r["status"]) for r in listed["runs"]] == [(run.pk, "interactive", "running")]

    stopped = last_json(
        autopilot(subprocess_env, "session", "stop", run.pk, "--user", "operator", "--json", cwd=tmp_path)
    )
    assert stopped["status"] == "succeeded" and stopped["type"] == "interactive"
    wait_for(again.exited, message="stopping did not close the attached terminal")
    run.refresh_from_db()
    commit = run.steps.get(kind=ExecutionStep.Kind.COMMIT)
    assert "+attached line" in commit.diff
    cast = "".join(e[2] for e in interactive.recording_events(run)[1:])
    assert "typed-9" in cast and "second-10" in cast


def test_no_attach_json_permissions_and_bad_arguments(subprocess_env, terminals, people, tmp_path):
    project, task, _ = people
    opened = last_json(
        autopilot(
            subprocess_env,
            *("session", "start", task.pk, "--type", "interactive", "--user", "operator", "--json"),
            cwd=tmp_path,
        )
    )
    run_id = opened["id"]
    assert opened["type"] == "interactive" and opened["attach"][-1] == f"autopilot-run-{run_id}"
    assert interactive.is_live(run_id)
    before = ExecutionRun.objects.count()
    other = TaskFactory(project=project)
    cases = [
        (["session", "attach", run_id, "--user", "viewer"], "needs the operator role"),
        (["session", "attach", run_id, "--user", "outsider"], "was not found"),
        (["session", "stop", run_id, "--user", "viewer"], "needs the operator role"),
        (["session", "takeover", run_id, "--user", "operator"], "is an interactive session already"),
        (["session", "handback", run_id, "--user", "operator"], "is not taken over"),
        (["session", "attach", run_id, "--user", "operator"], "Attaching needs a terminal"),
        (
            ["session", "start", other.pk, "--type", "interactive", "--user", "viewer"],
            "needs the operator role",
        ),
        (
            ["session", "start", other.pk, "--type", "interactive", "--agent", "native"],
            "can launch claude_code or codex",
        ),
        (
            ["session", "start", other.pk, "--type", "interactive", "-b", "3"],
            "--max-budget is for autonomous",
        ),
        (
            ["session", "start", task.pk, "--type", "interactive", "--user", "operator"],
            "already has a queued or active",
        ),
        (["session", "takeover", run_id, "--timeout", "-1"], "--timeout must be zero or more"),
    ]
    for args, expected in cases:
        assert_usage_error(autopilot(subprocess_env, *args, cwd=tmp_path), expected, runs_before=before)
    assert interactive.is_live(run_id)
    # a viewer cannot attach from a real terminal either
    viewer = terminals(subprocess_env, "session", "attach", run_id, "--user", "viewer")
    wait_for(viewer.exited)
    # refused: the error line, or (once tmux redrew the dead pane) the usage-error exit status
    wait_for(lambda: "needs the operator role" in viewer.text() or "Pane is dead (status 2," in viewer.text())
    ended = last_json(
        autopilot(subprocess_env, "session", "stop", run_id, "--user", "operator", "--json", cwd=tmp_path)
    )
    assert ended["status"] == "cancelled" and "nothing changed" in ended["status_reason"]
    assert_usage_error(autopilot(subprocess_env, "session", "stop", run_id, cwd=tmp_path), "already ended")


def test_attach_to_an_agent_follows_and_sends_lines_as_messages(subprocess_env, people, tmp_path):
    project, _, _ = people
    run = scripted(
        project,
        [*[{"sleep": 0.1}] * 300, {"finish": "ok"}],
        run_settings={"stuck_idle_turns": 1000},
        max_turns=1000,
    )
    worker = run_in_thread(run.pk)
    wait_for(lambda: status_of(run.pk) == "running")
    attached = subprocess.run(
        [AUTOPILOT, "session", "attach", str(run.pk), "--user", "operator"],
        input="please also update the changelog\n\n",
        env=subprocess_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert attached.returncode == 0, attached.stderr
    assert "message" in attached.stdout and "(detached)" in attached.stdout  # Ctrl-D (end of input)
    wait_for(lambda: ExecutionRun.objects.get(pk=run.pk).steps.filter(kind="message").exists())
    message = ExecutionRun.objects.get(pk=run.pk).steps.get(kind="message")
    assert message.input["body"] == "please also update the changelog"
    refused = autopilot(subprocess_env, "session", "attach", run.pk, "--user", "viewer", cwd=tmp_path)
    assert refused.returncode != 0 and "needs the operator role" in refused.stderr
    autopilot(subprocess_env, "session", "stop", run.pk, cwd=tmp_path)
    worker.join(timeout=60)
    assert status_of(run.pk) == "cancelled"


def test_takeover_and_handback_from_the_cli(subprocess_env, people, tmp_path):
    project, _, _ = people
    run = scripted(
        project,
        [{"write": "a.txt", "content": "agent\n"}, *[{"sleep": 0.1}] * 100, {"finish": "ok"}],
        run_settings={"stuck_idle_turns": 1000},
        max_turns=1000,
    )
    worker = run_in_thread(run.pk)
    wait_for(lambda: status_of(run.pk) == "running" and ExecutionRun.objects.get(pk=run.pk).worktree_path)
    taken = last_json(
        autopilot(subprocess_env, "session", "takeover", run.pk, "--user", "operator", "--json", cwd=tmp_path)
    )
    assert taken["paused"] is True and interactive.is_live(run)
    wait_for(lambda: f"[run #{run.pk}]" in screen(run))
    type_line(run, "echo human > b.txt")
    wait_for(lambda: (Path(ExecutionRun.objects.get(pk=run.pk).worktree_path) / "b.txt").exists())
    back = last_json(
        autopilot(
            subprocess_env,
            "session",
            "handback",
            run.pk,
            "--note",
            "b.txt is yours now",
            "--user",
            "operator",
            "--json",
            cwd=tmp_path,
        )
    )
    assert back["files"] == [{"path": "b.txt", "added": 1, "removed": 0}]
    worker.join(timeout=120)
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert "b.txt is yours now" in run.steps.get(kind="message").input["body"]
