"""`autopilot demo`: run for real (a subprocess on the test databases, its own data directory), twice."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model

from autopilot.management.commands.demo import DEMO_TASKS
from autopilot.models import AutonomyMode, Project
from blueprints.models import Blueprint, PlanNode, Task, TaskDependency
from runs.backends.scripted import script_in
from runs.integration import review_needed


def run_demo(env: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "autopilot.cli", "demo", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def counts() -> dict:
    return {
        "admins": get_user_model().objects.filter(username="admin").count(),
        "projects": Project.objects.filter(name="Demo").count(),
        "blueprints": Blueprint.objects.count(),
        "nodes": PlanNode.objects.count(),
        "tasks": Task.objects.count(),
        "dependencies": TaskDependency.objects.count(),
    }


@pytest.mark.django_db(transaction=True)
def test_demo_creates_admin_project_repository_and_blueprint_once(subprocess_env, tmp_path):
    env = {**subprocess_env, "AUTOPILOT_DATA_DIR": str(tmp_path)}

    # When the demo is created
    first = run_demo(env)

    # Then there is a superuser 'admin' whose generated password is kept in a 0600 file
    password_file = tmp_path / "admin-password.txt"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    assert first["admin"]["password"] == password and len(password) >= 12
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.check_password(password)

    # and a project 'Demo' over a real git repository whose test command passes
    project = Project.objects.get(name="Demo")
    repo = tmp_path / "demo-repo"
    assert project.repo_path == str(repo.resolve())
    assert project.test_command == "python3 -m unittest -q"
    assert "python3" in project.command_allowlist
    tests = subprocess.run(project.test_command.split(), cwd=repo, capture_output=True, text=True, timeout=60)
    assert tests.returncode == 0, tests.stderr
    log = subprocess.run(["git", "-C", str(repo), "log", "--oneline", "main"], capture_output=True, text=True)
    assert log.returncode == 0 and log.stdout.strip()
    assert project.memberships.get(user=admin).role == "owner"

    # using the offline scripted backend for every role, and labelled as a demo
    assert {entry["agent"] for entry in project.model_matrix.values()} == {"scripted"}
    assert project.agent_for("code")[0] == "scripted"
    assert "DEMO" in project.description
    # and integration as any new project has it: review by mode (a human approves in suggest and
    # semi_auto; full_auto merges what passes the integration tests), into the integration branch
    assert project.auto_complete_on_tests is False and project.review_required is None
    assert project.integration_branch == "autopilot/integration" != project.base_branch
    assert review_needed(project, AutonomyMode.SEMI_AUTO) and not review_needed(
        project, AutonomyMode.FULL_AUTO
    )

    # and an active blueprint with two phases, sections, checklist items and dependencies
    blueprint = Blueprint.objects.get(project=project)
    assert blueprint.status == Blueprint.Status.ACTIVE
    phases = PlanNode.objects.filter(blueprint=blueprint, kind="phase")
    assert list(phases.values_list("title", flat=True)) == ["Phase 1: Arithmetic", "Phase 2: Command line"]
    assert Task.objects.filter(project=project).count() >= 4
    assert TaskDependency.objects.exists()
    # and every task carries the scripted actions that implement it (its own, not a notes filler),
    # with the dependencies the scripts build on (each edits what its prerequisite wrote)
    tasks = {t.title: t for t in Task.objects.filter(project=project, kind=Task.Kind.WORK)}
    assert set(tasks) == {title for title, *_ in DEMO_TASKS}
    for title, deps, _spec, script in DEMO_TASKS:
        assert json.loads(script_in(tasks[title].body)) == script
        assert set(
            TaskDependency.objects.filter(task=tasks[title]).values_list("depends_on__title", flat=True)
        ) == set(deps)
    before = counts()

    # When it runs again
    second = run_demo(env)

    # Then nothing is duplicated and the same password is printed
    assert counts() == before
    assert second["admin"]["password"] == password
    assert second["project"] == {**first["project"], "created": False}
    assert second["blueprint_ingested"] is False
    assert get_user_model().objects.get(username="admin").check_password(password)
