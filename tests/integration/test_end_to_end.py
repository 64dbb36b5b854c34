"""End to end: a small DAG (A; B and C depend on A; D depends on B and C) over a real repository with
the scripted backend, driven by the manager (`autopilot run --full-auto` in-process): each task's
script edits what its prerequisites created, the merge queue integrates each one after its tests, and
the run ends with every task done, the integration branch holding all the work with its tests green,
and the base branch untouched. Then the same with review required: tasks wait in review until
approved."""

from __future__ import annotations

import io
import json
import subprocess

import pytest

from autopilot.manager.drive import drive
from autopilot.models import Event, Project
from blueprints.models import Task
from runs import integration, workspace
from runs.models import ExecutionRun, Integration, TaskReview
from tests.gitrepo import git
from tests.integration.conftest import branch_head, show
from tests.manager.conftest import depend, make_task, set_mode

pytestmark = pytest.mark.django_db(transaction=True)

TEST_COMMAND = "python3 -m unittest discover -q -p 'test_*.py'"
CALC = (
    "def add(a, b):\n    return a + b\n\n\n"
    "# -- subtraction --\n\n\n"
    "# -- multiplication --\n\n\n"
    "# -- evaluation --\n"
)


def unit_test(name: str, body: str) -> str:
    return (
        "import unittest\n\nimport calc\n\n\n"
        f"class {name}(unittest.TestCase):\n    def test_it(self):\n        {body}\n"
    )


SCRIPTS = {
    "A": [
        {"write": "calc.py", "content": CALC},
        {"write": "test_add.py", "content": unit_test("Add", "self.assertEqual(calc.add(2, 3), 5)")},
        {"finish": "add"},
    ],
    "B": [
        {
            "edit": "calc.py",
            "old": "# -- subtraction --\n",
            "new": "# -- subtraction --\ndef sub(a, b):\n    return a - b\n",
        },
        {"write": "test_sub.py", "content": unit_test("Sub", "self.assertEqual(calc.sub(5, 3), 2)")},
        {"finish": "sub"},
    ],
    "C": [
        {
            "edit": "calc.py",
            "old": "# -- multiplication --\n",
            "new": "# -- multiplication --\ndef mul(a, b):\n    return a * b\n",
        },
        {"write": "test_mul.py", "content": unit_test("Mul", "self.assertEqual(calc.mul(4, 3), 12)")},
        {"finish": "mul"},
    ],
    "D": [
        {"read": "calc.py"},
        {
            "edit": "calc.py",
            "old": "# -- evaluation --\n",
            "new": "# -- evaluation --\ndef evaluate(a, b, c):\n    return sub(mul(a, b), c)\n",
        },
        {
            "write": "test_evaluate.py",
            "content": unit_test("Evaluate", "self.assertEqual(calc.evaluate(4, 3, 2), 10)"),
        },
        {"finish": "evaluate"},
    ],
}


def dag(project) -> dict[str, Task]:
    tasks = {
        name: make_task(
            project, title=f"task {name}", status=Task.Status.TODO, plan_order=i, body=json.dumps(script)
        )
        for i, (name, script) in enumerate(SCRIPTS.items())
    }
    depend(tasks["B"], tasks["A"])
    depend(tasks["C"], tasks["A"])
    depend(tasks["D"], tasks["B"])
    depend(tasks["D"], tasks["C"])
    return tasks


def assert_everything_integrated(project, tasks, base):
    assert {t: Task.objects.get(pk=task.pk).status for t, task in tasks.items()} == dict.fromkeys(
        tasks, "done"
    )
    head = branch_head(project)
    calc = show(project, head, "calc.py")
    assert all(f"def {fn}(" in calc for fn in ("add", "sub", "mul", "evaluate"))
    # the integration branch's tests pass in a fresh checkout of it
    checkout = project.repo_path + "-check"
    git(project.repo_path, "worktree", "add", "-q", "--detach", checkout, head)
    result = subprocess.run(TEST_COMMAND, shell=True, cwd=checkout, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Ran 4 tests" in result.stderr
    # the base branch is untouched; every task merged once, each merge tested
    assert workspace.base_commit_of(project) == base
    merges = Integration.objects.filter(project=project, status="merged")
    assert sorted(merges.values_list("task_id", flat=True)) == sorted(t.pk for t in tasks.values())
    assert set(merges.values_list("tests_passed", flat=True)) == {True}
    # D started from an integration head that held B's and C's merges
    d_run = ExecutionRun.objects.get(task=tasks["D"], status="succeeded")
    for prerequisite in ("B", "C"):
        merged = Integration.objects.get(task=tasks[prerequisite], status="merged").merge_commit
        assert git(project.repo_path, "merge-base", "--is-ancestor", merged, d_run.base_commit) == ""


def test_full_auto_integrates_a_dag_into_a_green_integration_branch(project):
    set_mode(project, "full_auto", model_matrix={"code": {"agent": "scripted"}})
    Project.objects.filter(pk=project.pk).update(test_command=TEST_COMMAND)
    tasks = dag(project)
    base = workspace.base_commit_of(project)
    summary = drive(project=project, until_empty=True, as_json=True, stdout=io.StringIO())
    assert summary["succeeded"] == 4 and summary["failed"] == 0
    assert_everything_integrated(project, tasks, base)
    assert not TaskReview.objects.exists()  # never parked in review


def test_with_review_required_tasks_wait_in_review_until_approved(project, operator):
    set_mode(project, "full_auto", model_matrix={"code": {"agent": "scripted"}})
    Project.objects.filter(pk=project.pk).update(test_command=TEST_COMMAND, review_required=True)
    tasks = dag(project)
    base = workspace.base_commit_of(project)
    rounds = 0
    while Task.objects.filter(project=project).exclude(status="done").exists():
        rounds += 1
        assert rounds <= 4, "the DAG should need one approval round per level"
        drive(project=project, until_empty=True, as_json=True, stdout=io.StringIO())
        waiting = list(Task.objects.filter(project=project, status=Task.Status.REVIEW))
        assert waiting, "the drive stopped without anything waiting for review"
        assert not Integration.objects.filter(task__in=waiting).exists()  # nothing merged unapproved
        for task in waiting:
            integration.review(task, actor=operator, decision="approved")
        drive(project=project, until_empty=False, as_json=True, stdout=io.StringIO())
    assert rounds == 3  # A, then B and C, then D
    assert TaskReview.objects.filter(decision="approved").count() == 4
    assert_everything_integrated(project, tasks, base)


def test_a_conflict_goes_back_to_the_agent_whose_follow_up_run_gets_it_merged(project):
    # Given two independent tasks that both add to the end of README.md, started at once from the
    # same integration head
    set_mode(project, "full_auto", max_parallel_runs=2, model_matrix={"code": {"agent": "scripted"}})
    Project.objects.filter(pk=project.pk).update(test_command="grep -q first README.md")
    first = make_task(
        project,
        title="first",
        plan_order=1,
        body=json.dumps([{"write": "README.md", "content": "# Demo\nfirst\n"}, {"finish": "first"}]),
    )
    second = make_task(
        project,
        title="second",
        plan_order=2,
        body=json.dumps([{"write": "README.md", "content": "# Demo\nfirst\nsecond\n"}, {"finish": "second"}]),
    )
    # When the manager drives the project to the end
    drive(project=project, until_empty=True, as_json=True, stdout=io.StringIO())
    # Then one of them conflicted (both ran from the same integration head), went back to its agent,
    # whose follow-up run continued its branch brought up to date, and merged
    conflicted = Integration.objects.get(project=project, status="conflict")
    assert conflicted.conflict_files == ["README.md"]
    late = conflicted.task
    runs = list(ExecutionRun.objects.filter(task=late).order_by("pk"))
    assert len(runs) == 2 and runs[1].start_ref == runs[0].branch and runs[1].retry_of_id == runs[0].pk
    assert Event.objects.filter(
        kind="integration.reaction", subject_id=late.pk, data__cause="conflict"
    ).exists()
    assert Event.objects.filter(kind="executionrun.start_conflict", subject_id=runs[1].pk).exists()
    assert set(Task.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True)) == {"done"}
    # and the integration branch holds what the follow-up run wrote (whichever task merged first)
    script = json.loads(Task.objects.get(pk=late.pk).body)
    assert show(project, branch_head(project), "README.md") == script[0]["content"]
