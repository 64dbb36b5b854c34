"""`autopilot resume` (--continue, --trajectory FILE, RUN; -p, -b) and `analyze`/`replay`/`compare` on
trajectory files and run ids, through the real console script; bad arguments."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from runs.models import ExecutionRun
from tests.cli.cli_runs_support import assert_usage_error, autopilot, json_lines, last_json, ok
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db(transaction=True)

FIRST = json.dumps([{"write": "a.txt", "content": "a\n"}, {"finish": "first"}])
MORE = json.dumps([{"write": "b.txt", "content": "b\n"}, {"finish": "more"}])


def _run(env, project, script, out: Path) -> dict:
    return last_json(autopilot(env, "run", "--script", script, "-o", out, "--json", cwd=project.repo_path))


def test_resume_continue_trajectory_and_run(subprocess_env, tmp_path):
    project = ProjectFactory()
    other = ProjectFactory()
    first = _run(subprocess_env, project, FIRST, tmp_path)
    _run(subprocess_env, other, FIRST, tmp_path)  # a newer run elsewhere: --continue stays in this project
    # resume --continue: the project's most recent run, with a prompt and a new budget
    cont = last_json(
        autopilot(
            subprocess_env,
            "resume",
            "--continue",
            "-p",
            MORE,
            "-b",
            "3.5",
            "-o",
            tmp_path,
            "--json",
            cwd=project.repo_path,
        )
    )
    assert cont["resumed_from"] == first["id"] and cont["status"] == "succeeded"
    assert cont["branch"] == first["branch"] and Decimal(str(cont["budget_usd"])) == Decimal("3.5")
    assert Path(cont["trajectory"]["json"]).is_file()
    # resume --trajectory FILE: the run that file records
    from_file = last_json(
        autopilot(
            subprocess_env,
            "resume",
            "--trajectory",
            first["trajectory"]["json"],
            "--max-budget",
            "5.0",
            "--json",
            cwd=tmp_path,
        )
    )
    assert from_file["resumed_from"] == first["id"] and Decimal(str(from_file["budget_usd"])) == Decimal("5")
    # resume RUN with no prompt: a default prompt, the original budget
    by_id = last_json(autopilot(subprocess_env, "resume", cont["id"], "--json", cwd=tmp_path))
    resumed = ExecutionRun.objects.get(pk=by_id["id"])
    assert resumed.resumed_from_id == cont["id"] and resumed.prompt.startswith("Continue where you left off")
    assert resumed.budget_usd == Decimal("3.5")
    # text mode says what resumed what and where the trajectory went
    text = ok(autopilot(subprocess_env, "resume", "--continue", "-p", MORE, cwd=project.repo_path)).stdout
    assert f"resumes #{by_id['id']}" in text and "trajectory: " in text


def test_analyze_replay_compare_take_files_and_run_ids(subprocess_env, tmp_path):
    project = ProjectFactory()
    a = _run(subprocess_env, project, FIRST, tmp_path)
    b = _run(
        subprocess_env,
        project,
        json.dumps(
            [
                {"write": "a.txt", "content": "a\n"},
                {"write": "c.txt", "content": "c"},
                {"finish": "two files"},
            ]
        ),
        tmp_path,
    )
    a_file, b_file = a["trajectory"]["json"], b["trajectory"]["json"]
    from_file = last_json(autopilot(subprocess_env, "analyze", a_file, "--json", cwd=tmp_path))
    from_db = last_json(autopilot(subprocess_env, "analyze", a["id"], "--json", cwd=tmp_path))
    assert from_file["run"] == from_db["run"] == a["id"]
    assert from_file["steps"] == from_db["steps"] == 3 and from_file["tool_use"] == from_db["tool_use"]
    assert [f["path"] for f in from_file["files_touched"]] == ["a.txt"]
    assert "tool use:" in ok(autopilot(subprocess_env, "analyze", a_file, cwd=tmp_path)).stdout

    frames = json_lines(autopilot(subprocess_env, "replay", b_file, "--speed", "0", "--json", cwd=tmp_path))
    assert [f["step"]["kind"] for f in frames] == ["write_file", "write_file", "finish", "commit"]
    text = ok(autopilot(subprocess_env, "replay", f"#{b['id']}", "--speed", "0", cwd=tmp_path)).stdout
    assert text.splitlines()[0] == f"replaying run #{b['id']} (scripted, succeeded)" and "[4/4" in text

    compared = last_json(autopilot(subprocess_env, "compare", a_file, b["id"], "--json", cwd=tmp_path))
    assert compared["a"]["run"] == a["id"] and compared["b"]["run"] == b["id"]
    assert compared["files"] == {"both": ["a.txt"], "only_a": [], "only_b": ["c.txt"]}
    assert compared["delta"]["steps"] == 1
    assert "step similarity" in ok(autopilot(subprocess_env, "compare", a_file, b_file, cwd=tmp_path)).stdout


def test_resume_and_history_bad_arguments(subprocess_env, tmp_path):
    project = ProjectFactory()
    empty = ProjectFactory()
    done = _run(subprocess_env, project, FIRST, tmp_path)
    not_json = tmp_path / "notes.json"
    not_json.write_text("{oops")
    foreign = json.loads(Path(done["trajectory"]["json"]).read_text())
    foreign["run"]["id"] = 999999
    foreign_file = tmp_path / "foreign.json"
    foreign_file.write_text(json.dumps(foreign))
    before = ExecutionRun.objects.count()
    cases = [
        (["resume"], "Say which run to resume: RUN, --continue, or --trajectory FILE"),
        (["resume", done["id"], "--continue"], "Say which run to resume"),
        (
            ["resume", "--continue", "--project", empty.slug],
            f"Project '{empty.name}' has no run to continue yet",
        ),
        (["resume", "--trajectory", tmp_path / "missing.json"], "Cannot read trajectory file"),
        (["resume", "--trajectory", not_json], "Trajectory is not valid JSON"),
        (["resume", "--trajectory", foreign_file], "is not in this Autopilot; import it first"),
        (["resume", "999999"], "No run '999999'"),
        (["resume", done["id"], "-b", "-3"], "--max-budget must be a positive amount"),
        (["resume", done["id"], "now", "-p", "also"], "Give the prompt once"),
        (["analyze", "nope.json"], "No trajectory file or run 'nope.json'"),
        (["analyze", not_json], "Trajectory is not valid JSON"),
        (["analyze", tmp_path], "is not a file"),
        (["replay", done["id"], "--speed", "-1"], "--speed must be 0 or more"),
        (["replay", "424242"], "No run '424242'"),
        (["compare", done["id"]], "the following arguments are required: B"),
        (["compare", done["id"], "nope"], "No trajectory file or run 'nope'"),
    ]
    for args, expected in cases:
        assert_usage_error(autopilot(subprocess_env, *args, cwd=tmp_path), expected, runs_before=before)
