import io
import json
from decimal import Decimal

import pytest

from autopilot.errors import ApplicationError
from autopilot.manager.drive import drive
from blueprints.models import Task
from runs.models import ExecutionRun
from tests.manager.conftest import depend, make_task, set_mode

pytestmark = pytest.mark.django_db(transaction=True)


def lines_of(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_drive_runs_a_chain_of_tasks_to_the_end_with_the_scripted_backend(project):
    # Given a project (mode off: the driver itself is full-auto) whose 3 tasks form a chain,
    # completing tasks when their run succeeds (no test command: nothing to fail)
    set_mode(project, "off", auto_complete_on_tests=True, model_matrix={"code": {"agent": "scripted"}})
    first = make_task(project, title="first", status=Task.Status.TODO, plan_order=1)
    second = make_task(project, title="second", status=Task.Status.TODO, plan_order=2)
    third = make_task(project, title="third", status=Task.Status.TODO, plan_order=3)
    depend(second, first)
    depend(third, second)
    out = io.StringIO()
    # When the terminal driver runs until nothing is left
    summary = drive(project=project, until_empty=True, as_json=True, stdout=out)
    # Then every task ran once, in dependency order, and is done
    events = lines_of(out)
    starts = [e["task"] for e in events if e["event"] == "start"]
    assert starts == [first.pk, second.pk, third.pk]
    assert [e["status"] for e in events if e["event"] == "finish"] == ["succeeded"] * 3
    assert events[-1]["event"] == "summary" and events[-1]["runs"] == 3
    assert summary["runs"] == 3 and summary["succeeded"] == 3 and summary["remaining_ready"] == 0
    assert summary["stopped_because"] == "no ready task remains"
    assert set(Task.objects.filter(project=project).values_list("status", flat=True)) == {"done"}
    assert set(ExecutionRun.objects.filter(project=project).values_list("autonomy_mode", flat=True)) == {"full_auto"}


def test_drive_stops_when_the_budget_is_spent(project):
    # Given scripted runs that each record $0.60 of usage and a $1 budget for the drive
    script = [{"usage": {"model": "claude-sonnet-4-5", "input_tokens": 200000, "output_tokens": 0}}, {"finish": "ok"}]
    set_mode(project, "off", max_parallel_runs=1, model_matrix={"code": {"agent": "scripted"}})
    for i in range(4):
        make_task(project, plan_order=i, body=json.dumps(script))
    out = io.StringIO()
    # When the driver runs until empty with --max-budget 1
    summary = drive(project=project, max_budget=Decimal("1"), until_empty=True, as_json=True, stdout=out)
    # Then it stops once the spend reaches the budget, with ready tasks left
    assert summary["stopped_because"] == "budget spent"
    assert summary["runs"] == 2 and summary["cost_usd"] == Decimal("1.2")
    assert summary["remaining_ready"] >= 2  # never started (the second run hit its capped budget)


def test_drive_refuses_a_paused_project(project):
    set_mode(project, "full_auto", paused=True)
    with pytest.raises(ApplicationError, match="paused"):
        drive(project=project, stdout=io.StringIO())
