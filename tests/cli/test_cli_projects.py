"""The seeds' vocabulary for projects, issues, start, status and the queue, through the real console
script against the test database (issue #13): every form, and each with bad arguments."""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from autopilot.models import DefaultProject, Event, Project
from blueprints.models import Task
from runs.models import ExecutionRun
from tests.cli.shell import LOCAL_USER, Shell
from tests.factories import ExecutionRunFactory, MembershipFactory, UserFactory
from tests.gitrepo import git, make_repo

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sh(subprocess_env, tmp_path) -> Shell:
    (tmp_path / "elsewhere").mkdir()
    return Shell(subprocess_env, tmp_path / "elsewhere")  # a directory in no repository


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "web", {"README.md": "web\n", "api/main.py": "print(1)\n"}, branch="master")


# --- project add / list / view / show / edit / set-default / remove -------------------------------


def test_project_add_list_view_show(sh, repo):
    added = sh.json("project", "add", "web", "--path", str(repo))
    assert (added["name"], added["base_branch"], added["repo_path"]) == ("web", "master", str(repo))
    project = Project.objects.get(name="web")
    assert project.memberships.get().user.username == LOCAL_USER
    ExecutionRunFactory(project=project, status="succeeded")
    listed = sh.json("project", "list")
    assert [(p["name"], p["path"], p["sessions"], p["default"]) for p in listed] == [
        ("web", str(repo), 1, False)
    ]
    assert listed[0]["last_active"]
    table = sh("project", "list").stdout
    assert table.splitlines()[0].split() == ["ID", "NAME", "PATH", "SESSIONS", "LAST", "ACTIVE", "MODE"]
    assert str(repo) in table
    assert json.loads(sh("project", "list", "--format", "json").stdout) == listed
    for verb in ("view", "show"):
        assert sh.json("project", verb, "web")["id"] == project.pk
        assert "@ master" in sh("project", verb, "web").stdout


def test_project_add_takes_repo_and_the_current_repository(sh, repo, tmp_path):
    other = make_repo(tmp_path / "other")
    assert sh.json("project", "create", "Other", "--repo", str(other))["base_branch"] == "main"
    assert sh.json("project", "add", cwd=repo)["name"] == "web"  # no name, no path: this repository


def test_project_add_bad_arguments(sh, repo, tmp_path):
    sh.fails("project", "add", "x", "--path", str(tmp_path / "nope"), says="does not exist")
    sh.fails("project", "add", "x", "--path", str(repo), "--base-branch", "main", says="has no branch 'main'")
    sh.fails("project", "add", "x", says="is not in a git repository")
    sh("project", "add", "web", "--path", str(repo))
    sh.fails("project", "add", "web2", "--path", str(repo), says="Another project already uses")
    assert list(Project.objects.values_list("name", flat=True)) == ["web"]


def test_project_edit_changes_every_setting_and_records_events(sh, repo):
    sh("project", "add", "web", "--path", str(repo))
    git(repo, "branch", "develop")
    matrix = {"code": {"agent": "scripted", "model": "scripted"}}
    shown = sh.json(
        "project",
        "edit",
        "web",
        "--test-command",
        "pytest -q",
        "--setup-script",
        "pip install -e .",
        "--allow",
        "pytest",
        "ruff",
        "--base-branch",
        "develop",
        "--subdir",
        "api",
        "--description",
        "The shop",
        "--allow-shell",
        "--setup-network",
        "--mode",
        "semi_auto",
        "--max-parallel",
        "3",
        "--max-attempts",
        "2",
        "--run-budget",
        "2.5",
        "--daily-budget",
        "10",
        "--auto-complete-on-tests",
        "--plan-order",
        "phases",
        "--model-matrix",
        json.dumps(matrix),
    )
    project = Project.objects.get(name="web")
    assert (project.test_command, project.setup_script, project.command_allowlist) == (
        "pytest -q",
        "pip install -e .",
        ["pytest", "ruff"],
    )
    assert (project.base_branch, project.subdirectory, project.description) == ("develop", "api", "The shop")
    assert (project.allow_shell, project.setup_network, project.autonomy_mode) == (True, True, "semi_auto")
    assert (project.max_parallel_runs, project.max_attempts, project.auto_complete_on_tests) == (3, 2, True)
    assert (project.default_run_budget_usd, project.daily_budget_usd) == (Decimal("2.5"), Decimal("10"))
    assert (project.plan_order_policy, project.model_matrix) == ("phases", matrix)
    assert shown["test_command"] == "pytest -q"
    assert Event.objects.filter(kind="project.updated", actor__username=LOCAL_USER).exists()
    sh("project", "edit", "web", "--no-allow", "--no-daily-budget", "--no-allow-shell", "--test-command", "")
    project.refresh_from_db()
    assert (
        project.command_allowlist,
        project.daily_budget_usd,
        project.allow_shell,
        project.test_command,
    ) == ([], None, False, "")


def test_project_edit_is_all_or_nothing(sh, repo):
    sh("project", "add", "web", "--path", str(repo))
    # A valid basic change with an invalid autonomy change: neither is saved
    sh.fails(
        "project",
        "edit",
        "web",
        "--test-command",
        "make test",
        "--model-matrix",
        '{"code": 5}',
        says="model_matrix",
    )
    project = Project.objects.get(name="web")
    assert project.test_command == "" and not Event.objects.filter(kind="project.updated").exists()


def test_project_edit_bad_arguments(sh, repo):
    sh("project", "add", "web", "--path", str(repo))
    sh.fails("project", "edit", "web", says="Nothing to change")
    sh.fails("project", "edit", "web", "--run-budget", "-1", says="cannot be negative")
    sh.fails("project", "edit", "web", "--run-budget", "lots", says="not an amount")
    sh.fails("project", "edit", "web", "--max-parallel", "0", says="at least 1")
    sh.fails("project", "edit", "web", "--model-matrix", "{oops", says="not valid JSON")
    sh.fails("project", "edit", "web", "--base-branch", "nope", says="no branch 'nope'")
    sh.fails("project", "edit", "web", "--mode", "turbo", says="invalid choice: 'turbo'")
    sh.fails("project", "edit", "nope", "--description", "x", says="No project 'nope'")
    assert Project.objects.get(name="web").default_run_budget_usd == Decimal("5")


def test_project_set_default_and_remove(sh, repo, tmp_path):
    sh("project", "add", "web", "--path", str(repo))
    assert sh.json("project", "set-default", "web")["name"] == "web"
    assert DefaultProject.objects.get().project.name == "web"
    assert sh.json("project", "view")["name"] == "web"  # from a directory outside any project
    assert sh.json("project", "list")[0]["default"] is True
    assert sh.json("project", "set-default", "none") == {"default": None}
    sh.fails("project", "view", says="no default project")
    # remove asks (refused without a terminal), --yes unregisters, the files stay
    sh.fails("project", "remove", "web", says="pass --yes")
    assert Project.objects.filter(name="web").exists()
    removed = sh.json("project", "remove", "web", "--yes")
    assert removed["removed"] is True and not Project.objects.exists()
    assert (repo / "README.md").read_text() == "web\n" and (repo / ".git").is_dir()


def test_project_set_default_and_remove_bad_arguments(sh, repo):
    sh.fails("project", "set-default", "nope", says="No project 'nope'")
    sh.fails("project", "remove", "nope", "--yes", says="No project 'nope'")
    sh("project", "add", "web", "--path", str(repo))
    ExecutionRunFactory(project=Project.objects.get(), status="running")
    sh.fails("project", "remove", "web", "--yes", says="active run")
    assert Project.objects.exists()


def test_a_viewer_changes_nothing_and_sees_only_their_projects(sh, repo):
    sh("project", "add", "web", "--path", str(repo))
    vera = UserFactory(username="vera")
    sh.fails("project", "view", "web", "--user", "vera", says="No project 'web'")
    MembershipFactory(project=Project.objects.get(), user=vera, role="viewer")
    sh.fails("project", "edit", "web", "--test-command", "make", "--user", "vera", says="test_command")
    sh.fails("project", "list", "--user", "ghost", says="No user 'ghost'")


# --- project resolution ---------------------------------------------------------------------------


def test_project_resolution_order(sh, repo, tmp_path):
    sh("project", "add", "web", "--path", str(repo))
    sh("project", "add", "api", "--path", str(repo), "--subdir", "api", "--share-repo")
    sh("issue", "create", "In web", cwd=repo)
    sh("issue", "create", "In api", cwd=repo / "api")  # the deepest project containing the directory
    assert Task.objects.get(title="In web").project.name == "web"
    assert Task.objects.get(title="In api").project.name == "api"
    sh("issue", "create", "Given", "--project", "web", cwd=repo / "api")  # --project wins
    sh("issue", "create", "web", "Positional")  # the positional argument too
    assert set(Task.objects.filter(project__name="web").values_list("title", flat=True)) == {
        "In web",
        "Given",
        "Positional",
    }
    # Outside any project: the default project, else a clear error
    sh.fails("issue", "list", says="not in a registered project or a git repository")
    sh("project", "set-default", "api")
    assert [t["title"] for t in sh.json("issue", "list")["tasks"]] == ["In api"]


def test_an_unregistered_repository_is_registered_on_first_use(sh, repo, tmp_path):
    other = make_repo(tmp_path / "x" / "web", branch="trunk")  # same directory name as a project
    sh("project", "add", "web", "--path", str(repo))
    sh("issue", "create", "First", cwd=other)
    project = Task.objects.get(title="First").project
    assert (project.name, project.repo_path, project.base_branch) == ("web-2", str(other), "trunk")
    assert project.memberships.get().user.username == LOCAL_USER


def test_a_detached_head_is_not_registered(sh, tmp_path):
    loose = make_repo(tmp_path / "loose")
    git(loose, "checkout", "-q", "--detach")
    sh.fails("issue", "list", cwd=loose, says="detached HEAD")
    assert not Project.objects.exists()


# --- issue (= task) -------------------------------------------------------------------------------


@pytest.mark.parametrize("given,stored", [("high", 3), ("urgent", 5), ("lowest", 0), ("4", 4), ("Medium", 2)])
def test_issue_priority_names_and_numbers(sh, repo, given, stored):
    created = sh.json("issue", "create", "Fix authentication bug", "--priority", given, cwd=repo)
    assert created["priority"] == stored


def test_issue_list_create_view_edit(sh, repo):
    created = sh.json("issue", "create", "Fix authentication bug", "--priority", "high", cwd=repo)
    assert [t["id"] for t in sh.json("issue", "list", cwd=repo)["tasks"]] == [created["id"]]
    assert "Fix authentication bug" in sh("issue", "list", cwd=repo).stdout
    assert sh.json("issue", "view", str(created["id"]), cwd=repo)["title"] == "Fix authentication bug"
    assert sh.json("task", "show", str(created["id"]), cwd=repo)["priority"] == 3
    edited = sh.json(
        "issue", "edit", str(created["id"]), "--priority", "urgent", "--title", "Fix auth", cwd=repo
    )
    assert (edited["priority"], edited["title"]) == (5, "Fix auth")
    assert [t["id"] for t in sh.json("issue", "list", "--min-priority", "highest", cwd=repo)["tasks"]] == [
        created["id"]
    ]


def test_issue_bad_arguments(sh, repo):
    sh.fails("issue", "create", "x", "--priority", "extreme", cwd=repo, says="'extreme' is not a priority")
    sh.fails("issue", "create", "x", "--priority", "6", cwd=repo, says="'6' is not a priority")
    sh.fails("issue", "view", "999", cwd=repo, says="`autopilot issue list`")
    sh.fails("task", "view", "999", cwd=repo, says="`autopilot task list`")
    sh.fails("issue", "list", "--project", "nope", says="No project 'nope'")
    sh.fails("issue", "frob", cwd=repo, says="invalid choice: 'frob'")
    assert not Task.objects.exists()


# --- start / status / queue -----------------------------------------------------------------------


def test_start_drives_the_project_in_the_foreground(sh, repo):
    sh("issue", "create", "Write notes", cwd=repo)
    out = sh("start", "web").stdout
    run = ExecutionRun.objects.get()
    assert run.status == "succeeded" and f"run #{run.pk}" in out
    assert Task.objects.get().status != "todo"


def test_start_in_the_background_returns_at_once(sh, repo):
    sh("issue", "create", "Write notes", cwd=repo)
    started = sh.json("start", "--background", cwd=repo)
    assert started["name"] == "web" and os.path.exists(started["log"])
    deadline = time.monotonic() + 120  # wait for the detached process (never left running)
    while time.monotonic() < deadline and _alive(started["pid"]):
        time.sleep(0.5)
    assert not _alive(started["pid"]), "the background manager did not finish"
    assert ExecutionRun.objects.get().status == "succeeded"
    assert "succeeded" in open(started["log"]).read()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_start_bad_arguments(sh, repo):
    sh.fails("start", "nope", says="No project 'nope'")
    sh("project", "add", "web", "--path", str(repo))
    sh.fails("start", "web", "--max-budget", "-3", says="--max-budget")
    sh.fails("start", "web", "--project", "other", says="Give the project once")
    sh("project", "autonomy", "web", "--pause")
    sh.fails("start", "web", says="is paused")
    assert not ExecutionRun.objects.exists()


def test_status_lists_running_sessions_across_projects(sh, repo, tmp_path):
    assert sh("status").stdout.strip() == "no running sessions"
    sh("project", "add", "web", "--path", str(repo))
    sh("project", "add", "other", "--path", str(make_repo(tmp_path / "other")))
    started = timezone.now() - timezone.timedelta(minutes=5)
    one = ExecutionRunFactory(
        project=Project.objects.get(name="web"),
        status="running",
        pid=4242,
        started_at=started,
        cost_usd=Decimal("0.25"),
    )
    two = ExecutionRunFactory(
        project=Project.objects.get(name="other"), status="waiting_approval", pid=4343, started_at=started
    )
    ExecutionRunFactory(project=Project.objects.get(name="web"), status="succeeded")
    rows = json.loads(sh("status", "--format", "json").stdout)
    assert [(r["id"], r["project_name"], r["pid"]) for r in rows] == [
        (one.pk, "web", 4242),
        (two.pk, "other", 4343),
    ]
    assert rows[0]["uptime_seconds"] >= 300 and rows[0]["cost_usd"] == 0.25
    table = sh("status").stdout
    assert table.splitlines()[0].split() == ["ID", "PROJECT", "STATUS", "PID", "UPTIME", "COST"]
    assert "4242" in table and "5m" in table and "$0.2500" in table
    assert [r["id"] for r in sh.json("status", "--project", "other")] == [two.pk]
    assert sh.json("status", str(one.pk))["id"] == one.pk  # one run, as before


def test_status_bad_arguments(sh):
    sh.fails("status", "999", says="No run '999'")
    sh.fails("status", "--format", "xml", says="invalid choice: 'xml'")
    sh.fails("status", "--project", "nope", says="No project 'nope'")


def test_queue_status_and_clear(sh, repo):
    sh("project", "add", "web", "--path", str(repo))
    queued = ExecutionRunFactory(project=Project.objects.get(), status="queued", prompt="Do the thing")
    data = json.loads(sh("queue", "status", "--format", "json").stdout)
    assert [(r["run"], r["position"]) for r in data["runs"]] == [(queued.pk, 1)]
    assert "Do the thing" in sh("queue", "status").stdout
    cleared = sh.json("queue", "clear")
    assert cleared["cancelled"] == [queued.pk]
    queued.refresh_from_db()
    assert queued.status == "cancelled"


def test_queue_bad_arguments(sh):
    sh.fails("queue", "frob", says="invalid choice: 'frob'")
    sh.fails("queue", "status", "--format", "yaml", says="invalid choice: 'yaml'")
    sh.fails("queue", "status", "--project", "nope", says="No project 'nope'")
    assert get_user_model().objects.filter(username=LOCAL_USER).exists()
