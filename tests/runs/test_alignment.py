"""The alignment check (runs.alignment) on real git repositories: one test per rule, the verdict, the
stored result, and what happens when there is nothing to diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopilot.errors import Conflict
from blueprints.ingestion import ingest_blueprint
from blueprints.models import Task
from runs import alignment
from runs.models import ExecutionRun, RunRole
from tests.factories import ExecutionRunFactory, TaskFactory
from tests.gitrepo import git

pytestmark = pytest.mark.django_db

SECTION = "Add the snapshot service in `runs/snapshot.py` and its page `templates/overview.html`."


def branch_run(project, files: dict[str, str | None], *, task=None, branch="autopilot/run-1", **run_fields):
    """A run whose branch adds/changes (content) or deletes (None) `files` on top of the base branch."""
    repo = Path(project.repo_path)
    base = git(repo, "rev-parse", "main")
    git(repo, "checkout", "-q", "-b", branch)
    for name, content in files.items():
        target = repo / name
        if content is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "work")
    git(repo, "checkout", "-q", "main")
    if task is None:
        task = TaskFactory(project=project, title="Snapshot service", body=SECTION)
    return ExecutionRunFactory(
        project=project,
        task=task,
        branch=branch,
        base_commit=base,
        status=ExecutionRun.Status.SUCCEEDED,
        **run_fields,
    )


def codes(result) -> dict[str, str]:
    return {r["code"]: r["severity"] for r in result["reasons"]}


def test_an_in_scope_change_with_tests_is_aligned(project):
    run = branch_run(
        project,
        {
            "runs/snapshot.py": "def snapshot():\n    return 1\n",
            "tests/test_snapshot.py": "def test():\n    pass\n",
        },
    )

    result = alignment.check_run(run)

    assert result["verdict"] == "aligned", result["reasons"]
    assert result["stats"]["files"] == 2 and result["stats"]["tests_changed"] == 1
    assert {f["path"]: f["in_scope"] for f in result["files"]} == {
        "runs/snapshot.py": True,
        "tests/test_snapshot.py": True,
    }
    run.refresh_from_db()
    assert run.alignment["verdict"] == "aligned" and run.alignment["head"] == result["head"]


def test_files_the_task_does_not_name_warn(project):
    run = branch_run(
        project,
        {
            "runs/snapshot.py": "x = 1\n",
            "billing/invoice.py": "y = 2\n",
            "tests/test_snapshot.py": "def test():\n    pass\n",
        },
    )

    result = alignment.check_run(run)

    assert result["verdict"] == "warn"
    assert codes(result) == {"out_of_scope": "warn"}
    [reason] = result["reasons"]
    assert reason["files"] == ["billing/invoice.py"]


def test_names_in_the_section_match_stems_and_directories(project):
    # `overview` is named (as overview.html): templates/overview.html and a new overview/ helper match
    run = branch_run(
        project,
        {
            "templates/overview.html": "<p></p>\n",
            "web/overview/__init__.py": "",
            "tests/test_x.py": "t = 1\n",
        },
    )
    result = alignment.check_run(run)
    assert result["verdict"] == "aligned", result["reasons"]


def test_a_task_from_a_spec_section_is_checked_against_the_section_text(project):
    spec = "# Phase\n\n## Cache\n\nImplement `cache/lru.py` with tests.\n"
    ingest_blueprint(project=project, text=spec, title="Spec")
    task = Task.objects.get(project=project, title="Cache")
    run = branch_run(
        project, {"cache/lru.py": "class LRU: ...\n", "tests/test_lru.py": "def test(): ...\n"}, task=task
    )
    result = alignment.check_run(run)
    assert result["verdict"] == "aligned", result["reasons"]
    assert "cache/lru.py" in result["mentions"]["paths"]


def test_a_task_that_names_nothing_is_not_scope_checked(project):
    task = TaskFactory(project=project, title="Improve things", body="Make it better.")
    run = branch_run(project, {"anything/here.py": "x = 1\n", "tests/test_here.py": "t = 1\n"}, task=task)
    result = alignment.check_run(run)
    assert codes(result) == {"scope_unchecked": "aligned"}
    assert result["verdict"] == "aligned"


def test_code_without_tests_warns_but_docs_do_not(project):
    run = branch_run(project, {"runs/snapshot.py": "x = 1\n"})
    assert codes(alignment.check_run(run)) == {"no_tests": "warn"}

    docs = branch_run(project, {"docs/snapshot.md": "# Snapshot\n"}, branch="autopilot/run-2")
    assert "no_tests" not in codes(alignment.check_run(docs))

    docs_role = branch_run(
        project, {"runs/snapshot.py": "y = 1\n"}, branch="autopilot/run-3", role=RunRole.DOCS
    )
    assert "no_tests" not in codes(alignment.check_run(docs_role))


@pytest.mark.parametrize(
    ("path", "why"),
    [
        (".github/workflows/ci.yml", "CI configuration"),
        (".gitlab-ci.yml", "CI configuration"),
        ("package-lock.json", "a lockfile the task does not mention"),
        (".autopilot/state.json", "Autopilot's own files"),
    ],
    ids=["github-actions", "gitlab-ci", "lockfile", "autopilot-dir"],
)
def test_forbidden_paths_block(project, path, why):
    run = branch_run(project, {"runs/snapshot.py": "x = 1\n", "tests/test_s.py": "t = 1\n", path: "{}\n"})

    result = alignment.check_run(run)

    assert result["verdict"] == "block"
    [reason] = [r for r in result["reasons"] if r["code"] == "forbidden_path"]
    assert why in reason["message"] and reason["files"] == [path]


def test_a_lockfile_the_task_mentions_is_allowed(project):
    task = TaskFactory(
        project=project, title="Bump deps", body="Update `package.json` and `package-lock.json`."
    )
    run = branch_run(project, {"package.json": "{}\n", "package-lock.json": "{}\n"}, task=task)
    result = alignment.check_run(run)
    assert "forbidden_path" not in codes(result)


def test_files_outside_the_project_subdirectory_block(project):
    project.subdirectory = "svc"
    project.save()
    task = TaskFactory(project=project, title="Svc", body="Edit `svc/app.py` and `lib/util.py`.")
    run = branch_run(
        project,
        {"svc/app.py": "a = 1\n", "svc/tests/test_app.py": "t = 1\n", "lib/util.py": "u = 1\n"},
        task=task,
    )
    result = alignment.check_run(run)
    assert result["verdict"] == "block"
    [reason] = result["reasons"]
    assert "outside the project's subdirectory 'svc'" in reason["message"] and reason["files"] == [
        "lib/util.py"
    ]


def test_autopilot_data_inside_the_repository_blocks(project, settings):
    # The server's data directory lying inside the project's repository is Autopilot's own
    settings.AUTOPILOT_ARTIFACT_ROOT = str(Path(project.repo_path) / "var" / "artifacts")
    run = branch_run(project, {"var/artifacts/runs/1/log.txt": "x\n", "runs/snapshot.py": "s = 1\n"})
    result = alignment.check_run(run)
    assert result["verdict"] == "block"
    assert any("Autopilot's own files" in r["message"] for r in result["reasons"])


def test_diff_size_against_complexity(project):
    small_task = TaskFactory(project=project, title="Tiny", body="Edit `runs/snapshot.py`.", complexity=1)
    lines = "".join(f"x{i} = {i}\n" for i in range(200))
    run = branch_run(
        project, {"runs/snapshot.py": lines, "tests/test_snapshot.py": "t = 1\n"}, task=small_task
    )
    result = alignment.check_run(run)
    assert codes(result) == {"diff_size": "warn"}
    assert result["stats"]["lines"] == 201 and result["stats"]["line_budget"] == 150

    huge = "".join(f"y{i} = {i}\n" for i in range(800))
    run = branch_run(
        project, {"runs/snapshot.py": huge, "tests/test_snapshot.py": "t = 2\n"}, task=small_task, branch="b2"
    )
    assert codes(alignment.check_run(run))["diff_size"] == "block"


def test_many_files_for_a_simple_task_warn(project):
    task = TaskFactory(project=project, title="Many", body="Touch `pkg/`.", complexity=1)
    files = {f"pkg/m{i}.py": f"v = {i}\n" for i in range(8)}
    run = branch_run(project, {**files, "tests/test_pkg.py": "t = 1\n"}, task=task)
    assert codes(alignment.check_run(run)) == {"file_count": "warn"}


def test_an_empty_change_warns(project):
    run = branch_run(project, {})
    result = alignment.check_run(run)
    assert codes(result) == {"empty": "warn"} and result["stats"]["files"] == 0


def test_deleted_files_count(project):
    run = branch_run(project, {"README.md": None, "tests/test_readme.py": "t = 1\n"})
    result = alignment.check_run(run)
    assert {f["path"]: f["removed"] for f in result["files"]}["README.md"] == 1


def test_a_run_without_a_branch_cannot_be_checked(project):
    run = ExecutionRunFactory(project=project, status=ExecutionRun.Status.QUEUED)
    with pytest.raises(Conflict, match="no branch and start commit"):
        alignment.check_run(run)
    run.refresh_from_db()
    assert run.alignment == {}


def test_a_branch_that_is_gone_is_a_clear_conflict(project):
    run = branch_run(project, {"runs/snapshot.py": "x\n"})
    git(project.repo_path, "branch", "-D", run.branch)
    with pytest.raises(Conflict, match="Cannot diff run"):
        alignment.check_run(run)


def test_persist_false_leaves_the_run_alone(project):
    run = branch_run(project, {"runs/snapshot.py": "x = 1\n", "tests/test_snapshot.py": "t\n"})
    result = alignment.check_run(run, persist=False)
    assert result["verdict"] == "aligned"
    run.refresh_from_db()
    assert run.alignment == {}


def test_llm_judgement_without_a_model_is_reported_not_fatal(project):
    run = branch_run(project, {"runs/snapshot.py": "x = 1\n", "tests/test_snapshot.py": "t\n"})
    result = alignment.check_run(run, llm=True)
    assert result["verdict"] == "aligned"
    assert "scripted" in result["llm"]["error"]


def test_mentions_find_paths_directories_and_names():
    found = alignment.mentions(
        "Edit `runs/alignment.py`, see docs/guide.md and the `src/` tree; the `Snapshot` class. "
        "Not https://example.com/x.html."
    )
    assert {"runs/alignment.py", "docs/guide.md"} <= found["paths"]
    assert "src/" in found["dirs"]
    assert {"alignment", "snapshot", "guide"} <= found["names"]


def test_mentions_stay_linear_on_hostile_input():
    # 200 KB of path-like noise: the bounded patterns finish (a catastrophic one would not)
    found = alignment.mentions(("a/" * 50 + "b." * 40) * 1000)
    assert isinstance(found["paths"], set)
