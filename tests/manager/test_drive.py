import io
import json
from decimal import Decimal

import pytest

from autopilot.errors import ApplicationError
from autopilot.manager.drive import drive
from blueprints.models import Task
from runs import workspace
from runs.models import ExecutionRun, Integration
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
    assert set(ExecutionRun.objects.filter(project=project).values_list("autonomy_mode", flat=True)) == {
        "full_auto"
    }


def test_drive_stops_when_the_budget_is_spent(project):
    # Given scripted runs that each record $0.60 of usage and a $1 budget for the drive
    script = [
        {"usage": {"model": "claude-sonnet-4-5", "input_tokens": 200000, "output_tokens": 0}},
        {"finish": "ok"},
    ]
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


def test_with_a_test_command_the_merge_queue_tests_decide_completion(project):
    # Given a project that does not wait for review, with a passing test command, and two chained tasks
    set_mode(project, "off", auto_complete_on_tests=True, model_matrix={"code": {"agent": "scripted"}})
    project.test_command = "true"
    project.save(update_fields=["test_command"])
    first = make_task(project, status=Task.Status.TODO, plan_order=1)
    second = make_task(project, status=Task.Status.TODO, plan_order=2)
    depend(second, first)
    out = io.StringIO()
    # When the driver runs until empty
    summary = drive(project=project, until_empty=True, as_json=True, stdout=out)
    # Then each task had one code run, was merged after the integration tests passed, and is done
    runs = list(
        ExecutionRun.objects.filter(project=project).order_by("pk").values_list("task_id", "role", "status")
    )
    assert runs == [(first.pk, "code", "succeeded"), (second.pk, "code", "succeeded")]
    merges = list(
        Integration.objects.filter(project=project)
        .order_by("pk")
        .values_list("task_id", "status", "tests_passed")
    )
    assert merges == [(first.pk, "merged", True), (second.pk, "merged", True)]
    # and the second run started from the integration branch holding the first task's merge
    second_run = ExecutionRun.objects.get(task=second)
    assert second_run.start_ref == "autopilot/integration"
    assert second_run.base_commit == Integration.objects.get(task=first).merge_commit
    assert set(Task.objects.filter(project=project).values_list("status", flat=True)) == {"done"}
    assert summary["stopped_because"] == "no ready task remains"


def test_failing_integration_tests_send_the_task_back_for_rework_until_attempts_run_out(project, settings):
    settings.AUTOPILOT_RETRY_BACKOFF_SECONDS = 1
    set_mode(
        project,
        "off",
        auto_complete_on_tests=True,
        max_attempts=2,
        model_matrix={"code": {"agent": "scripted"}},
    )
    project.test_command = "false"
    project.save(update_fields=["test_command"])
    task = make_task(project)
    drive(project=project, until_empty=True, as_json=True, stdout=io.StringIO())
    task.refresh_from_db()
    roles = list(ExecutionRun.objects.filter(task=task).order_by("pk").values_list("role", "status"))
    assert roles == [("code", "succeeded"), ("code", "succeeded")]
    assert (
        list(Integration.objects.filter(task=task).values_list("status", flat=True)) == ["tests_failed"] * 2
    )
    assert task.status == Task.Status.BLOCKED and task.attempts == 2 and task.rework_count == 1
    # the integration branch never moved: it is still the base branch's commit
    base = workspace.base_commit_of(project)
    assert workspace.ref_commit(project.repo_path, "autopilot/integration") == base


def test_autopilot_run_full_auto_command_drives_the_project(project):
    # Given a project with two independent ready tasks, done when their run succeeds
    set_mode(project, "off", auto_complete_on_tests=True, model_matrix={"code": {"agent": "scripted"}})
    for name in ("a.txt", "b.txt"):  # each writes its own file (the demo script's notes would conflict)
        make_task(project, body=json.dumps([{"write": name, "content": name}, {"finish": "ok"}]))
    from tests.factories import UserFactory

    UserFactory(username="root", is_superuser=True)
    out = io.StringIO()
    # When `autopilot run PROJECT --full-auto --until-empty --json` runs
    from django.core.management import call_command

    call_command("run", project.slug, "--full-auto", "--until-empty", "--json", stdout=out)
    # Then it printed JSON lines for each start and finish and a summary last
    events = lines_of(out)
    assert [e["event"] for e in events].count("start") == 2
    assert events[-1]["event"] == "summary" and events[-1]["succeeded"] == 2
