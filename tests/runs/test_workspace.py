"""Worktrees: monorepo subdirectory, setup script, parallel creation, retention, test worker."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from runs import services, workspace
from runs.backends.test_worker import parse_test_output
from runs.models import ExecutionRun
from runs.worker import execute_run
from tests.factories import ProjectFactory, TaskFactory
from tests.gitrepo import git, make_repo
from tests.runs.helpers import run_now, scripted

pytestmark = pytest.mark.django_db(transaction=True)


def test_monorepo_subdirectory_is_the_cwd_and_the_confinement_root(tmp_path):
    repo = make_repo(
        tmp_path / "mono",
        {"README.md": "root\n", "services/api/app.py": "x = 1\n", "web/index.html": "<p>\n"},
    )
    project = ProjectFactory(repo_path=str(repo), subdirectory="services/api", autonomy_mode="full_auto")
    run = run_now(
        project,
        [
            {"write": "new.py", "content": "y = 2\n"},
            {"read": "../../web/index.html"},
            {"list": "."},
            {"finish": "ok"},
        ],
    )
    assert run.status == "succeeded"
    assert git(repo, "show", f"{run.branch}:services/api/new.py") == "y = 2"
    assert run.steps.get(kind="read_file").status == "skipped"
    assert run.steps.get(kind="list_dir").output.split() == ["app.py", "new.py"]
    assert run.diff_summary["files"] == [{"path": "services/api/new.py", "added": 1, "removed": 0}]


def test_task_runs_get_a_task_branch_and_a_commit_naming_the_task(project):
    task = TaskFactory(project=project, title="Add the Login Page!")
    run = services.run_create(
        project=project,
        prompt="",
        task=task,
        agent_backend="scripted",
        run_settings={"script": [{"write": "login.html", "content": "<form>"}]},
        enqueue=False,
    )
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.branch == f"autopilot/add-the-login-page-{run.pk}"
    assert (
        git(project.repo_path, "log", "-1", "--format=%s", run.branch)
        == f"autopilot: Add the Login Page! (run #{run.pk})"
    )


def test_setup_script_output_is_a_step_and_its_failure_fails_the_run(settings):
    ok = ProjectFactory(setup_script="echo preparing && touch .setup-done")
    run = run_now(ok, [{"list": "."}, {"finish": "ok"}])
    setup = run.steps.get(seq=1)
    assert setup.kind == "setup" and setup.status == "completed" and "preparing" in setup.output
    assert ".setup-done" in run.steps.get(kind="list_dir").output

    broken = ProjectFactory(setup_script="echo boom >&2; exit 3")
    failed = run_now(broken, [{"finish": "never"}])
    assert failed.status == "failed" and failed.status_reason == "setup script failed (exit 3)"
    assert "boom" in failed.steps.get(kind="setup").output

    settings.AUTOPILOT_SETUP_TIMEOUT = 0.5
    slow = ProjectFactory(setup_script="sleep 30")
    timed = run_now(slow, [{"finish": "never"}])
    assert timed.status == "failed" and timed.status_reason == "setup script timed out"


def test_parallel_runs_on_one_repository_do_not_collide(project):
    runs = [
        scripted(project, [{"write": f"f{i}.txt", "content": str(i)}, {"finish": "ok"}]) for i in range(4)
    ]
    threads = [threading.Thread(target=execute_run, args=(r.pk,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, run in enumerate(runs):
        run.refresh_from_db()
        assert run.status == "succeeded", run.status_reason
        assert git(project.repo_path, "show", f"{run.branch}:f{i}.txt") == str(i)
    assert len({r.worktree_path for r in runs}) == 4
    assert git(project.repo_path, "status", "--porcelain") == ""


def test_retention_removes_old_worktrees_keeps_branches_and_reports_disk(project):
    old, recent = run_now(project, [{"finish": "a"}]), run_now(project, [{"finish": "b"}])
    ExecutionRun.objects.filter(pk=old.pk).update(ended_at=timezone.now() - timedelta(days=10))
    report = services.cleanup_worktrees(older_than_days=7, keep_last=1)
    assert report["removed_runs"] == [old.pk]
    assert not Path(old.worktree_path).exists() and Path(recent.worktree_path).exists()
    assert git(project.repo_path, "rev-parse", "--verify", old.branch)
    assert old.branch not in git(project.repo_path, "worktree", "list")
    assert report["disk_bytes"] > 0
    assert ExecutionRun.objects.get(pk=old.pk).worktree_removed_at is not None


def test_retention_never_removes_a_worktree_a_resumed_run_uses(project):
    first = run_now(project, [{"write": "a.txt", "content": "a"}, {"finish": "a"}])
    resumed = services.run_resume(run=first, prompt='[{"finish": "b"}]', enqueue=False)
    ExecutionRun.objects.filter(pk=first.pk).update(ended_at=timezone.now() - timedelta(days=30))
    report = services.cleanup_worktrees(older_than_days=7, keep_last=0)
    assert report["removed_runs"] == []
    execute_run(resumed.pk)
    resumed.refresh_from_db()
    assert resumed.worktree_path == first.worktree_path and resumed.status == "succeeded"


def test_worktree_rollback_verification_detects_differences(project):
    run = run_now(project, [{"write": "a.txt", "content": "a"}, {"finish": "ok"}])
    path = Path(run.worktree_path)
    (path / "README.md").write_bytes(b"# Demo\n ")
    assert workspace.verify_tree_matches(path, run.base_commit) == ["README.md", "a.txt"]


def test_test_worker_records_pass_and_fail_counts(tmp_path):
    repo = make_repo(
        tmp_path / "py",
        {
            "test_things.py": (
                "def test_ok():\n    assert True\n\n"
                "def test_bad():\n    assert 1 == 2\n\n"
                "def test_ok2():\n    pass\n"
            ),
        },
    )
    project = ProjectFactory(repo_path=str(repo), test_command="python3 -m pytest -q -p no:cacheprovider")
    run = services.run_create(
        project=project, prompt="run the tests", agent_backend="test_worker", enqueue=False
    )
    execute_run(run.pk)
    run.refresh_from_db()
    step = run.steps.get(kind="test")
    assert (
        run.status == "failed"
        and run.status_reason == "tests failed: 2 passed, 1 failed, 0 errors, 0 skipped"
    )
    assert step.input["counts"]["passed"] == 2 and step.input["counts"]["failed"] == 1
    assert step.input["counts"]["failing"] == ["test_things.py::test_bad"]


def test_parse_unittest_summary():
    out = (
        "....\n----------------------------------------------------------------------\n"
        "Ran 5 tests in 0.01s\n\nFAILED (failures=1, skipped=1)\n"
    )
    counts = parse_test_output(out)
    assert (counts["passed"], counts["failed"], counts["skipped"], counts["framework"]) == (
        3,
        1,
        1,
        "unittest",
    )


def test_ref_commits_reads_several_branches_exactly_with_one_process(tmp_path, settings):
    settings.DATA_DIR = tmp_path
    repo = make_repo(tmp_path / "repo")
    main = git(repo, "rev-parse", "main")
    git(repo, "branch", "feature/x", main)
    git(repo, "branch", "main-2", main)  # shares a prefix with "main": never mistaken for it
    other = git(repo, "commit-tree", "-m", "other", git(repo, "rev-parse", "main^{tree}"))
    git(repo, "branch", "other", other)
    found = workspace.ref_commits(repo, "main", "feature/x", "feature", "absent", "other")
    assert found == {"main": main, "feature/x": main, "feature": None, "absent": None, "other": other}
    assert found["main"] == workspace.ref_commit(repo, "main")


def test_worktree_gitdir_and_detached_head_read_without_git(tmp_path, settings):
    settings.DATA_DIR = tmp_path
    repo = make_repo(tmp_path / "repo")
    main = git(repo, "rev-parse", "main")
    assert workspace.worktree_gitdir(repo) is None  # the main checkout: `.git` is a directory
    assert workspace.worktree_gitdir(tmp_path / "nowhere") is None
    linked = tmp_path / "linked"
    workspace.add_detached_worktree(repo, linked, main)
    gitdir = workspace.worktree_gitdir(linked)
    assert gitdir is not None and (gitdir / "HEAD").read_text().strip() == main
    assert workspace.detached_head(linked) == main
    git(linked, "checkout", "-q", "-b", "attached")  # HEAD names a branch: asked to git instead
    assert workspace.detached_head(linked) == main
    (linked / ".git").write_text("gitdir: /no/such/place\n")
    assert workspace.worktree_gitdir(linked) is None
