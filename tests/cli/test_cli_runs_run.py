"""`autopilot run` as the seeds write it, through the real console script: PROMPT in the current repository,
--project, -m aliases, -b, -o, -s, --issue, --ui, --full-auto; each run's trajectory files; bad arguments."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from runs.models import ExecutionRun
from tests.cli.cli_runs_support import SCRIPT, assert_usage_error, autopilot, json_lines, last_json, ok
from tests.factories import ProjectFactory, TaskFactory
from tests.gitrepo import git

pytestmark = pytest.mark.django_db(transaction=True)


def test_run_prompt_in_the_current_repository_writes_the_trajectory_where_it_says(subprocess_env, tmp_path):
    # given a registered project and a shell inside a subdirectory of its repository
    project = ProjectFactory()
    inside = Path(project.repo_path) / "src" / "pkg"
    inside.mkdir(parents=True)
    env = {**subprocess_env, "AUTOPILOT_TRAJECTORY_DIR": str(tmp_path / "default-dir")}
    # when the seed's first form runs there, with --json
    final = last_json(autopilot(env, "run", "Add tests for the user module", "--json", cwd=inside))
    # then the run is the project's, it succeeded offline, and its trajectory is in the default directory
    run = ExecutionRun.objects.get(pk=final["id"])
    assert run.project_id == project.pk and final["status"] == "succeeded" and final["agent"] == "scripted"
    json_path, rlog_path = Path(final["trajectory"]["json"]), Path(final["trajectory"]["rlog"])
    assert json_path.parent.parent == tmp_path / "default-dir"
    assert re.fullmatch(r"\d{8}", json_path.parent.name)
    assert re.fullmatch(r"\d{6}-add-tests-for-the-user-module\.json", json_path.name)
    assert rlog_path == json_path.with_suffix(".rlog")
    exported = json.loads(json_path.read_text())
    assert exported["schema"] == "autopilot.trajectory" and exported["run"]["id"] == run.pk
    assert [s["kind"] for s in exported["steps"]][-2:] == ["finish", "commit"]
    assert f"run #{run.pk}" in rlog_path.read_text()

    # and in text mode, -o/-s choose the place and the name, and the output says where
    out = tmp_path / "logs"
    text = ok(
        autopilot(env, "run", "-o", out, "-s", "Fix Warnings", "--script", SCRIPT, "again", cwd=inside)
    ).stdout
    written = sorted(out.glob("*/*"))
    assert [p.suffix for p in written] == [".json", ".rlog"] and written[0].stem.endswith("-fix-warnings")
    assert f"trajectory: {written[0]}" in text and str(written[1]) in text


def test_run_with_project_model_alias_and_budget(subprocess_env, tmp_path):
    project = ProjectFactory()
    env = {
        **subprocess_env,
        "AUTOPILOT_TRAJECTORY_DIR": str(tmp_path),
        "AUTOPILOT_MODEL_ALIASES": json.dumps({"quick": "claude-haiku-4-5"}),
    }
    # the seed's `run --model opus --max-budget 10.0 PROMPT`, from outside any repository, with --project
    opus = last_json(
        autopilot(
            env,
            "run",
            "--project",
            project.name,
            "--model",
            "opus",
            "--max-budget",
            "10.0",
            "Implement the new feature",
            "--json",
            cwd=tmp_path,
        )
    )
    assert opus["model"] == "claude-opus-4-6" and Decimal(str(opus["budget_usd"])) == Decimal("10")
    assert opus["project"] == project.pk
    short = last_json(
        autopilot(
            env, "run", "--project", project.slug, "-m", "haiku", "-b", "2", "x", "--json", cwd=tmp_path
        )
    )
    assert short["model"] == "claude-haiku-4-5" and Decimal(str(short["budget_usd"])) == Decimal("2")
    configured = last_json(
        autopilot(env, "run", "--project", project.slug, "-m", "quick", "x", "--json", cwd=tmp_path)
    )
    assert configured["model"] == "claude-haiku-4-5"
    full_name = last_json(
        autopilot(
            env, "run", "--project", project.slug, "-m", "openai:gpt-5-mini", "x", "--json", cwd=tmp_path
        )
    )
    assert full_name["model"] == "openai:gpt-5-mini"


def test_run_issue_is_the_same_as_task_and_the_older_form_still_works(subprocess_env, tmp_path):
    project = ProjectFactory()
    task = TaskFactory(project=project, title="Fix authentication bug")
    env = {**subprocess_env, "AUTOPILOT_TRAJECTORY_DIR": str(tmp_path)}
    by_issue = last_json(autopilot(env, "run", "--issue", task.pk, "--json", cwd=project.repo_path))
    assert by_issue["task"] == task.pk and by_issue["status"] == "succeeded"
    by_task = last_json(autopilot(env, "run", project.slug, "--task", task.pk, "--json", cwd=tmp_path))
    assert by_task["task"] == task.pk
    older = last_json(
        autopilot(env, "run", project.slug, "write a file", "--script", SCRIPT, "--json", cwd=tmp_path)
    )
    assert older["project"] == project.pk
    assert git(project.repo_path, "show", f"{older['branch']}:notes.txt") == "from the cli"


def test_run_ui_prints_the_run_page(subprocess_env, tmp_path):
    project = ProjectFactory()
    env = {
        **subprocess_env,
        "AUTOPILOT_TRAJECTORY_DIR": str(tmp_path),
        "AUTOPILOT_URL": "http://autopilot.test:9000/",
    }
    lines = json_lines(
        autopilot(env, "run", "--project", project.slug, "--ui", "look", "--json", cwd=tmp_path)
    )
    run_id = lines[-1]["id"]
    assert {"run": run_id, "url": f"http://autopilot.test:9000/runs/{run_id}/"} in lines
    text = ok(
        autopilot(env, "run", "--project", project.slug, "--ui", "--background", "later", cwd=tmp_path)
    ).stdout
    queued = ExecutionRun.objects.order_by("-id").first()
    assert f"http://autopilot.test:9000/runs/{queued.pk}/" in text and queued.status == "queued"


def test_full_auto_with_project_processes_the_ready_issues(subprocess_env, tmp_path):
    project = ProjectFactory(autonomy_mode="full_auto")
    task = TaskFactory(
        project=project,
        title="Write the notes",
        status="ready",
        body=json.dumps([{"write": "auto.txt", "content": "auto\n"}, {"finish": "done"}]),
    )
    result = autopilot(
        subprocess_env,
        "run",
        "--full-auto",
        "--project",
        project.name,
        "Process all issues",
        "--until-empty",
        "--json",
        cwd=tmp_path,
    )
    events = json_lines(result)
    assert [e["event"] for e in events if e["event"] != "waiting"][:2] == ["start", "finish"]
    assert events[-1]["event"] == "summary" and events[-1]["succeeded"] == 1
    assert ExecutionRun.objects.get(task=task).status == "succeeded"


BAD = [
    pytest.param(
        ["run", "x", "-b", "abc"], "--max-budget must be a positive amount in USD", id="budget-not-a-number"
    ),
    pytest.param(["run", "x", "-b", "0"], "--max-budget must be a positive amount", id="budget-zero"),
    pytest.param(["run", "--project", "nope", "x"], "No project 'nope'", id="unknown-project"),
    pytest.param(["run", "--issue", "999999", "x"], "No task '999999'", id="unknown-issue"),
    pytest.param(["run", "--project", "{slug}"], "Give a PROMPT, --issue ID, or --full-auto", id="no-prompt"),
    pytest.param(
        ["run", "-o", "{file}", "x"], "--output-dir '{file}' is not a directory", id="output-dir-is-a-file"
    ),
    pytest.param(["run", "x", "--bogus"], "unrecognized arguments: --bogus", id="unknown-option"),
    pytest.param(
        ["run", "x", "--max-turns", "many"], "argument --max-turns: invalid int value", id="bad-int"
    ),
    pytest.param(["run", "--project", "{slug}", "P1", "P2"], "Give the project once", id="project-twice"),
    pytest.param(["run", "x", "--agent", "nope"], "Unknown agent backend 'nope'", id="unknown-agent"),
]


@pytest.mark.parametrize(("args", "expected"), BAD)
def test_run_bad_arguments_exit_2_with_one_line(subprocess_env, tmp_path, args, expected):
    project = ProjectFactory()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    fill = {"slug": project.slug, "file": str(a_file)}
    result = autopilot(subprocess_env, *[a.format(**fill) for a in args], cwd=project.repo_path)
    assert_usage_error(result, expected.format(**fill), runs_before=0)


def test_run_outside_any_project_says_how_to_name_one(subprocess_env, tmp_path):
    ProjectFactory()
    result = autopilot(subprocess_env, "run", "Fix the login bug", cwd=tmp_path)
    assert_usage_error(result, "is not in a registered project or a git repository", runs_before=0)
