"""`autopilot project …` and `autopilot user …`: in-process through call_command, plus the real
console script in a subprocess against the test database."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from autopilot.local_account import local_username
from autopilot.models import Event, Project, ProjectMembership
from blueprints.models import Blueprint
from tests.factories import BlueprintFactory, MembershipFactory, PlanNodeFactory, ProjectFactory, UserFactory
from tests.gitrepo import make_repo

AUTOPILOT = str(Path(settings.BASE_DIR) / ".venv" / "bin" / "autopilot")


def run(*args, stdin: str | None = None) -> str:
    out = io.StringIO()
    extra = {"stdin": io.StringIO(stdin)} if stdin is not None else {}
    call_command(*args, stdout=out, stderr=io.StringIO(), **extra)
    return out.getvalue()


def run_json(*args):
    return json.loads(run(*args, "--json"))


@pytest.fixture
def admin(db):
    return get_user_model().objects.create_superuser("root", password="root-password-123")


# --- project create / list / show ----------------------------------------------------------------


@pytest.mark.django_db
def test_create_project_with_every_option(admin, tmp_path):
    # Given a repository with a subdirectory and a second branch
    repo = make_repo(tmp_path / "mono", {"apps/web/README.md": "web\n"})
    from tests.gitrepo import git

    git(repo, "branch", "develop")
    owner = UserFactory(username="alice")
    # When a project is created from the CLI
    data = run_json(
        "project",
        "create",
        "Web App",
        "--repo",
        str(repo),
        "--base-branch",
        "develop",
        "--subdir",
        "apps/web",
        "--test-command",
        "pytest -q",
        "--setup-script",
        "pip install -e .",
        "--allow",
        "pytest",
        "ruff",
        "--owner",
        "alice",
    )
    # Then every field is saved and alice owns it
    project = Project.objects.get(pk=data["id"])
    assert (project.name, project.slug, project.base_branch, project.subdirectory) == (
        "Web App",
        "web-app",
        "develop",
        "apps/web",
    )
    assert (project.test_command, project.setup_script, project.command_allowlist) == (
        "pytest -q",
        "pip install -e .",
        ["pytest", "ruff"],
    )
    assert ProjectMembership.objects.get(project=project).user == owner
    assert data["my_role"] == "owner"


@pytest.mark.django_db
def test_create_defaults_the_owner_to_the_acting_user(admin, tmp_path):
    repo = make_repo(tmp_path / "r")
    out = run("project", "create", "Solo", "--repo", str(repo))
    assert "created project" in out and "owner root" in out
    assert ProjectMembership.objects.get(project__name="Solo").user == admin
    assert Event.objects.get(kind="project.created").actor == admin


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repo", "/nonexistent/repo"], "does not exist"),
        (["--repo", "{repo}", "--base-branch", "nope"], "has no branch 'nope'"),
        (["--repo", "{repo}", "--subdir", "missing"], "subdirectory 'missing'"),
        (["--repo", "{repo}", "--owner", "ghost"], "No user 'ghost'"),
    ],
    ids=["missing-repo", "missing-branch", "missing-subdir", "unknown-owner"],
)
def test_create_errors_exit_2_and_name_the_problem(admin, tmp_path, args, message):
    repo = make_repo(tmp_path / "r")
    args = [a.format(repo=repo) for a in args]
    with pytest.raises(CommandError) as failed:
        run("project", "create", "Broken", *args)
    assert failed.value.returncode == 2 and message in str(failed.value)
    assert not Project.objects.exists()


@pytest.mark.django_db
def test_create_with_json_prints_the_error_as_json(admin):
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("project", "create", "X", "--repo", "/nope", "--json", stdout=out)
    assert "does not exist" in json.loads(out.getvalue())["error"]


@pytest.mark.django_db
def test_list_and_show(admin, project):
    listed = run_json("project", "list")
    assert [(p["id"], p["name"]) for p in listed] == [(project.pk, project.name)]
    assert project.name in run("project", "list")
    MembershipFactory(project=project, user=UserFactory(username="bob"), role="operator")
    shown = run_json("project", "show", project.slug)
    assert shown["id"] == project.pk and [(m["username"], m["role"]) for m in shown["members"]] == [
        ("bob", "operator")
    ]
    text = run("project", "show", str(project.pk))
    assert "autonomy:  off" in text and "bob (operator)" in text


@pytest.mark.django_db
def test_list_as_a_user_shows_only_their_projects(admin, project):
    other = ProjectFactory(repo_path=project.repo_path)
    member = MembershipFactory(project=other, role="viewer").user
    assert [p["id"] for p in run_json("project", "list", "--user", member.username)] == [other.pk]
    with pytest.raises(CommandError) as failed:
        run("project", "show", str(project.pk), "--user", member.username)
    assert failed.value.returncode == 2 and "No project" in str(failed.value)


@pytest.mark.django_db
def test_show_unknown_project(admin):
    with pytest.raises(CommandError) as failed:
        run("project", "show", "nope")
    assert failed.value.returncode == 2 and "'nope'" in str(failed.value)


# --- project autonomy ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_autonomy_changes_are_events_naming_the_user(admin, project):
    # Given a project with an active blueprint and a phase
    blueprint = BlueprintFactory(project=project, status=Blueprint.Status.ACTIVE)
    phase = PlanNodeFactory(blueprint=blueprint, anchor="phase-2-api")
    # When an owner changes every setting at once
    operator = MembershipFactory(project=project, role="owner").user
    data = run_json(
        "project",
        "autonomy",
        project.slug,
        "--mode",
        "semi_auto",
        "--max-parallel",
        "4",
        "--pause",
        "--phase",
        "phase-2-api",
        "--run-budget",
        "2.5",
        "--daily-budget",
        "20",
        "--user",
        operator.username,
    )
    # Then all are saved and one event records them with who
    project.refresh_from_db()
    assert (project.autonomy_mode, project.max_parallel_runs, project.paused, project.active_phase) == (
        "semi_auto",
        4,
        True,
        phase,
    )
    assert (str(project.default_run_budget_usd), str(project.daily_budget_usd)) == ("2.5000", "20.0000")
    assert data["changed"] == [
        "active_phase",
        "autonomy_mode",
        "daily_budget_usd",
        "default_run_budget_usd",
        "max_parallel_runs",
        "paused",
    ]
    event = Event.objects.get(kind="project.autonomy")
    assert event.actor == operator and event.data["changes"]["paused"] == {"from": False, "to": True}
    # And the flags undo them
    run("project", "autonomy", project.slug, "--resume", "--no-phase", "--no-daily-budget")
    project.refresh_from_db()
    assert (project.paused, project.active_phase, project.daily_budget_usd) == (False, None, None)


@pytest.mark.django_db
def test_autonomy_without_changes_shows_settings(admin, project):
    out = run("project", "autonomy", project.name)
    assert "autonomy:  off" in out and "whole plan" in out
    assert not Event.objects.filter(kind="project.autonomy").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phase", "nowhere"], "No plan node with anchor 'nowhere'"),
        (["--run-budget", "-1"], "cannot be negative"),
        (["--daily-budget", "lots"], "'lots' is not an amount"),
        (["--max-parallel", "0"], "at least 1"),
    ],
    ids=["unknown-phase", "negative-budget", "not-a-number", "zero-parallel"],
)
def test_autonomy_errors(admin, project, args, message):
    BlueprintFactory(project=project, status=Blueprint.Status.ACTIVE)
    PlanNodeFactory(
        blueprint__project=project, blueprint=Blueprint.objects.get(project=project), anchor="phase-1"
    )
    with pytest.raises(CommandError) as failed:
        run("project", "autonomy", project.slug, *args)
    assert failed.value.returncode == 2 and message in str(failed.value)
    assert not Event.objects.filter(kind="project.autonomy").exists()


@pytest.mark.django_db
def test_phase_needs_an_active_blueprint(admin, project):
    with pytest.raises(CommandError, match="has no active blueprint"):
        run("project", "autonomy", project.slug, "--phase", "x")


@pytest.mark.django_db
def test_viewer_cannot_change_autonomy(admin, project, viewer):
    with pytest.raises(CommandError) as failed:
        run("project", "autonomy", project.slug, "--pause", "--user", viewer.username)
    assert failed.value.returncode == 2 and "needs the operator role" in str(failed.value)
    project.refresh_from_db()
    assert not project.paused


def test_conflicting_flags_are_refused():
    with pytest.raises(CommandError, match="not allowed with argument"):
        run("project", "autonomy", "p", "--pause", "--resume")


# --- project members ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_members_add_change_remove(admin, project, owner):
    UserFactory(username="carol")
    added = run_json(
        "project", "members", project.slug, "--add", "carol", "--role", "operator", "--user", owner.username
    )
    assert ("carol", "operator") in [(m["username"], m["role"]) for m in added]
    run("project", "members", project.slug, "--add", "carol", "--user", owner.username)
    assert ProjectMembership.objects.get(project=project, user__username="carol").role == "viewer"
    out = run("project", "members", project.slug, "--remove", "carol")
    assert "carol" not in out
    assert [e.data["role"] for e in Event.objects.filter(kind="project.membership").order_by("id")] == [
        "operator",
        "viewer",
        None,
    ]


@pytest.mark.django_db
def test_members_add_needs_owner(admin, project, operator):
    UserFactory(username="dave")
    with pytest.raises(CommandError) as failed:
        run(
            "project",
            "members",
            project.slug,
            "--add",
            "dave",
            "--role",
            "owner",
            "--user",
            operator.username,
        )
    assert failed.value.returncode == 2 and "needs the owner role" in str(failed.value)


@pytest.mark.django_db
def test_members_unknown_user(admin, project):
    with pytest.raises(CommandError, match="No user 'ghost'"):
        run("project", "members", project.slug, "--add", "ghost")


# --- user create / token ------------------------------------------------------------------------


@pytest.mark.django_db
def test_user_create_with_password_from_stdin():
    out = run("user", "create", "erin", "--superuser", "--password-stdin", stdin="a-long-secret-42\n")
    user = get_user_model().objects.get(username="erin")
    assert "created superuser erin" in out and "password:" not in out
    assert user.is_superuser and user.is_staff and user.check_password("a-long-secret-42")


@pytest.mark.django_db
def test_user_create_generates_a_password_once():
    data = run_json("user", "create", "frank")
    user = get_user_model().objects.get(username="frank")
    assert not user.is_superuser and user.check_password(data["password"])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["gina", "--password-stdin"], "short\n", "Password refused"),
        (["gina", "--password-stdin"], "", "had no password"),
        (["root"], None, "already exists"),
    ],
    ids=["weak-password", "empty-stdin", "taken-name"],
)
def test_user_create_errors(admin, args, stdin, message):
    with pytest.raises(CommandError) as failed:
        run("user", "create", *args, stdin=stdin)
    assert failed.value.returncode == 2 and message in str(failed.value)
    assert not get_user_model().objects.filter(username="gina").exists()


@pytest.mark.django_db
def test_user_token_is_stable_until_rotated(user):
    first = run("user", "token", user.username).strip()
    assert first == Token.objects.get(user=user).key
    assert run("user", "token", user.username).strip() == first
    rotated = run_json("user", "token", user.username, "--rotate")["token"]
    assert rotated != first and rotated == Token.objects.get(user=user).key


@pytest.mark.django_db
def test_user_token_unknown_user():
    with pytest.raises(CommandError, match="No user 'ghost'"):
        run("user", "token", "ghost")


# --- the real console script --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_console_script_against_the_test_database(subprocess_env, tmp_path):
    # Given a user created through the real `autopilot` executable
    def autopilot(*args, stdin=None):
        return subprocess.run(
            [AUTOPILOT, *args], env=subprocess_env, input=stdin, capture_output=True, text=True, timeout=120
        )

    created = autopilot(
        "user", "create", "ops", "--superuser", "--password-stdin", stdin="ops-password-123\n"
    )
    assert created.returncode == 0, created.stderr
    repo = make_repo(tmp_path / "repo")
    # When it registers a project and pauses it
    made = autopilot("project", "create", "Live", "--repo", str(repo), "--json")
    assert made.returncode == 0, made.stderr
    paused = autopilot("project", "autonomy", "live", "--pause", "--mode", "suggest")
    # Then this process sees the rows it wrote, with the events naming the local account (the OS user)
    assert paused.returncode == 0, paused.stderr
    project = Project.objects.get(pk=json.loads(made.stdout)["id"])
    assert (project.paused, project.autonomy_mode) == (True, "suggest")
    assert Event.objects.get(kind="project.autonomy").actor.username == local_username()
    # And an error exits with code 2 and a one-line message, no traceback
    missing = autopilot("project", "show", "no-such-project")
    assert missing.returncode == 2
    assert "No project 'no-such-project'" in missing.stderr and "Traceback" not in missing.stderr
    bad_usage = autopilot("project", "autonomy", "live", "--pause", "--resume")
    assert bad_usage.returncode == 2 and "not allowed with argument" in bad_usage.stderr
    token = autopilot("user", "token", "ops")
    assert token.returncode == 0 and token.stdout.strip() == Token.objects.get(user__username="ops").key
