"""The demo's scripted actions implement their tasks: applied in dependency order on the real demo
repository (real git, the real test command in a subprocess), every task's tests pass after it and the
calculator works at the end; a task that builds on a prerequisite cannot be applied without it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autopilot.management.commands import demo
from runs.backends.scripted import script_in, validate_script


def apply_actions(repo: Path, script: list[dict]) -> None:
    """What the scripted backend's file tools do: write a file; replace exactly one occurrence."""
    for action in script:
        if "write" in action:
            (repo / action["write"]).write_text(action["content"])
        elif "edit" in action:
            path = repo / action["edit"]
            text = path.read_text()
            count = text.count(action["old"])
            if count != 1:
                raise AssertionError(f"{action['edit']}: old text occurs {count} times")
            path.write_text(text.replace(action["old"], action["new"], 1))


def make_demo_repo(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for name, content in demo.DEMO_FILES.items():
        (path / name).write_text(content)
    return path


def unittest_in(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unittest", "-q"], cwd=repo, capture_output=True, text=True, timeout=120
    )


def test_every_demo_section_carries_a_valid_script_that_the_backend_finds():
    # Given the demo blueprint's text, every task's section holds its script in a ```scripted block
    for title, _deps, spec, script in demo.DEMO_TASKS:
        section = demo.DEMO_BLUEPRINT.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0].split("\n# ", 1)[0]
        found = script_in(section)
        # then the backend reads exactly the task's actions from it, and they are valid actions
        assert found is not None, title
        assert json.loads(found) == script
        validate_script(script)
        # that change files and run the tests (no notes filler)
        assert any("edit" in a or "write" in a for a in script), title
        assert {"run": demo.DEMO_TEST_COMMAND} in script
        assert not any("AUTOPILOT_NOTES" in json.dumps(a) for a in script)
        assert spec.split("\n")[0] in section


def test_demo_scripts_applied_in_dependency_order_implement_the_calculator(tmp_path):
    repo = make_demo_repo(tmp_path / "repo")
    done: set[str] = set()
    for title, deps, _spec, script in demo.DEMO_TASKS:
        # Given its prerequisites are applied (plan order is a dependency order)
        assert set(deps) <= done, title
        # When the task's actions are applied, the repository's tests pass, including new ones
        before = unittest_in(repo).stderr
        apply_actions(repo, script)
        after = unittest_in(repo)
        assert after.returncode == 0, f"{title}: {after.stderr}"
        ran_before = int(before.split("Ran ")[1].split()[0])
        ran_after = int(after.stderr.split("Ran ")[1].split()[0])
        assert ran_after > ran_before, f"{title} added no test"
        done.add(title)

    # Then the calculator works, called in a fresh interpreter from the final tree
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import calc; "
            "print(calc.add(2, 3), calc.subtract(5, 3), calc.multiply(-2, 3), calc.divide(7, 2))",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.stdout.split() == ["5", "2", "-6", "3.5"], check.stderr
    cli = subprocess.run(
        [sys.executable, "-m", "calc", "6", "*", "7"], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert (cli.returncode, cli.stdout.strip()) == (0, "42")
    bad = subprocess.run(
        [sys.executable, "-m", "calc", "1", "/", "0"], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "zero" in bad.stderr
    readme = (repo / "README.md").read_text()
    assert all(f"`{name}(" in readme for name in ("add", "subtract", "multiply", "divide", "main"))


@pytest.mark.parametrize("title", [t for t, deps, _s, _a in demo.DEMO_TASKS if deps])
def test_a_dependent_task_edits_what_its_prerequisite_wrote(tmp_path, title):
    # Given the demo repository with everything applied except the task's direct prerequisites' work
    repo = make_demo_repo(tmp_path / "repo")
    tasks = {t: (deps, script) for t, deps, _s, script in demo.DEMO_TASKS}
    for other, (_deps, script) in tasks.items():
        if other == title:
            break
        if other not in tasks[title][0]:
            apply_actions(repo, script)
    # When the task's actions are applied, they do not apply: they edit the prerequisites' code
    with pytest.raises(AssertionError, match="occurs 0 times"):
        apply_actions(repo, tasks[title][1])
