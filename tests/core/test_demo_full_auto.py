"""The demo tells the truth: `autopilot demo`, switched to full_auto under a real `autopilot serve`,
ends with every task done through the merge queue and an integration branch whose tests pass and whose
calculator works; the base branch is never written. Real subprocesses, real git, this test's database."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from autopilot.management.commands.demo import DEMO_TASKS
from autopilot.models import Project
from blueprints.models import Task
from runs.models import ExecutionRun, Integration
from tests.liveserver import pick_free_port, wait_until

AUTOPILOT = [sys.executable, "-m", "autopilot.cli"]

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def cli(env: dict, *args: str) -> dict:
    done = subprocess.run([*AUTOPILOT, *args, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_demo_in_full_auto_ends_with_every_task_done_and_a_working_tested_calculator(
    subprocess_env, tmp_path
):
    # Given the demo, created by the real command in a data directory of its own
    env = {**subprocess_env, "AUTOPILOT_DATA_DIR": str(tmp_path / "data"), "AUTOPILOT_LOG_LEVEL": "INFO"}
    (tmp_path / "data").mkdir()
    created = cli(env, "demo")
    project = Project.objects.get(pk=created["project"]["id"])
    repo = Path(project.repo_path)
    base_head = git(repo, "rev-parse", project.base_branch)
    titles = [title for title, *_ in DEMO_TASKS]

    # and `autopilot serve` running
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [*AUTOPILOT, "serve", "--host", "127.0.0.1", "--port", str(pick_free_port()), "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            # When the project is switched to full_auto (the CLI door; nothing else moves it)
            cli(env, "project", "autonomy", str(project.pk), "--mode", "full_auto")

            # Then every demo task ends done, without a human
            def finished():
                tasks = Task.objects.filter(project=project, kind=Task.Kind.WORK)
                if tasks.filter(status=Task.Status.BLOCKED).exists():
                    raise AssertionError(
                        "a demo task is blocked: "
                        + repr(list(tasks.values_list("title", "status")))
                        + log_path.read_text(errors="replace")[-4000:]
                    )
                return tasks.count() == len(titles) and all(t.status == Task.Status.DONE for t in tasks)

            wait_until(finished, timeout=600, interval=1, what="every demo task to be done")
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)

    assert_calculator_integrated(project, base_head, tmp_path)


def test_the_demo_driven_from_the_terminal_in_full_auto_ends_the_same(subprocess_env, tmp_path):
    # Given the demo (its project's mode is off)
    env = {**subprocess_env, "AUTOPILOT_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "data").mkdir()
    project = Project.objects.get(pk=cli(env, "demo")["project"]["id"])
    base_head = git(Path(project.repo_path), "rev-parse", project.base_branch)

    # When `autopilot run Demo --full-auto --until-empty` drives it in this terminal (no cluster)
    summary = cli(env, "run", "Demo", "--full-auto", "--until-empty")

    # Then every task is done through the merge queue, with no review asked for in full_auto
    assert summary["succeeded"] == len(DEMO_TASKS) and summary["failed"] == 0, summary
    assert not Task.objects.filter(project=project, kind=Task.Kind.WORK).exclude(status=Task.Status.DONE)
    assert_calculator_integrated(project, base_head, tmp_path)


def assert_calculator_integrated(project, base_head: str, tmp_path: Path) -> None:
    """Every demo task merged once into the integration branch, each dependent built on its
    prerequisites' integrated work; the integration branch's tests pass and its calculator works; the
    base branch is untouched."""
    project.refresh_from_db()
    repo = Path(project.repo_path)
    titles = [title for title, *_ in DEMO_TASKS]
    tasks = {t.title: t for t in Task.objects.filter(project=project, kind=Task.Kind.WORK)}
    # each through the merge queue: exactly one merged Integration per task, into the integration branch
    merges = {}
    for title in titles:
        merged = Integration.objects.filter(task=tasks[title], status=Integration.Status.MERGED)
        assert merged.count() == 1, (title, list(tasks[title].integrations.values("status", "status_reason")))
        merges[title] = merged.get()
        assert merges[title].target_branch == project.integration_branch
        assert merges[title].tests_passed is True
    # and each dependent's run started from an integration head that held its prerequisites' merges
    for title, deps, _spec, _script in DEMO_TASKS:
        run = merges[title].run
        assert run is not None and run.status == ExecutionRun.Status.SUCCEEDED and run.base_commit
        for dep in deps:
            ancestor = subprocess.run(
                [
                    "git",
                    "-C",
                    str(repo),
                    "merge-base",
                    "--is-ancestor",
                    merges[dep].merge_commit,
                    run.base_commit,
                ],
                timeout=60,
            )
            assert ancestor.returncode == 0, f"{title}'s run did not start from {dep}'s integrated work"

    # Then the base branch is untouched, and the integration branch holds the work
    assert git(repo, "rev-parse", project.base_branch) == base_head
    head = git(repo, "rev-parse", project.integration_branch)
    for title, merge in merges.items():
        inside = subprocess.run(
            ["git", "-C", str(repo), "merge-base", "--is-ancestor", merge.merge_commit, head], timeout=60
        )
        assert inside.returncode == 0, f"{title}'s merge is not on the integration branch"
    tree = tmp_path / "integration-tree"
    git(repo, "worktree", "add", "-q", "--detach", str(tree), project.integration_branch)
    assert not (tree / "AUTOPILOT_NOTES.md").exists()

    # whose tests pass (every task's tests among them)
    tests = subprocess.run(
        [sys.executable, "-m", "unittest", "-v"], cwd=tree, capture_output=True, text=True, timeout=300
    )
    assert tests.returncode == 0, tests.stderr
    for name in (
        "test_multiply",
        "test_divide_by_zero",
        "test_python_m_calc",
        "test_the_readme_example_works",
    ):
        assert f"{name} " in tests.stderr, name

    # and whose calculator works, imported and called in a fresh interpreter, and from the command line
    calls = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, calc; print(json.dumps([calc.add(2, 3), calc.subtract(5, 3), "
            "calc.multiply(-4, 3), calc.divide(7, 2)]))",
        ],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(calls.stdout) == [5, 2, -12, 3.5], calls.stderr
    cli_run = subprocess.run(
        [sys.executable, "-m", "calc", "9", "/", "2"], cwd=tree, capture_output=True, text=True, timeout=60
    )
    assert (cli_run.returncode, cli_run.stdout.strip()) == (0, "4.5")
    bad = subprocess.run(
        [sys.executable, "-m", "calc", "nine", "/", "2"], cwd=tree, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "usage:" in bad.stderr
    assert "`divide(a, b)`" in (tree / "README.md").read_text()
