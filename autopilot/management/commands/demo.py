"""`autopilot demo`: an admin user, a demo project over a small git repository, and a short blueprint.

Idempotent: running it again creates nothing twice and prints the same admin password (kept in
DATA_DIR/admin-password.txt, mode 0600). The demo project uses the offline `scripted` agent backend,
so it works with no API key; it is labelled as a demo wherever it appears. Each task of its blueprint
carries the scripted actions that really implement it (code and unit tests), so in full_auto the
manager runs them, the merge queue tests and merges each into the integration branch, and the
calculator there works.
"""

from __future__ import annotations

import json
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

# What each demo task's agent does. The demo's agents are the offline `scripted` backend, so each
# section of the blueprint carries, in a ```scripted block, the actions that implement it: the code
# AND its unit tests, each task editing what its prerequisites wrote (the run starts from the
# integration branch, which holds them). Nothing is marked done that was not done: the integration
# test command (`python3 -m unittest`) runs every test written so far before a task's work is merged.
MULTIPLY_CODE = "\n\ndef multiply(a, b):\n    return a * b\n"
MULTIPLY_TESTS = (
    "\n    def test_multiply(self):\n"
    "        self.assertEqual(calc.multiply(4, 3), 12)\n"
    "        self.assertEqual(calc.multiply(-2, 3), -6)\n"
    "        self.assertEqual(calc.multiply(-2, -3), 6)\n"
    "        self.assertEqual(calc.multiply(7, 0), 0)\n"
)
DIVIDE_CODE = (
    "\n\ndef divide(a, b):\n"
    "    if b == 0:\n"
    '        raise ZeroDivisionError(f"cannot divide {a} by zero")\n'
    "    return a / b\n"
)
DIVIDE_TESTS = (
    "\n    def test_divide(self):\n"
    "        self.assertEqual(calc.divide(7, 2), 3.5)\n"
    "        self.assertIsInstance(calc.divide(6, 3), float)\n"
    "\n    def test_divide_by_zero(self):\n"
    '        with self.assertRaisesRegex(ZeroDivisionError, "cannot divide 1 by zero"):\n'
    "            calc.divide(1, 0)\n"
)
CLI_CODE = (
    '\n\nOPERATORS = {"+": add, "-": subtract, "*": multiply, "/": divide}\n'
    'USAGE = "usage: python3 -m calc A OP B   (OP is one of + - * /)"\n'
    "\n\ndef _number(text):\n"
    "    try:\n"
    "        return int(text)\n"
    "    except ValueError:\n"
    "        return float(text)\n"
    "\n\ndef main(argv=None):\n"
    '    """`python3 -m calc A OP B` prints the result; bad input prints the usage line, status 2."""\n'
    "    args = sys.argv[1:] if argv is None else argv\n"
    "    if len(args) != 3 or args[1] not in OPERATORS:\n"
    "        print(USAGE, file=sys.stderr)\n"
    "        return 2\n"
    "    try:\n"
    "        result = OPERATORS[args[1]](_number(args[0]), _number(args[2]))\n"
    "    except ValueError:\n"
    "        print(USAGE, file=sys.stderr)\n"
    "        return 2\n"
    "    except ZeroDivisionError as exc:\n"
    '        print(f"error: {exc}", file=sys.stderr)\n'
    "        return 2\n"
    "    print(result)\n"
    "    return 0\n"
    '\n\nif __name__ == "__main__":\n'
    "    sys.exit(main())\n"
)
CLI_TEST_IMPORTS = (
    "import io\nimport subprocess\nimport sys\nimport unittest\n"
    "from contextlib import redirect_stderr, redirect_stdout\nfrom pathlib import Path\n\nimport calc\n"
)
CLI_TESTS = (
    "\n    def test_command_line_prints_the_result(self):\n"
    '        for args, shown in ((["2", "+", "3"], "5"), (["7", "/", "2"], "3.5"), '
    '(["6", "*", "-2"], "-12"), (["1.5", "-", "1"], "0.5")):\n'
    "            out = io.StringIO()\n"
    "            with redirect_stdout(out):\n"
    "                self.assertEqual(calc.main(args), 0)\n"
    "            self.assertEqual(out.getvalue().strip(), shown)\n"
    "\n    def test_command_line_bad_input_prints_usage_and_exits_2(self):\n"
    '        for args in ([], ["2", "%", "3"], ["two", "+", "3"], ["1", "/", "0"]):\n'
    "            err = io.StringIO()\n"
    "            with redirect_stderr(err):\n"
    "                self.assertEqual(calc.main(args), 2)\n"
    "            self.assertTrue(err.getvalue().strip())\n"
    "\n    def test_python_m_calc(self):\n"
    "        here = Path(__file__).resolve().parent\n"
    '        done = subprocess.run([sys.executable, "-m", "calc", "2", "+", "3"], cwd=here,\n'
    "                              capture_output=True, text=True, timeout=60)\n"
    '        self.assertEqual((done.returncode, done.stdout.strip()), (0, "5"))\n'
    '        bad = subprocess.run([sys.executable, "-m", "calc", "2"], cwd=here,\n'
    "                             capture_output=True, text=True, timeout=60)\n"
    "        self.assertEqual(bad.returncode, 2)\n"
    '        self.assertIn("usage:", bad.stderr)\n'
)
DOCS_README = (
    "\n## Functions\n\n"
    "- `add(a, b)`: the sum of `a` and `b`.\n"
    "- `subtract(a, b)`: `a` minus `b`.\n"
    "- `multiply(a, b)`: the product of `a` and `b`.\n"
    "- `divide(a, b)`: `a` divided by `b`, always a float; dividing by zero raises `ZeroDivisionError`.\n"
    "- `main(argv=None)`: the command line below (returns the exit status).\n"
    "\n## Command line\n\n"
    "`python3 -m calc 2 + 3` prints `5`. The operators are `+ - * /` (quote `*` in a shell). Bad input\n"
    "prints a usage line and exits with status 2.\n"
)
DOCS_TEST = (
    "import inspect\nimport subprocess\nimport sys\nimport unittest\n"
    "from pathlib import Path\n\nimport calc\n\n\n"
    "class DocsTest(unittest.TestCase):\n"
    "    def test_every_function_is_documented_in_the_readme(self):\n"
    '        readme = (Path(__file__).resolve().parent / "README.md").read_text()\n'
    "        functions = [name for name, _ in inspect.getmembers(calc, inspect.isfunction) "
    'if not name.startswith("_")]\n'
    "        self.assertGreaterEqual(len(functions), 5)\n"
    "        for name in functions:\n"
    '            self.assertIn(f"`{name}(", readme)\n'
    "\n    def test_the_readme_example_works(self):\n"
    "        here = Path(__file__).resolve().parent\n"
    '        self.assertIn("`python3 -m calc 2 + 3` prints `5`", (here / "README.md").read_text())\n'
    '        done = subprocess.run([sys.executable, "-m", "calc", "2", "+", "3"], cwd=here,\n'
    "                              capture_output=True, text=True, timeout=60)\n"
    '        self.assertEqual(done.stdout.strip(), "5")\n'
)
TEST_COMMAND_ACTION = {"run": "python3 -m unittest -q"}

# (title, prerequisites, spec text, the scripted actions that implement it), in plan order.
DEMO_TASKS = [
    (
        "Multiplication",
        [],
        "Add `multiply(a, b)` to `calc.py` with unit tests in `test_calc.py`.\n\n"
        "- [ ] `multiply(a, b)` returns the product\n- [ ] tests cover negative numbers and zero",
        [
            {"say": "Adding multiply(a, b) after subtract in calc.py, and its tests."},
            {"edit": "calc.py", "old": "    return a - b\n", "new": "    return a - b\n" + MULTIPLY_CODE},
            {
                "edit": "test_calc.py",
                "old": "        self.assertEqual(calc.subtract(5, 3), 2)\n",
                "new": "        self.assertEqual(calc.subtract(5, 3), 2)\n" + MULTIPLY_TESTS,
            },
            TEST_COMMAND_ACTION,
            {"finish": "multiply(a, b) with tests for negative numbers and zero."},
        ],
    ),
    (
        "Division",
        ["Multiplication"],
        "Add `divide(a, b)`; dividing by zero raises `ZeroDivisionError` with a clear message.\n\n"
        "- [ ] `divide(a, b)` returns a float\n- [ ] division by zero is tested",
        [
            {"say": "Adding divide(a, b) after multiply (from the Multiplication task), and its tests."},
            {"edit": "calc.py", "old": "    return a * b\n", "new": "    return a * b\n" + DIVIDE_CODE},
            {
                "edit": "test_calc.py",
                "old": "        self.assertEqual(calc.multiply(7, 0), 0)\n",
                "new": "        self.assertEqual(calc.multiply(7, 0), 0)\n" + DIVIDE_TESTS,
            },
            TEST_COMMAND_ACTION,
            {"finish": "divide(a, b) returns a float; division by zero raises a clear ZeroDivisionError."},
        ],
    ),
    (
        "Calculator CLI",
        ["Division"],
        "A `python3 -m calc 2 + 3` entry point that prints the result.\n\n"
        "- [ ] parses `a op b` for + - * /\n- [ ] prints a usage line on bad input\n"
        "- [ ] exits with status 2 on errors",
        [
            {"say": "Adding main() and a __main__ entry point to calc.py over the four operations."},
            {
                "edit": "calc.py",
                "old": '"""A tiny calculator."""\n',
                "new": '"""A tiny calculator."""\n\nimport sys\n',
            },
            {"edit": "calc.py", "old": "    return a / b\n", "new": "    return a / b\n" + CLI_CODE},
            {"edit": "test_calc.py", "old": "import unittest\n\nimport calc\n", "new": CLI_TEST_IMPORTS},
            {
                "edit": "test_calc.py",
                "old": "            calc.divide(1, 0)\n",
                "new": "            calc.divide(1, 0)\n" + CLI_TESTS,
            },
            TEST_COMMAND_ACTION,
            {"finish": "`python3 -m calc A OP B` prints the result; bad input: usage line, status 2."},
        ],
    ),
    (
        "Documentation",
        ["Calculator CLI"],
        "Describe the functions and the command line in `README.md`.\n\n- [ ] every function documented",
        [
            {"say": "Documenting every function and the command line in README.md; test_docs.py checks it."},
            {
                "edit": "README.md",
                "old": "Run the tests with `python3 -m unittest -q`.\n",
                "new": "Run the tests with `python3 -m unittest -q`.\n" + DOCS_README,
            },
            {
                "edit": "calc.py",
                "old": '"""A tiny calculator."""\n\nimport sys\n',
                "new": '"""A tiny calculator: add, subtract, multiply, divide and '
                "`python3 -m calc A OP B`.\n\n"
                'README.md documents every function and the command line.\n"""\n\nimport sys\n',
            },
            {"write": "test_docs.py", "content": DOCS_TEST},
            TEST_COMMAND_ACTION,
            {"finish": "README.md documents every function and the command line (test_docs.py checks it)."},
        ],
    ),
]
DEMO_PHASES = [
    ("Phase 1: Arithmetic", ("Multiplication", "Division")),
    ("Phase 2: Command line", ("Calculator CLI", "Documentation")),
]


def demo_blueprint() -> str:
    """The demo blueprint's Markdown: each task's section, its prerequisites and its scripted actions."""
    tasks = {title: (deps, spec, script) for title, deps, spec, script in DEMO_TASKS}
    parts = [
        "A short demo blueprint: two phases that grow the tiny calculator in the demo repository. Each "
        "section ends with the actions the offline `scripted` agent takes to implement it.\n"
    ]
    for phase, titles in DEMO_PHASES:
        parts.append(f"# {phase}\n")
        for title in titles:
            deps, spec, script = tasks[title]
            parts.append(f"## {title}\n")
            if deps:
                parts.append(f"Depends on: {', '.join(deps)}\n")
            parts.append(f"{spec}\n")
            actions = ",\n".join(json.dumps(action) for action in script)
            parts.append(f"```scripted\n[\n{actions}\n]\n```\n")
    return "\n".join(parts)


DEMO_BLUEPRINT = demo_blueprint()

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
                + f"\n  Watch it build the calculator: autopilot project autonomy {project.name} "
                f"--mode full_auto (tested and merged into '{project.integration_branch}'; "
                f"'{project.base_branch}' is never written)"
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
            # Integration as any new project has it: each task's work is merged into the integration
            # branch only after the integration tests pass there; review by mode (suggest and
            # semi_auto wait for a human's approval, full_auto merges straight away).
        )
        return project, True

    def _blueprint(self, project: Project, admin) -> bool:
        if Blueprint.objects.filter(project=project).exists():
            return False

        ingest_blueprint(project=project, text=DEMO_BLUEPRINT, title=DEMO_BLUEPRINT_TITLE, actor=admin)
        return True
