"""`autopilot session list|show|view|start|prompt|logs|cancel|attach` and `autopilot stop`, through the real
console script; a running agent messaged, followed and stopped from other processes; bad arguments."""

from __future__ import annotations

import json
import subprocess

import pytest

from runs.models import ExecutionRun, ExecutionStep
from tests.cli.cli_runs_support import AUTOPILOT, assert_usage_error, autopilot, json_lines, last_json, ok
from tests.factories import MembershipFactory, ProjectFactory, TaskFactory, UserFactory
from tests.runs.helpers import run_now, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = json.dumps([{"say": "started"}, *[{"sleep": 1}] * 300, {"finish": "never reached"}])
# the slow script is all idle turns: lift the stuck-loop and turn limits for the process that runs it
PATIENT = {"AUTOPILOT_STUCK_IDLE_TURNS": "1000", "AUTOPILOT_DEFAULT_MAX_TURNS": "1000"}


def _popen(env, *args, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [AUTOPILOT, *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_session_list_show_view_across_projects(subprocess_env, tmp_path):
    alpha, beta, hidden = (
        ProjectFactory(name="Alpha"),
        ProjectFactory(name="Beta"),
        ProjectFactory(name="Hidden"),
    )
    done_a = run_now(alpha, [{"write": "a.txt", "content": "a"}, {"finish": "ok"}])
    failed_b = run_now(beta, [{"fail": "could not"}])
    run_now(hidden, [{"finish": "ok"}])
    # a user who is a member of Alpha and Beta only
    member = UserFactory(username="dev")
    MembershipFactory(project=alpha, user=member, role="viewer")
    MembershipFactory(project=beta, user=member, role="viewer")

    listed = last_json(
        autopilot(subprocess_env, "session", "list", "--user", "dev", "--format", "json", cwd=tmp_path)
    )
    assert [r["id"] for r in listed["runs"]] == [failed_b.pk, done_a.pk]
    assert {r["project_name"] for r in listed["runs"]} == {"Alpha", "Beta"}
    assert all(r["type"] == "autonomous" for r in listed["runs"])
    table = ok(
        autopilot(subprocess_env, "session", "list", "--user", "dev", cwd=tmp_path)
    ).stdout.splitlines()
    assert table[0].split()[:7] == ["ID", "PROJECT", "TYPE", "STATUS", "STARTED", "DURATION", "COST"]
    assert table[1].split()[:4] == [str(failed_b.pk), "Beta", "autonomous", "failed"] and len(table) == 3

    only_alpha = last_json(
        autopilot(subprocess_env, "session", "list", "--project", "Alpha", "--json", cwd=tmp_path)
    )
    assert [r["id"] for r in only_alpha["runs"]] == [done_a.pk]
    older_form = last_json(autopilot(subprocess_env, "session", "list", alpha.slug, "--json", cwd=tmp_path))
    assert [r["id"] for r in older_form["runs"]] == [done_a.pk]
    here = last_json(
        autopilot(subprocess_env, "session", "list", "--status", "failed", "--json", cwd=beta.repo_path)
    )
    assert [r["id"] for r in here["runs"]] == [failed_b.pk]
    none = last_json(
        autopilot(subprocess_env, "session", "list", "--type", "interactive", "--json", cwd=tmp_path)
    )
    assert none == {"runs": []}
    assert (
        ok(autopilot(subprocess_env, "session", "list", "--status", "active", cwd=tmp_path)).stdout.strip()
        == "no sessions"
    )

    shown = last_json(autopilot(subprocess_env, "session", "show", done_a.pk, "--json", cwd=tmp_path))
    viewed = last_json(autopilot(subprocess_env, "session", "view", done_a.pk, "--json", cwd=tmp_path))
    assert shown == viewed and [s["kind"] for s in shown["steps"]] == ["write_file", "finish", "commit"]
    logs = ok(autopilot(subprocess_env, "session", "logs", done_a.pk, cwd=tmp_path)).stdout
    assert "write_file" in logs and "commit" in logs


def test_session_start_queue_priority_and_cancel(subprocess_env, tmp_path):
    project = ProjectFactory()
    task = TaskFactory(project=project, title="Fix authentication bug")
    # foreground: the session runs here to its end (offline scripted backend), trajectory written
    env = {**subprocess_env, "AUTOPILOT_TRAJECTORY_DIR": str(tmp_path / "traj")}
    final = last_json(
        autopilot(env, "session", "start", task.pk, "--type", "autonomous", "--json", cwd=tmp_path)
    )
    assert final["task"] == task.pk and final["status"] == "succeeded"
    assert final["trajectory"]["json"].startswith(str(tmp_path / "traj"))
    # --queue: handed to the workers' queue at the given priority, returns at once
    queued = last_json(
        autopilot(env, "session", "start", task.pk, "--priority", "high", "--queue", "--json", cwd=tmp_path)
    )
    run = ExecutionRun.objects.get(pk=queued["id"])
    assert run.status == "queued" and run.priority == 3 and run.task_id == task.pk
    again = autopilot(env, "session", "start", task.pk, "--queue", cwd=tmp_path)
    assert_usage_error(again, f"Task #{task.pk} already has a queued or active code run")
    cancelled = last_json(autopilot(env, "session", "cancel", run.pk, "--json", cwd=tmp_path))
    assert cancelled["status"] == "cancelled"
    numeric = last_json(
        autopilot(env, "session", "start", task.pk, "--priority", "5", "--queue", "--json", cwd=tmp_path)
    )
    assert ExecutionRun.objects.get(pk=numeric["id"]).priority == 5


def test_prompt_follow_logs_and_stop_a_running_session(subprocess_env, tmp_path):
    # given a session running in the foreground of another terminal
    project = ProjectFactory()
    runner = _popen(
        {**subprocess_env, **PATIENT},
        "run",
        "--project",
        project.slug,
        "--script",
        SLOW,
        "-o",
        tmp_path,
        "--json",
        cwd=tmp_path,
    )
    follower = None
    try:
        step = wait_for(lambda: ExecutionStep.objects.filter(run__project=project, seq=1).first(), timeout=90)
        run_id = step.run_id
        # when a third terminal follows its logs and a fourth sends the agent a message
        follower = _popen(subprocess_env, "session", "logs", run_id, "--follow", cwd=tmp_path)
        sent = last_json(
            autopilot(
                subprocess_env, "session", "prompt", run_id, "please also add docs", "--json", cwd=tmp_path
            )
        )
        assert sent["run"] == run_id and sent["delivered_at"] is None
        wait_for(
            lambda: ExecutionStep.objects.filter(
                run_id=run_id, output__contains="please also add docs"
            ).exists(),
            timeout=120,
        )
        # and `stop` asks it to stop gracefully
        stop = last_json(autopilot(subprocess_env, "stop", run_id, "--json", cwd=tmp_path))
        assert stop["id"] == run_id
        out, err = runner.communicate(timeout=90)
        logs, _ = follower.communicate(timeout=90)
    finally:
        runner.kill()
        if follower is not None:
            follower.kill()
    # then the run ended stopped (cancelled, with who stopped it), its trajectory was still written,
    # and the follower streamed its steps live and ended with its status
    run = ExecutionRun.objects.get(pk=run_id)
    assert runner.returncode == 1 and run.status == "cancelled" and run.status_reason.startswith("stopped by")
    assert json.loads(out.strip().splitlines()[-1])["trajectory"]["rlog"].endswith(".rlog")
    assert "Noted: please also add docs" in logs
    assert logs.strip().splitlines()[-1] == f"run #{run_id} cancelled: {run.status_reason}"


def test_stop_force(subprocess_env, tmp_path):
    project = ProjectFactory()
    runner = _popen(
        {**subprocess_env, **PATIENT},
        "run",
        "--project",
        project.slug,
        "--script",
        SLOW,
        "-o",
        tmp_path,
        cwd=tmp_path,
    )
    try:
        run_id = wait_for(
            lambda: ExecutionStep.objects.filter(run__project=project, seq=1).first(), timeout=90
        ).run_id
        ok(autopilot(subprocess_env, "stop", run_id, "--force", "--reason", "enough", cwd=tmp_path))
        runner.communicate(timeout=90)
    finally:
        runner.kill()
    run = ExecutionRun.objects.get(pk=run_id)
    assert run.status == "cancelled" and run.stop_force and run.status_reason.endswith(": enough")


def test_session_and_stop_bad_arguments(subprocess_env, tmp_path):
    project = ProjectFactory()
    task = TaskFactory(project=project)
    done = run_now(project, [{"finish": "ok"}])
    before = ExecutionRun.objects.count()
    cases = [
        (["session"], "the following arguments are required: ACTION"),
        (["session", "fly"], "invalid choice: 'fly'"),
        (["session", "list", "--status", "bogus"], "--status: unknown status 'bogus'"),
        (["session", "list", "--type", "robot"], "argument --type: invalid choice: 'robot'"),
        (["session", "list", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["session", "list", "--project", "nope"], "No project 'nope'"),
        (["session", "show", "999999"], "No run '999999'"),
        (["session", "view", "abc"], "No run 'abc'"),
        (
            ["session", "start", task.pk, "--type", "interactive", "--queue"],
            "--queue is for autonomous sessions",
        ),
        (["session", "start", "999999"], "No task '999999'"),
        (
            ["session", "start", task.pk, "--priority", "9"],
            "--priority must be 0–5 or one of lowest, low, medium",
        ),
        (["session", "start", task.pk, "-b", "free"], "--max-budget must be a positive amount"),
        (["session", "prompt", done.pk, "  "], "A message needs a body"),
        (["session", "prompt", done.pk], "the following arguments are required: TEXT"),
        (["session", "logs", "999999"], "No run '999999'"),
        (["session", "cancel", done.pk], f"Run #{done.pk} already ended (succeeded)"),
        (["session", "attach", "999999"], "No run '999999'"),
        (["stop", "999999"], "No run '999999'"),
        (["stop", done.pk], "already ended"),
        (["stop"], "the following arguments are required: RUN"),
    ]
    for args, expected in cases:
        assert_usage_error(autopilot(subprocess_env, *args, cwd=tmp_path), expected, runs_before=before)
    assert (
        json_lines(autopilot(subprocess_env, "session", "show", done.pk, "--json", cwd=tmp_path))[0]["id"]
        == done.pk
    )
