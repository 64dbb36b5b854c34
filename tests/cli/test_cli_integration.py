"""`autopilot integration status|list|show|retry|skip|resolve`, `autopilot task review|pr-body`,
`autopilot project edit --integration-*` and `autopilot run --from` through the real console script,
over a real merge queue on real git (issue #11): each with --json, each refusal one clear line (exit 2)."""

from __future__ import annotations

import pytest

from blueprints.models import Task
from runs.models import ExecutionRun, Integration, TaskReview
from tests.cli.shell import Shell
from tests.gitrepo import git
from tests.runs.integration_doors import build_queue

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def q():
    return build_queue()


@pytest.fixture
def sh(subprocess_env, tmp_path) -> Shell:
    (tmp_path / "elsewhere").mkdir()
    return Shell(subprocess_env, tmp_path / "elsewhere")


def user(q, who: str) -> tuple[str, str]:
    return ("--user", q.users[who].username)


def test_status_list_show(sh, q):
    p = str(q.project.pk)
    data = sh.json("integration", "status", p, *user(q, "viewer"))
    assert [(i["id"], i["position"]) for i in data["queue"]] == [(q.queued.pk, 1)]
    assert [i["id"] for i in data["waiting"]] == [q.conflict.pk]
    assert [i["id"] for i in data["recent"]] == [q.merged.pk]
    assert data["head"]["ahead"] >= 1 and data["head"]["diff_stat"]["files"][0]["path"] == "calc.py"
    text = sh("integration", "status", p, *user(q, "viewer")).stdout
    assert "queue (1):" in text and f"1. #{q.queued.pk}  queued" in text
    assert "conflicts: calc.py" in text and "recent merges (1):" in text
    assert "commit(s) ahead of main" in text
    listed = sh.json("integration", "list", p, "--status", "merged,conflict", *user(q, "viewer"))
    assert listed["count"] == 2 and {i["status"] for i in listed["results"]} == {"merged", "conflict"}
    table = sh("integration", "list", p, *user(q, "viewer")).stdout
    assert table.splitlines()[0].split()[:3] == ["ID", "STATUS", "TASK"]
    shown = sh.json("integration", "show", p, str(q.conflict.pk), *user(q, "viewer"))
    assert shown["conflict_files"] == ["calc.py"]
    assert "conflicting files: calc.py" in sh("integration", "show", p, str(q.conflict.pk)).stdout


def test_refusals_are_one_line(sh, q):
    p = str(q.project.pk)
    sh.fails("integration", "list", p, "--status", "bogus", says="Unknown status bogus")
    sh.fails("integration", "show", p, "999999", says="No integration #999999")
    sh.fails("integration", "retry", p, str(q.conflict.pk), *user(q, "viewer"), says="operator role")
    sh.fails("integration", "status", p, *user(q, "non-member"), says=f"No project '{p}'")
    sh.fails(
        "integration",
        "retry",
        p,
        str(q.merged.pk),
        *user(q, "operator"),
        says="only a conflict or failed tests",
    )
    sh.fails("integration", "skip", p, str(q.queued.pk), *user(q, "operator"), says="needs a reason")
    assert Integration.objects.get(pk=q.conflict.pk).status == "conflict"
    assert Integration.objects.get(pk=q.queued.pk).status == "queued"


def test_resolve_retry_skip(sh, q):
    p = str(q.project.pk)
    resolved = sh.json("integration", "resolve", p, str(q.conflict.pk), *user(q, "operator"))
    assert resolved["status"] == "queued" and resolved["attempt"] == 2
    skipped = sh.json(
        "integration", "skip", p, str(q.queued.pk), "--reason", "superseded", *user(q, "operator")
    )
    assert skipped["status"] == "skipped"
    assert Task.objects.get(pk=q.queued.task_id).status == "blocked"


def test_task_review_and_pr_body(sh, q):
    p, t = str(q.project.pk), str(q.review_task.pk)
    sh.fails("task", "review", p, t, "--request-changes", "  ", *user(q, "operator"), says="needs a comment")
    sh.fails(
        "task",
        "review",
        p,
        t,
        "--approve",
        "--cancel",
        *user(q, "operator"),
        says="--cancel goes with --reject",
    )
    sh.fails("task", "review", p, t, "--approve", *user(q, "viewer"), says="operator role")
    none = sh("task", "review", p, t, *user(q, "operator"), ok=False)
    assert none.returncode == 2 and "one of the arguments" in none.stderr and "Traceback" not in none.stderr
    assert not TaskReview.objects.exists()
    done = sh.json(
        "task", "review", p, t, "--reject", "--cancel", "--comment", "not wanted", *user(q, "operator")
    )
    assert (done["decision"], done["task_status"], done["comment"]) == ("rejected", "cancelled", "not wanted")
    sh.fails("task", "review", p, t, "--approve", *user(q, "operator"), says="only a task in review")
    body = sh("task", "pr-body", p, str(q.merged.task_id), *user(q, "viewer")).stdout
    assert body.startswith("# Add\n") and "## Tests" in body and "`calc.py`" in body
    assert sh.json("task", "pr-body", p, str(q.merged.task_id))["markdown"] == body


def test_project_edit_and_show_integration_settings(sh, q):
    p = str(q.project.pk)
    sh.fails("project", "edit", p, "--integration-branch", "a..b", says="not a valid git branch name")
    sh.fails(
        "project",
        "edit",
        p,
        "--integration-remote",
        "https://u:pw12345678@h.example/r.git",
        says="environment",
    )
    sh.fails(
        "project",
        "edit",
        p,
        "--merge-strategy",
        "squash",
        *user(q, "operator"),
        says="Changing merge_strategy",
    )
    data = sh.json(
        "project",
        "edit",
        p,
        "--integration-branch",
        "team/merged",
        "--merge-strategy",
        "rebase",
        "--review-required",
        "--conflict-policy",
        "agent",
        "--push-task-branches",
    )
    assert (data["integration_branch"], data["merge_strategy"], data["review_required"]) == (
        "team/merged",
        "rebase",
        True,
    )
    assert data["conflict_policy"] == "agent" and data["push_task_branches"] is True
    assert sh.json("project", "edit", p, "--review-default")["review_required"] is None
    text = sh("project", "show", p).stdout
    assert "integrate: into team/merged; rebase; review required (by mode)" in text


def test_run_from_a_branch(sh, q):
    p = str(q.project.pk)
    git(q.project.repo_path, "branch", "feature/start")
    data = sh.json(
        "run", "--project", p, "hello", "--agent", "scripted", "--from", "feature/start", "--background"
    )
    run = ExecutionRun.objects.get(pk=data["id"])
    assert run.settings["from_ref"] == "feature/start"
    sh.fails(
        "run",
        "--project",
        p,
        "hello",
        "--agent",
        "scripted",
        "--from",
        "nope",
        "--background",
        says="from_ref",
    )
    sh.fails("run", p, "--full-auto", "--from", "feature/start", says="does not go with --full-auto")
