"""Trajectories: export (JSON, .rlog), import, replay, analyze and compare."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.utils import timezone

from autopilot.errors import ApplicationError
from runs import services, trajectory
from runs.models import ExecutionRun, ExecutionStep
from runs.worker import execute_run
from tests.factories import ExecutionRunFactory, ExecutionStepFactory, ProjectFactory, UsageRecordFactory

SECRET = "sk-ant-api03-" + "Z" * 40

SCRIPT = [
    {"say": "Starting."},
    {"write": "notes.txt", "content": "one\ntwo\n"},
    {"run": "cat notes.txt"},
    {"edit": "notes.txt", "old": "two", "new": "three"},
    {"finish": "notes written"},
]


def _scripted_run(project, script=SCRIPT, prompt="write notes"):
    run = services.run_create(project=project, prompt=prompt, run_settings={"script": script}, enqueue=False)
    assert execute_run(run.pk) == "succeeded"
    run.refresh_from_db()
    return run


def _comparable(data):
    """The parts of an export that must survive an import unchanged."""
    run = {k: v for k, v in data["run"].items() if k not in {"id", "project"}}
    steps = [{k: v for k, v in s.items()} for s in data["steps"]]
    return run, data["usage"], steps, data["messages"], {k: v for k, v in data["timings"].items()}


@pytest.mark.django_db(transaction=True)
def test_export_import_replay_round_trip(project, operator):
    # Given a finished run with steps, a diff, a command and a human message
    run = _scripted_run(project)
    services.run_message(run=run, body="Thanks!", actor=operator)
    exported = trajectory.export_run(run)

    # When it is imported into another project and exported again
    other = ProjectFactory()
    imported = trajectory.import_run(project=other, raw=json.dumps(exported), actor=operator)
    again = trajectory.export_run(imported)

    # Then everything that describes the run is equal, and it is a new finished run
    assert imported.pk != run.pk and imported.project == other
    assert imported.status == ExecutionRun.Status.SUCCEEDED and imported.is_terminal
    assert _comparable(again) == _comparable(exported)
    # and replaying both yields the same steps in the same order with the same waits
    frames_a = [(f.step["seq"], f.step["kind"], f.wait) for f in trajectory.replay(run)]
    frames_b = [(f.step["seq"], f.step["kind"], f.wait) for f in trajectory.replay(imported)]
    assert frames_a == frames_b
    assert [k for _, k, _ in frames_a] == [
        "llm_turn",
        "write_file",
        "run_terminal",
        "edit_file",
        "finish",
        "commit",
    ]
    assert all(w >= 0 for _, _, w in frames_a)


@pytest.mark.django_db(transaction=True)
def test_export_is_redacted_and_has_no_rollback_bytes(project):
    # Given a run whose prompt, file and output contain a secret
    run = _scripted_run(
        project,
        script=[
            {"write": "key.txt", "content": f"KEY={SECRET}\n"},
            {"run": "cat key.txt"},
            {"finish": "done"},
        ],
        prompt=f"use {SECRET}",
    )
    # When it is exported as JSON and as .rlog
    text = trajectory.export_json(run)
    rlog = trajectory.export_rlog(run)
    # Then the secret appears in neither, and no file bytes are exported
    assert SECRET not in text and SECRET not in rlog
    assert "before_b64" not in text
    assert json.loads(text)["steps"][0]["rollback_path"] == "key.txt"


@pytest.mark.django_db(transaction=True)
def test_rlog_is_readable(project):
    run = _scripted_run(project)
    rlog = trajectory.export_rlog(run)
    assert rlog.startswith(f"# Autopilot run log — run #{run.pk} (scripted (offline demo)")
    assert "=== [0002]" in rlog and "write_file" in rlog
    assert "+one" in rlog and "cat notes.txt" in rlog
    assert "# result:" in rlog and "notes written" in rlog


@pytest.mark.django_db
def test_analysis_numbers_on_a_known_run(project):
    # Given a run with known steps, usage and timings
    start = timezone.now() - dt.timedelta(minutes=5)
    run = ExecutionRunFactory(
        project=project,
        status="failed",
        status_reason="budget exceeded",
        cost_usd=Decimal("0.250000"),
        input_tokens=1000,
        output_tokens=200,
        cache_read_tokens=50,
        turns=4,
        queued_at=start - dt.timedelta(seconds=2),
        started_at=start,
        first_step_at=start + dt.timedelta(seconds=1.5),
        ended_at=start + dt.timedelta(seconds=90),
    )
    diff = "--- /dev/null\n+++ b/app.py\n@@ -0,0 +1,2 @@\n+a\n+b\n"
    steps = [
        ("llm_turn", "assistant", "completed", {}, "", ""),
        ("write_file", "Write", "completed", {"file_path": "/w/app.py"}, diff, "app.py"),
        ("run_terminal", "Bash", "failed", {"command": "pytest"}, "", ""),
        ("run_terminal", "Bash", "completed", {"command": "pytest -x"}, "", ""),
        ("edit_file", "Edit", "skipped", {"file_path": "/w/other.py"}, "", ""),
    ]
    for i, (kind, tool, status, inp, d, path) in enumerate(steps, start=1):
        ExecutionStepFactory(
            run=run,
            seq=i,
            kind=kind,
            tool_name=tool,
            status=status,
            input=inp,
            diff=d,
            output="boom\nmore" if status == "failed" else "ok",
            rollback={"path": path} if path else {},
            started_at=start + dt.timedelta(seconds=i * 10),
        )
    UsageRecordFactory(
        run=run, model="claude-sonnet-4-5", input_tokens=600, output_tokens=100, cost_usd=Decimal("0.15")
    )
    UsageRecordFactory(
        run=run, model="claude-haiku-4-5", input_tokens=400, output_tokens=100, cost_usd=Decimal("0.10")
    )

    # When it is analyzed
    a = trajectory.analyze(run)

    # Then every number matches
    assert a["cost_usd"] == Decimal("0.25")
    assert a["tokens"] == {
        "input_tokens": 1000,
        "output_tokens": 200,
        "cache_read_tokens": 50,
        "cache_write_tokens": 0,
        "total": 1250,
    }
    assert a["turns"] == 4
    assert a["duration_seconds"] == 90.0
    assert a["time_to_first_step_seconds"] == 3.5
    assert a["steps"] == 5
    assert a["steps_by_kind"] == {"edit_file": 1, "llm_turn": 1, "run_terminal": 2, "write_file": 1}
    assert a["tool_use"]["Bash"] == {"count": 2, "completed": 1, "failed": 1, "skipped": 0, "rolled_back": 0}
    assert a["files_touched"] == [{"path": "app.py", "steps": [2], "added": 2, "removed": 0}]
    assert a["commands"] == ["pytest", "pytest -x"]
    assert [(e["seq"], e["status"], e["message"]) for e in a["errors"]] == [
        (3, "failed", "boom"),
        (5, "skipped", "ok"),
    ]
    assert [(m["model"], m["calls"], m["cost_usd"]) for m in a["cost_by_model"]] == [
        ("claude-sonnet-4-5", 1, Decimal("0.15")),
        ("claude-haiku-4-5", 1, Decimal("0.10")),
    ]
    assert a["status"] == "failed" and a["status_reason"] == "budget exceeded"


@pytest.mark.django_db(transaction=True)
def test_compare_aligns_two_runs(project):
    # Given two runs that share a beginning and then differ
    a = _scripted_run(
        project, script=[{"write": "x.txt", "content": "1\n"}, {"run": "cat x.txt"}, {"finish": "a"}]
    )
    b = _scripted_run(
        project,
        script=[
            {"write": "x.txt", "content": "1\n"},
            {"write": "y.txt", "content": "2\n"},
            {"run": "cat x.txt"},
            {"finish": "b"},
        ],
    )
    # When they are compared
    result = trajectory.compare(a, b)
    # Then the common steps line up and the extra one is marked
    matches = [row["match"] for row in result["steps"]]
    assert matches[0] == "same" and "only_b" in matches
    assert result["files"] == {"both": ["x.txt"], "only_a": [], "only_b": ["y.txt"]}
    assert result["delta"]["steps"] == 1
    assert 0 < result["similarity"] < 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema="other"), "Not an Autopilot trajectory"),
        (lambda d: d.update(version=99), "Unsupported trajectory version 99"),
        (lambda d: d["run"].update(backend="gpt-magic"), "Unknown agent backend 'gpt-magic'"),
        (lambda d: d["steps"][0].update(kind="teleport"), "steps[0].kind 'teleport'"),
        (lambda d: d["steps"].append(dict(d["steps"][0])), "appears twice"),
        (lambda d: d["steps"][0].update(input_tokens=-3), "steps[0].input_tokens"),
        (lambda d: d["timings"].update(started_at="yesterday"), "timings.started_at is not an ISO date-time"),
    ],
    ids=["schema", "version", "backend", "step-kind", "duplicate-seq", "negative-tokens", "bad-date"],
)
def test_import_refuses_bad_trajectories_and_writes_nothing(project, mutate, message):
    # Given a valid export, damaged in one place
    source = ExecutionRunFactory(project=project, status="succeeded")
    ExecutionStepFactory(run=source, seq=1, kind="read_file", status="completed")
    data = trajectory.export_run(source)
    mutate(data)
    runs_before, steps_before = ExecutionRun.objects.count(), ExecutionStep.objects.count()
    # When it is imported; then a clear error names the problem, and nothing was written
    with pytest.raises(ApplicationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        trajectory.import_run(project=project, raw=json.dumps(data))
    assert (ExecutionRun.objects.count(), ExecutionStep.objects.count()) == (runs_before, steps_before)


@pytest.mark.django_db
def test_import_refuses_non_json(project):
    with pytest.raises(ApplicationError, match="not valid JSON"):
        trajectory.import_run(project=project, raw="{nope")
