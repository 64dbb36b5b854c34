"""Shared plumbing for `autopilot …` subcommands (Django management commands).

`AutopilotCommand` adds `--json` and `--user`, turns domain errors into a clear message with exit
code 2 (never a traceback), and gives `emit()` to print either a JSON object or human text.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

from autopilot import selectors, services
from autopilot.errors import ApplicationError, NotFound
from autopilot.local_account import default_project_get, local_account
from autopilot.models import Project

# Django's options on every command: they keep working but are left out of our commands' help.
DJANGO_OPTIONS = frozenset(
    {
        "--settings",
        "--pythonpath",
        "--traceback",
        "--no-color",
        "--force-color",
        "--skip-checks",
        "--verbosity",
        "--version",
    }
)
LIST_PROJECTS = "list them with `autopilot project list`"


def _git(cwd: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def current_branch(repo: str | Path) -> str | None:
    """The branch checked out in `repo` (None: detached HEAD or not a repository)."""
    return _git(Path(repo), "symbolic-ref", "--quiet", "--short", "HEAD")


def git_toplevel(path: str | Path) -> str | None:
    """The top directory of the git repository containing `path` (None: not in one)."""
    return _git(Path(path), "rev-parse", "--show-toplevel")


def _visible(user) -> Any:
    return Project.objects.all() if user is None else selectors.project_list(user=user)


def project_containing(path: Path, *, user) -> Project | None:
    """The registered project (visible to `user`) whose working directory contains `path`; the deepest
    one when several do (a monorepo part wins over the whole repository)."""
    best, best_depth = None, -1
    for pk, repo_path, subdirectory in _visible(user).values_list("pk", "repo_path", "subdirectory"):
        root = Path(repo_path).expanduser()
        if subdirectory:
            root = root / subdirectory
        try:
            root = root.resolve()
        except OSError:
            continue
        if (path == root or path.is_relative_to(root)) and len(root.parts) > best_depth:
            best, best_depth = pk, len(root.parts)
    return _visible(user).get(pk=best) if best is not None else None


def _free_name(name: str) -> str:
    taken = set(Project.objects.filter(name__startswith=name).values_list("name", flat=True))
    if name not in taken:
        return name
    number = 2
    while f"{name}-{number}" in taken:
        number += 1
    return f"{name}-{number}"


def resolve_project(
    identifier: str | None, *, user, register: bool = True, cwd: str | Path | None = None
) -> Project:
    """The project a CLI command works on (DESIGN.md §6a):

    1. `identifier` (id, slug or name; `--project NAME` or the positional argument) when given;
    2. else the registered project whose repository (or subdirectory) contains the current directory;
    3. else `user`'s default project (`autopilot project set-default NAME`);
    4. else the current directory's git repository, registered on first use (when `register`) as a
       project named after its directory, on its current branch, owned by `user`.
    Only projects `user` can see are found (`user=None`: the server itself sees all). Anything else is
    a NotFound whose one line says what was not found and how to go on.
    """
    if identifier not in (None, ""):
        text = str(identifier).strip()
        try:
            if user is None:
                return services.project_get(text)
            return selectors.project_get_visible(user=user, identifier=text)
        except NotFound:
            raise NotFound(f"No project '{text}' ({LIST_PROJECTS}).") from None
    here = Path(cwd or os.getcwd()).resolve()
    project = project_containing(here, user=user)
    if project is not None:
        return project
    project = default_project_get(user)
    if project is not None and _visible(user).filter(pk=project.pk).exists():
        return project
    top = git_toplevel(here)
    if top is None:
        raise NotFound(
            f"No project here: '{here}' is not in a registered project or a git repository and there is no "
            f"default project; pass --project NAME ({LIST_PROJECTS}) "
            "or run `autopilot project set-default NAME`."
        )
    if not register:
        raise NotFound(
            f"The git repository '{top}' is not a registered project; register it with "
            f"`autopilot project add NAME --path {top}` ({LIST_PROJECTS})."
        )
    branch = current_branch(top)
    if branch is None:
        raise ApplicationError(
            f"The git repository '{top}' has no current branch (detached HEAD); check out a branch "
            f"or register it with `autopilot project add NAME --path {top} --base-branch BRANCH`."
        )
    return services.project_create(
        name=_free_name(Path(top).name or "project"),
        repo_path=top,
        base_branch=branch,
        owner=user,
        actor=user,
    )


def _database_label() -> str:
    default = settings.DATABASES["default"]
    if default["ENGINE"].endswith("sqlite3"):
        return str(default["NAME"])
    return f"{default.get('HOST') or 'localhost'}/{default['NAME']}"


def ensure_database(stderr=None) -> None:
    """Zero set-up: an empty database is set up on the spot (`autopilot setup`, quietly, under a lock in
    the data directory so two first commands don't race); a database with pending migrations is left
    alone and the error says what to run. Raises ApplicationError (one line) when it cannot."""
    import fcntl

    def pending() -> int:
        executor = MigrationExecutor(connections["default"])
        return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))

    try:
        if "django_migrations" in connections["default"].introspection.table_names():
            count = pending()
            if count:
                raise ApplicationError(
                    f"The database {_database_label()} needs {count} migration(s) for this version: "
                    "run `autopilot setup`."
                )
            return
        lock_path = Path(settings.DATA_DIR) / ".setup.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if "django_migrations" in connections["default"].introspection.table_names() and not pending():
                return  # another command set it up while we waited
            call_command("setup", verbosity=0, stdout=io.StringIO())
        if stderr is not None:
            stderr.write(f"autopilot: set up a new data directory in {settings.DATA_DIR}\n")
    except DatabaseError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ApplicationError(
            f"Cannot use the database {_database_label()}: {first} (check DATABASE_URL / AUTOPILOT_DATA_DIR, "
            "then run `autopilot setup`)."
        ) from None


PRIORITY_NAMES = {"lowest": 0, "low": 1, "medium": 2, "high": 3, "highest": 4, "urgent": 5}


def parse_priority(text: str) -> int:
    """`--priority`: 0–5 or lowest, low, medium, high, highest, urgent (an argparse `type`)."""
    value = str(text).strip().lower()
    if value in PRIORITY_NAMES:
        return PRIORITY_NAMES[value]
    if value.isdigit() and 0 <= int(value) <= 5:
        return int(value)
    raise argparse.ArgumentTypeError(
        f"'{text}' is not a priority: give 0–5 or one of {', '.join(PRIORITY_NAMES)}"
    )


def to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


class AutopilotCommand(BaseCommand):
    json_option = True

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name.replace("manage.py", "autopilot"), subcommand, **kwargs)
        for action in parser._actions:  # Django's own options still work, but the help shows ours only
            if DJANGO_OPTIONS.intersection(action.option_strings):
                action.help = argparse.SUPPRESS
        if self.json_option:
            parser.add_argument("--json", action="store_true", help="Print machine-readable JSON.")
        parser.add_argument("--user", help="Act as this user, with their rights(default: the local account).")
        return parser

    def add_action(self, subparsers, name: str, help_text: str, *, project: bool = False):
        """A sub-action (`autopilot task create …`). It accepts --json/--user after its own arguments
        too; SUPPRESS keeps a value given before the action name."""
        action = subparsers.add_parser(name, help=help_text, description=help_text)
        if project:  # optional: PROJECT or --project NAME, else resolve_project's order
            action.add_argument(
                "project",
                nargs="?",
                default=argparse.SUPPRESS,
                help="Project id, slug or name (default: the current project).",
            )
            action.add_argument(
                "--project", dest="project", default=None, metavar="NAME", help="Same as PROJECT."
            )
        if self.json_option:
            action.add_argument(
                "--json", action="store_true", default=argparse.SUPPRESS, help="Print machine-readable JSON."
            )
        action.add_argument("--user", default=argparse.SUPPRESS, help="Act as this user.")
        return action

    needs_database = True

    def execute(self, *args, **options):
        try:
            return self._execute(*args, **options)
        except CommandError as exc:
            if not getattr(self, "_called_from_command_line", False) or options.get("traceback"):
                raise
            self.stderr.write(f"error: {exc}")  # one plain line, never a traceback
            sys.exit(exc.returncode)

    def _execute(self, *args, **options):
        self.as_json = options.get("json", False)
        try:
            if self.needs_database:
                ensure_database(sys.stderr)
            return super().execute(*args, **options)
        except ApplicationError as exc:
            if self.as_json:
                self.stdout.write(
                    json.dumps(
                        {"error": exc.message, **({"extra": to_jsonable(exc.extra)} if exc.extra else {})}
                    )
                )
            raise CommandError(exc.message, returncode=2) from exc

    def actor(self, options):
        """`--user X` (X's rights), else the local account (autopilot.local_account: the OS user)."""
        username = options.get("user")
        if username:
            user = get_user_model().objects.filter(username=username).first()
            if user is None:
                raise NotFound(f"No user '{username}' (list them with `autopilot user list`).")
            return user
        return local_account()

    def project(self, identifier: str | None, options, *, register: bool = True) -> Project:
        """The project this command works on: see `resolve_project`."""
        return resolve_project(identifier, user=self.actor(options), register=register)

    def emit(self, data: Any, text: str | None = None) -> None:
        """Print `data` as one JSON line with --json, else `text` (or a readable rendering)."""
        if self.as_json:
            self.stdout.write(json.dumps(to_jsonable(data), ensure_ascii=False))
        else:
            self.stdout.write(
                text if text is not None else json.dumps(to_jsonable(data), indent=2, ensure_ascii=False)
            )
        self.stdout.flush()

    def progress(self, done: float, label: str = "") -> None:
        """A one-line progress bar on stderr (only on a terminal, never in --json mode)."""
        if self.as_json or not sys.stderr.isatty():
            return
        width = 30
        filled = int(width * max(0.0, min(1.0, done)))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done * 100:5.1f}% {label[:40]:<40}")
        if done >= 1:
            sys.stderr.write("\n")
        sys.stderr.flush()


def format_table(rows: list[list[Any]], headers: list[str], *, terminal: bool | None = None) -> str:
    """Rows as aligned columns under a header. On a terminal the last column is cut to the terminal's
    width; elsewhere (a pipe, a file) every cell is written whole, one plain line per row."""
    import shutil

    if terminal is None:
        terminal = sys.stdout.isatty()
    cells = [
        [("—" if value in (None, "") else str(value)).replace("\n", " ") for value in row] for row in rows
    ]
    widths = [max([len(headers[i])] + [len(row[i]) for row in cells]) for i in range(len(headers))]
    limit = shutil.get_terminal_size((120, 24)).columns if terminal else None

    def line(values: list[str]) -> str:
        last = len(values) - 1
        text = "  ".join(f"{value:<{widths[i]}}" if i < last else value for i, value in enumerate(values))
        return text[: limit - 1] + "…" if limit and len(text) > limit else text

    return "\n".join([line(headers)] + [line(row) for row in cells])


def confirm(question: str, *, assume_yes: bool) -> bool:
    """Ask on a terminal; without one (a script) refuse unless --yes was given."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise ApplicationError(f"{question.rstrip('?')}: pass --yes to confirm (no terminal to ask on).")
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")
