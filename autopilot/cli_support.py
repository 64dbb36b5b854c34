"""Shared plumbing for `autopilot …` subcommands (Django management commands).

`AutopilotCommand` adds `--json` and `--user`, turns domain errors into a clear message with exit
code 2 (never a traceback), and gives `emit()` to print either a JSON object or human text.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from autopilot.errors import ApplicationError, NotFound
from autopilot.models import Project
from autopilot.services import project_get


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
        if self.json_option:
            parser.add_argument("--json", action="store_true", help="Print machine-readable JSON.")
        parser.add_argument("--user", help="Act as this user (recorded in events); default: the first superuser.")
        return parser

    def add_action(self, subparsers, name: str, help_text: str, *, project: bool = False):
        """A sub-action (`autopilot task create …`). It accepts --json/--user after its own arguments
        too; SUPPRESS keeps a value given before the action name."""
        action = subparsers.add_parser(name, help=help_text, description=help_text)
        if project:
            action.add_argument("project", help="Project id, slug or name.")
        if self.json_option:
            action.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="Print machine-readable JSON.")
        action.add_argument("--user", default=argparse.SUPPRESS, help="Act as this user.")
        return action

    def execute(self, *args, **options):
        self.as_json = options.get("json", False)
        try:
            return super().execute(*args, **options)
        except ApplicationError as exc:
            if self.as_json:
                self.stdout.write(json.dumps({"error": exc.message, **({"extra": to_jsonable(exc.extra)} if exc.extra else {})}))
            raise CommandError(exc.message, returncode=2) from exc

    def actor(self, options):
        User = get_user_model()
        username = options.get("user")
        if username:
            user = User.objects.filter(username=username).first()
            if user is None:
                raise ApplicationError(f"No user '{username}'.")
            return user
        return User.objects.filter(is_superuser=True, is_active=True).order_by("pk").first()

    def emit(self, data: Any, text: str | None = None) -> None:
        """Print `data` as one JSON line with --json, else `text` (or a readable rendering)."""
        if self.as_json:
            self.stdout.write(json.dumps(to_jsonable(data), ensure_ascii=False))
        else:
            self.stdout.write(text if text is not None else json.dumps(to_jsonable(data), indent=2, ensure_ascii=False))
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


def resolve_project(identifier, *, user, register=True):
    """The project a command works on: `identifier` (id, slug or name) when given, else the registered
    project whose repository contains the current directory (the deepest one).

    Minimal version (issue #13, cli2); the full one (default project, registering the current repository
    on first use) comes with the project commands and keeps this signature."""
    if identifier not in (None, ""):
        return project_get(identifier)
    cwd = Path.cwd().resolve()
    best, depth = None, -1
    for project in Project.objects.all().only("pk", "repo_path", "subdirectory"):
        root = Path(project.repo_path).resolve()
        if project.subdirectory:
            root = root / project.subdirectory
        if (cwd == root or root in cwd.parents) and len(root.parts) > depth:
            best, depth = project, len(root.parts)
    if best is None:
        raise NotFound("No project given and none contains the current directory: pass --project NAME "
                       "(`autopilot project list` shows them).")
    return Project.objects.get(pk=best.pk)
