import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from autopilot.manager.models import Proposal
from runs.models import ExecutionRun
from tests.factories import ExecutionRunFactory, UserFactory
from tests.manager.conftest import make_task, set_mode

pytestmark = pytest.mark.django_db


def cli(*args) -> dict:
    out = io.StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def admin(db):
    return UserFactory(username="root", is_superuser=True, is_staff=True)


def test_tick_and_plan_from_the_command_line(project):
    set_mode(project, "full_auto", max_parallel_runs=1)
    first = make_task(project, priority=4)
    second = make_task(project, priority=1)
    plan = cli("manager", "plan", project.slug)
    assert [r["task"] for r in plan["would_start"]] == [first.pk]
    assert plan["not_started"][0]["task"] == second.pk
    report = cli("tick", str(project.pk))
    assert [s["task"] for s in report["started"]] == [first.pk]
    assert cli("tick")["started"] == []


def test_proposals_from_the_command_line(project):
    set_mode(project, "suggest")
    task = make_task(project)
    cli("tick", project.name)
    listed = cli("manager", "proposals", project.slug)["proposals"]
    assert [p["task"] for p in listed] == [task.pk]
    accepted = cli("manager", "proposals", project.slug, "--accept", str(listed[0]["id"]))
    assert accepted["status"] == "accepted"
    assert ExecutionRun.objects.get(pk=accepted["run"]).task_id == task.pk
    assert Proposal.objects.get().status == "accepted"


def test_metrics_and_refine_from_the_command_line(project):
    make_task(project)
    assert cli("manager", "metrics", project.slug)["project"] == project.pk
    assert cli("manager", "refine", project.slug)["examined"] == 1


def test_queue_status_and_clear(project):
    run = ExecutionRunFactory(project=project, status="queued")
    status = cli("queue", "status")
    assert status["runs"][0]["run"] == run.pk and status["runs"][0]["position"] == 1
    cleared = cli("queue", "clear")
    assert cleared["cancelled"] == [run.pk]
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_a_viewer_cannot_tick(project, viewer):
    with pytest.raises(CommandError):
        call_command("tick", str(project.pk), "--user", viewer.username, stdout=io.StringIO())


def test_unknown_project_is_a_clear_error():
    with pytest.raises(CommandError, match="No project 'nope'"):
        call_command("manager", "plan", "nope", stdout=io.StringIO())
