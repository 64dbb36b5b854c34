"""`autopilot --help`, `manage`, completion and zero set-up, through the real console script (issue #13)."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest
from django.db.migrations.loader import MigrationLoader

from tests.cli.shell import LOCAL_USER, Shell, fresh_env
from tests.gitrepo import git, make_repo

DJANGO_ONLY = (
    "changepassword",
    "compilemessages",
    "drf_create_token",
    "runworker",
    "sqlflush",
    "createsuperuser",
)


@pytest.fixture
def fresh(tmp_path) -> Shell:
    """A shell whose data directory is empty: no database at all."""
    return Shell(fresh_env(tmp_path / "data"), tmp_path)


# --- help -----------------------------------------------------------------------------------------


def test_help_lists_our_commands_by_group_and_nothing_of_djangos(fresh):
    text = fresh("--help").stdout
    for group in (
        "Projects:",
        "Blueprints & plan:",
        "Tasks / issues:",
        "Runs & sessions:",
        "Manager & queue:",
        "Integration:",
        "MCP:",
        "Server & setup:",
    ):
        assert group in text
    for command in (
        "project",
        "issue",
        "task",
        "run",
        "status",
        "start",
        "queue",
        "serve",
        "completion",
        "manage",
    ):
        assert f"\n  {command} " in text
    assert not [name for name in DJANGO_ONLY if name in text]
    assert all(len(line) <= 130 for line in text.splitlines())  # one line per command
    assert fresh().stdout == text  # `autopilot` alone shows the same


def test_subcommand_help_hides_djangos_options_which_still_work(fresh):
    text = fresh("project", "--help").stdout
    assert "--json" in text and "--user" in text
    assert not [
        opt
        for opt in (
            "--settings",
            "--pythonpath",
            "--traceback",
            "--no-color",
            "--skip-checks",
            "--verbosity",
            "--version",
        )
        if opt in text
    ]
    assert "set-default" in text
    assert fresh("project", "--no-color", "--verbosity", "0", "list").returncode == 0
    assert fresh("status", "--no-color", "--skip-checks").returncode == 0


def test_djangos_commands_live_under_manage(fresh):
    assert "Available subcommands" in fresh("manage").stdout + fresh("manage").stderr
    checked = fresh("manage", "check")
    assert "System check identified no issues" in checked.stdout


def test_unknown_command_exits_2_with_one_line(fresh):
    fresh.fails("frobnicate", says="unknown command 'frobnicate'")


# --- completion -----------------------------------------------------------------------------------


def test_bash_completion_completes_commands_actions_and_options(fresh, tmp_path):
    script = tmp_path / "autopilot.bash"
    script.write_text(fresh("completion", "bash").stdout)

    def complete(*words: str) -> list[str]:
        array = " ".join(f"'{w}'" for w in ("autopilot", *words))
        probe = (
            f"source {script}; COMP_WORDS=({array}); COMP_CWORD={len(words)}; _autopilot; "
            "echo ${COMPREPLY[@]}"
        )
        return subprocess.run(
            ["bash", "-c", probe], capture_output=True, text=True, check=True
        ).stdout.split()

    assert {"project", "issue", "queue"} <= set(complete(""))
    assert complete("qu") == ["queue"]
    assert {"add", "list", "view", "edit", "remove", "set-default"} <= set(complete("project", ""))
    assert complete("project", "edit", "--test-") == ["--test-command"]
    assert set(complete("queue", "")) == {"status", "clear"}
    assert "--settings" not in complete("project", "list", "--")


def test_zsh_completion_is_a_valid_script(fresh, tmp_path):
    text = fresh("completion", "zsh").stdout
    assert text.startswith("#compdef autopilot") and "bashcompinit" in text and "_autopilot" in text
    (tmp_path / "c.sh").write_text(text)
    assert subprocess.run(["bash", "-n", str(tmp_path / "c.sh")]).returncode == 0


def test_completion_for_an_unknown_shell_exits_2(fresh):
    fresh.fails("completion", "fish", says="invalid choice: 'fish'")


# --- zero set-up ----------------------------------------------------------------------------------


def test_a_fresh_data_directory_is_set_up_and_the_os_user_owns_what_it_creates(fresh, tmp_path):
    # Given an empty data directory and a repository on `master` (not `main`)
    repo = make_repo(tmp_path / "shop", branch="master")
    assert not (tmp_path / "data").exists()
    # When the very first command is an issue created inside that repository
    created = fresh("issue", "create", "Fix authentication bug", "--priority", "high", "--json", cwd=repo)
    # Then the data directory was set up (said on stderr), the repository registered on its branch
    assert "set up a new data directory" in created.stderr
    task = json.loads(created.stdout.strip().splitlines()[-1])
    assert (task["title"], task["priority"]) == ("Fix authentication bug", 3)
    project = fresh.json("project", "view", cwd=repo)
    assert (project["name"], project["base_branch"], project["repo_path"]) == ("shop", "master", str(repo))
    # And the local account (named after the OS user) owns it, without any account set up first
    assert [(m["username"], m["role"]) for m in project["members"]] == [(LOCAL_USER, "owner")]
    db = sqlite3.connect(tmp_path / "data" / "autopilot.sqlite3")
    password, superuser = db.execute(
        "select password, is_superuser from auth_user where username=?", (LOCAL_USER,)
    ).fetchone()
    assert password.startswith("!") and superuser == 1  # no web login until `autopilot user password`
    created_events = [
        json.loads(row[0]) for row in db.execute("select data from autopilot_event where kind='user.created'")
    ]
    assert created_events == [{"user": 1, "username": LOCAL_USER, "superuser": True, "local": True}]
    # And a second command finds the same project and the same account (nothing set up twice)
    again = fresh("issue", "list", cwd=repo)
    assert "Fix authentication bug" in again.stdout and "set up" not in again.stderr
    assert db.execute("select count(*) from auth_user").fetchone() == (1,)
    db.close()


def test_user_acts_as_someone_else_with_their_rights(fresh, tmp_path):
    repo = make_repo(tmp_path / "app")
    fresh("project", "add", "app", "--path", str(repo))
    fresh("user", "create", "vera", "--password-stdin", stdin="vera-password-123\n")
    fresh.fails("project", "edit", "app", "--test-command", "make", "--user", "vera", says="No project 'app'")
    fresh("project", "members", "app", "--add", "vera", "--role", "viewer")
    fresh.fails("project", "edit", "app", "--test-command", "make", "--user", "vera", says="test_command")
    fresh.fails("project", "list", "--user", "ghost", says="No user 'ghost'")


def test_outside_any_repository_a_fresh_directory_says_what_to_do(fresh, tmp_path):
    (tmp_path / "empty").mkdir()
    fresh.fails(
        "issue", "list", cwd=tmp_path / "empty", says="not in a registered project or a git repository"
    )


def test_a_database_behind_the_code_says_to_run_setup(fresh, tmp_path):
    fresh("project", "list")
    # the newest autopilot migration is not applied (a gap further back would not make it "behind")
    (latest,) = [name for app, name in MigrationLoader(None).graph.leaf_nodes() if app == "autopilot"]
    db = sqlite3.connect(tmp_path / "data" / "autopilot.sqlite3")
    assert (
        db.execute("delete from django_migrations where app='autopilot' and name=?", (latest,)).rowcount == 1
    )
    db.commit()
    db.close()
    fresh.fails("project", "list", says="run `autopilot setup`")


def test_a_detached_head_is_not_registered_silently(fresh, tmp_path):
    repo = make_repo(tmp_path / "loose")
    git(repo, "checkout", "-q", "--detach")
    fresh.fails("issue", "list", cwd=repo, says="detached HEAD")
