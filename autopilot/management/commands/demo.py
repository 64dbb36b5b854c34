"""`autopilot demo`: an admin user, a demo project over a small git repository, and a short blueprint.

Idempotent: running it again creates nothing twice and prints the same admin password (kept in
DATA_DIR/admin-password.txt, mode 0600). The demo project uses the offline `scripted` agent backend,
so it works with no API key; it is labelled as a demo wherever it appears.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from autopilot.cli_support import AutopilotCommand
from autopilot.models import Project
from autopilot.services import project_create
from blueprints.ingestion import ingest_blueprint
from blueprints.models import Blueprint

ADMIN_USERNAME = "admin"
DEMO_PROJECT = "Demo"
DEMO_BACKEND = "scripted"
DEMO_ROLES = ("manager", "code", "test", "docs")
DEMO_DESCRIPTION = (
    "DEMO project created by `autopilot demo`. Its agents use the offline `scripted` backend "
    "(a deterministic script, not a real model), so everything works without an API key."
)
DEMO_ALLOWLIST = ["python3", "git", "ls", "cat", "grep"]
DEMO_TEST_COMMAND = "python3 -m unittest -q"

DEMO_FILES = {
    "README.md": "# Calculator (Autopilot demo repository)\n\nA tiny module for the Autopilot demo.\n"
    "Run the tests with `python3 -m unittest -q`.\n",
    "calc.py": '"""A tiny calculator."""\n\n\ndef add(a, b):\n    return a + b\n\n\n'
    "def subtract(a, b):\n    return a - b\n",
    "test_calc.py": "import unittest\n\nimport calc\n\n\nclass CalcTest(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(calc.add(2, 3), 5)\n\n"
    "    def test_subtract(self):\n        self.assertEqual(calc.subtract(5, 3), 2)\n\n\n"
    'if __name__ == "__main__":\n    unittest.main()\n',
    ".gitignore": "__pycache__/\n",
}

DEMO_BLUEPRINT_TITLE = "Calculator demo plan"
DEMO_BLUEPRINT = """\
A short demo blueprint: two phases that grow the tiny calculator in the demo repository.

# Phase 1: Arithmetic

## Multiplication

Add `multiply(a, b)` to `calc.py` with unit tests in `test_calc.py`.

- [ ] `multiply(a, b)` returns the product
- [ ] tests cover negative numbers and zero

## Division

Depends on: Multiplication

Add `divide(a, b)`; dividing by zero raises `ZeroDivisionError` with a clear message.

- [ ] `divide(a, b)` returns a float
- [ ] division by zero is tested

# Phase 2: Command line

## Calculator CLI

Depends on: Division

A `python3 -m calc 2 + 3` entry point that prints the result.

- [ ] parses `a op b` for + - * /
- [ ] prints a usage line on bad input
- [ ] exits with status 2 on errors

## Documentation

Describe the functions and the command line in `README.md`.

- [ ] every function documented
"""

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Autopilot demo",
    "GIT_AUTHOR_EMAIL": "demo@autopilot.invalid",
    "GIT_COMMITTER_NAME": "Autopilot demo",
    "GIT_COMMITTER_EMAIL": "demo@autopilot.invalid",
}


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **GIT_IDENTITY},
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return done.stdout.strip()


class Command(AutopilotCommand):
    help = (
        "Create (idempotently) the demo: user 'admin' with a generated password, a 'Demo' project over a "
        "small git repository in the data directory, and a short blueprint. Offline: scripted agents."
    )

    def handle(self, *args, **options):
        data_dir = Path(settings.DATA_DIR)
        admin, password, admin_created = self._admin(data_dir)
        repo = self._repository(data_dir / "demo-repo")
        project, project_created = self._project(repo, admin)
        ingested = self._blueprint(project, admin)
        url = f"http://{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}/"
        self.emit(
            {
                "admin": {
                    "username": admin.username,
                    "password": password,
                    "created": admin_created,
                    "password_file": str(data_dir / "admin-password.txt"),
                },
                "project": {
                    "id": project.pk,
                    "name": project.name,
                    "created": project_created,
                    "repo_path": project.repo_path,
                    "agent_backend": DEMO_BACKEND,
                },
                "blueprint_ingested": ingested,
            },
            text=(
                f"Demo ready ({'created' if project_created else 'already there'}).\n"
                f"  Log in at {url} as '{admin.username}' with password: {password}\n"
                f"  (kept in {data_dir / 'admin-password.txt'})\n"
                f"  Project '{project.name}' over {project.repo_path}, agents: '{DEMO_BACKEND}' "
                f"(offline DEMO backend, not a real model)"
                + ("\n  Demo blueprint ingested." if ingested else "")
            ),
        )

    # --- pieces -----------------------------------------------------------------------------------

    def _admin(self, data_dir: Path):
        """The 'admin' superuser and its password, kept in DATA_DIR/admin-password.txt (0600).

        No file: a password is generated, set and written. A file: the user is created with it if
        missing; an existing user whose password was changed since is left alone (and we say so).
        """
        User = get_user_model()
        path = data_dir / "admin-password.txt"
        stored = path.read_text().strip() if path.exists() else ""
        with transaction.atomic():
            user, created = User.objects.get_or_create(
                username=ADMIN_USERNAME,
                defaults={"email": "admin@localhost", "is_staff": True, "is_superuser": True},
            )
            if not stored:
                stored = secrets.token_urlsafe(12)
                self._write_secret(path, stored)
                user.set_password(stored)
                user.save(update_fields=["password"])
            elif created:
                user.set_password(stored)
                user.save(update_fields=["password"])
            elif not user.check_password(stored):
                self.stderr.write(
                    f"The password of '{ADMIN_USERNAME}' was changed since the demo set it; "
                    f"{path} is out of date (delete it to get a new one)."
                )
        return user, stored, created

    @staticmethod
    def _write_secret(path: Path, value: str) -> None:
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def _repository(self, repo: Path) -> Path:
        if (repo / ".git").exists():
            return repo
        repo.mkdir(parents=True, exist_ok=True)
        _git(repo, "init", "-q", "-b", "main")
        for name, content in DEMO_FILES.items():
            (repo / name).write_text(content)
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "Demo repository: a tiny calculator")
        return repo

    def _project(self, repo: Path, admin):
        existing = Project.objects.filter(name=DEMO_PROJECT).first()
        if existing is not None:
            return existing, False
        project = project_create(
            name=DEMO_PROJECT,
            repo_path=str(repo),
            base_branch="main",
            description=DEMO_DESCRIPTION,
            test_command=DEMO_TEST_COMMAND,
            command_allowlist=DEMO_ALLOWLIST,
            owner=admin,
            model_matrix={role: {"agent": DEMO_BACKEND, "model": DEMO_BACKEND} for role in DEMO_ROLES},
            # A run whose tests pass completes its task, so a full-auto demo walks the whole graph.
            auto_complete_on_tests=True,
        )
        return project, True

    def _blueprint(self, project: Project, admin) -> bool:
        if Blueprint.objects.filter(project=project).exists():
            return False

        ingest_blueprint(project=project, text=DEMO_BLUEPRINT, title=DEMO_BLUEPRINT_TITLE, actor=admin)
        return True
