"""The run CLI as a real process: `autopilot run` (foreground, --json, --background), session, status,
approve/reject/message/stop/resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runs.models import ExecutionRun, ExecutionStep
from tests.factories import ProjectFactory, UserFactory
from tests.gitrepo import git
from tests.runs.helpers import run_now, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(env, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_run_foreground_streams_steps_and_ends_with_the_run_as_json(subprocess_env):
    project = ProjectFactory(autonomy_mode="full_auto")
    script = json.dumps(
        [{"write": "cli.txt", "content": "from the cli\n"}, {"run": "cat cli.txt"}, {"finish": "done"}]
    )
    result = cli(
        subprocess_env,
        "run",
        project.slug,
        "write a file",
        "--agent",
        "scripted",
        "--script",
        script,
        "--json",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    steps = [json.loads(line)["step"] for line in lines[:-1]]
    final = json.loads(lines[-1])
    assert [s["kind"] for s in steps] == ["write_file", "run_terminal", "finish", "commit"]
    assert final["status"] == "succeeded" and final["agent_label"] == "scripted (offline demo)"
    assert set(final) >= {
        "id",
        "task",
        "status",
        "branch",
        "base_commit",
        "head_commit",
        "cost_usd",
        "turns",
        "started_at",
        "ended_at",
        "steps",
    }
    assert final["steps"][0] == {
        "id": final["steps"][0]["id"],
        "seq": 1,
        "kind": "write_file",
        "tool": "write_file",
        "input": {"path": "cli.txt", "content": "from the cli\n"},
        "status": "completed",
        "risky": False,
    }
    assert git(project.repo_path, "show", f"{final['branch']}:cli.txt") == "from the cli"


def test_run_failure_exits_non_zero(subprocess_env):
    project = ProjectFactory()
    result = cli(subprocess_env, "run", project.slug, "--script", '[{"fail": "could not do it"}]', "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout.strip().splitlines()[-1])["status"] == "failed"
    assert "could not do it" in result.stderr


def test_bad_input_is_a_clear_error_with_exit_code_2(subprocess_env):
    project = ProjectFactory()
    result = cli(subprocess_env, "run", project.slug, "x", "--agent", "nope", "--json")
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"].startswith("Unknown agent backend 'nope'")
    assert ExecutionRun.objects.count() == 0


def test_background_then_approve_and_reject_from_other_processes(subprocess_env):
    # given a semi_auto project and a foreground run in one process that hits two risky steps
    project = ProjectFactory(autonomy_mode="semi_auto")
    UserFactory(username="boss", is_superuser=True, is_staff=True)
    script = json.dumps([{"run": "curl http://a"}, {"run": "wget http://b"}, {"finish": "ok"}])
    runner = subprocess.Popen(
        [sys.executable, "manage.py", "run", project.slug, "--script", script, "--json"],
        cwd=ROOT,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        step = wait_for(lambda: ExecutionStep.objects.filter(status="needs_approval").first(), timeout=60)
        run_id = step.run_id
        # when another process approves the first (as boss) and rejects the second
        approved = cli(subprocess_env, "approve", str(run_id), "--note", "ok", "--user", "boss", "--json")
        assert approved.returncode == 0, approved.stderr
        assert json.loads(approved.stdout)["decided_by"] == "boss"
        wait_for(
            lambda: ExecutionStep.objects.filter(run_id=run_id, seq=2, status="needs_approval").exists(),
            timeout=60,
        )
        status = json.loads(cli(subprocess_env, "status", str(run_id), "--json").stdout)
        assert status["status"] == "waiting_approval"
        rejected = cli(subprocess_env, "reject", str(run_id), "--step", "2", "-m", "not that", "--json")
        assert rejected.returncode == 0 and json.loads(rejected.stdout)["status"] == "skipped"
        out, _ = runner.communicate(timeout=60)
    finally:
        runner.kill()
    # then the foreground run finished and its JSON shows the decisions
    final = json.loads(out.strip().splitlines()[-1])
    assert final["status"] == "succeeded"
    assert [s["status"] for s in final["steps"][:2]] == [
        "failed",
        "skipped",
    ]  # approved: curl ran (no network here)


def test_session_list_show_message_stop_resume(subprocess_env):
    project = ProjectFactory()
    done = run_now(project, [{"write": "a.txt", "content": "a"}, {"finish": "ok"}])
    listing = json.loads(cli(subprocess_env, "session", "list", project.slug, "--json").stdout)
    assert [r["id"] for r in listing["runs"]] == [done.pk]
    shown = json.loads(cli(subprocess_env, "session", "show", str(done.pk), "--json").stdout)
    assert shown["head_commit"] == done.head_commit and [s["kind"] for s in shown["steps"]] == [
        "write_file",
        "finish",
        "commit",
    ]
    assert cli(subprocess_env, "message", str(done.pk), "thanks", "--json").returncode == 0
    stop = cli(subprocess_env, "stop", str(done.pk), "--json")
    assert stop.returncode == 2 and "already ended" in json.loads(stop.stdout)["error"]

    resumed = cli(
        subprocess_env,
        "resume",
        str(done.pk),
        '[{"write": "b.txt", "content": "b"}, {"finish": "more"}]',
        "--json",
    )
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert (
        final["resumed_from"] == done.pk and final["branch"] == done.branch and final["status"] == "succeeded"
    )

    queued = json.loads(cli(subprocess_env, "run", project.slug, "later", "--background", "--json").stdout)
    assert queued["status"] == "queued"
    stopped = json.loads(cli(subprocess_env, "stop", str(queued["id"]), "--json").stdout)
    assert stopped["status"] == "cancelled"


def test_full_auto_delegates_to_the_manager(subprocess_env):
    # given a paused project: the manager's driver refuses it, which shows the CLI handed over to it
    project = ProjectFactory(autonomy_mode="full_auto", paused=True)
    result = cli(subprocess_env, "run", project.slug, "--full-auto", "--json")
    assert result.returncode == 2
    assert (
        json.loads(result.stdout)["error"]
        == f"Project '{project.name}' is paused; resume it before driving it."
    )
