"""`autopilot task …`: every action with --json, errors as a clear message with exit code 2, and one
run of the real console script in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from blueprints.models import Task, TaskDependency
from tests.blueprints.graph_helpers import build_plan
from tests.blueprints.test_graph import SPEC
from tests.factories import TaskFactory

pytestmark = pytest.mark.django_db


def run(*args: str) -> dict:
    out = StringIO()
    call_command("task", *args, "--json", stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_create_prints_the_task_with_its_id(project):
    # given a plan so the task can be linked to a node by anchor
    blueprint = build_plan(project, SPEC)

    # when a task is created
    data = run(
        "create",
        str(project.pk),
        "Write docs",
        "--body",
        "All of them",
        "--priority",
        "4",
        "--complexity",
        "6",
        "--node",
        "authentication",
    )

    # then the JSON is the task, with its id
    task = Task.objects.get(pk=data["id"])
    assert (task.title, task.body, task.priority, task.complexity) == ("Write docs", "All of them", 4, 6)
    assert data["plan_node"] == blueprint.nodes.get(title="Authentication").pk
    assert data["plan_node_anchor"].endswith("/authentication")
    assert data["status"] == "todo" and data["depends_on"] == []


def test_list_show_edit_delete(project):
    a = TaskFactory(project=project, title="Alpha", priority=1)
    b = TaskFactory(project=project, title="Beta", status=Task.Status.DONE)
    TaskDependency.objects.create(task=a, depends_on=b)

    listed = run("list", project.slug)
    assert listed["count"] == 2 and {t["title"] for t in listed["tasks"]} == {"Alpha", "Beta"}
    assert [t["title"] for t in run("list", project.name, "--status", "done")["tasks"]] == ["Beta"]

    shown = run("show", str(project.pk), str(a.pk))
    assert shown["upstream"] == [{"id": b.pk, "title": "Beta", "status": "done", "source": "manual"}]
    assert shown["ready"] is True and shown["depends_on"] == [b.pk]

    edited = run(
        "edit", str(project.pk), str(a.pk), "--title", "Alpha 2", "--priority", "5", "--status", "in_progress"
    )
    assert (edited["title"], edited["priority"], edited["status"]) == ("Alpha 2", 5, "in_progress")

    deleted = run("delete", str(project.pk), str(b.pk))
    assert deleted == {"id": b.pk, "deleted": True}
    assert not Task.objects.filter(pk=b.pk).exists()


def test_ready_next_and_depend(project):
    a = TaskFactory(project=project, title="Alpha", priority=3)
    b = TaskFactory(project=project, title="Beta", priority=1)

    added = run("depend", str(project.pk), str(a.pk), "--on", str(b.pk))
    assert added["task"] == a.pk and added["depends_on"] == b.pk
    assert [t["title"] for t in run("ready", str(project.pk))["tasks"]] == ["Beta"]
    nxt = run("next", str(project.pk))
    assert nxt["task"]["title"] == "Beta" and "only ready task" in nxt["reason"]

    removed = run("depend", str(project.pk), str(a.pk), "--on", str(b.pk), "--remove")
    assert removed["removed"] is True
    assert run("next", str(project.pk))["task"]["title"] == "Alpha"


def test_a_cycle_is_refused_with_the_cycle_named_and_exit_code_2(project):
    a, b = TaskFactory(project=project, title="Alpha"), TaskFactory(project=project, title="Beta")
    run("depend", str(project.pk), str(a.pk), "--on", str(b.pk))

    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("task", "depend", str(project.pk), str(b.pk), "--on", str(a.pk), "--json", stdout=out)
    assert caught.value.returncode == 2
    body = json.loads(out.getvalue())
    assert (
        body["error"]
        == f"This dependency would create a cycle: Beta (#{b.pk}) → Alpha (#{a.pk}) → Beta (#{b.pk})."
    )
    assert body["extra"]["cycle_titles"] == ["Beta", "Alpha", "Beta"]


def test_generate_is_idempotent(project):
    build_plan(project, SPEC)
    first = run("generate", str(project.pk))
    second = run("generate", str(project.pk))
    assert first["tasks_created"] == 8 and first["dependencies_created"] == 11
    assert (second["tasks_created"], second["dependencies_created"]) == (0, 0)
    assert second["tasks_total"] == 8


@pytest.mark.django_db(transaction=True)
def test_the_console_script_in_a_child_process(subprocess_env, project):
    # given the installed `autopilot` console script next to this interpreter
    script = Path(sys.executable).with_name("autopilot")
    if not script.exists():
        pytest.skip("the autopilot console script is not installed in this environment")

    # when a task is created and listed through it
    created = subprocess.run(
        [str(script), "task", "create", str(project.pk), "From a shell", "--priority", "5", "--json"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    task_id = json.loads(created.stdout.strip().splitlines()[-1])["id"]
    missing = subprocess.run(
        [str(script), "task", "show", str(project.pk), "999999"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # then the task exists with the printed id, and a bad id is a clear message with exit code 2
    assert Task.objects.get(pk=task_id).title == "From a shell"
    assert missing.returncode == 2
    assert "No task '999999'" in missing.stderr and "Traceback" not in missing.stderr
