"""Fixtures shared by every test. App-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import shutil
import socket

import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from tests.factories import MembershipFactory, ProjectFactory, UserFactory


def pytest_report_header(config):
    db = settings.DATABASES["default"]
    return [
        f"autopilot database: {db['ENGINE'].rsplit('.', 1)[-1]} ({db.get('HOST') or db['NAME']})",
        f"autopilot channel layer: {settings.CHANNEL_LAYERS['default']['BACKEND']}",
    ]


@pytest.fixture(scope="session", autouse=True)
def _clean_test_repos():
    from tests.factories import repo_root_for_tests

    for root in (settings.DATA_DIR / "test-repos", repo_root_for_tests()):
        shutil.rmtree(root, ignore_errors=True)
    yield


class FastPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2 with few iterations (a user with a password costs ~0.4 s at Django's default). Same
    algorithm id, so child processes with the default hashers still verify these passwords."""

    iterations = 1000


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing():
    from django.test import override_settings

    override = override_settings(PASSWORD_HASHERS=["tests.conftest.FastPBKDF2PasswordHasher"])
    override.enable()
    yield
    override.disable()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def project(db):
    return ProjectFactory()


@pytest.fixture
def operator(db, project):
    return MembershipFactory(project=project, role="operator").user


@pytest.fixture
def viewer(db, project):
    return MembershipFactory(project=project, role="viewer").user


@pytest.fixture
def owner(db, project):
    return MembershipFactory(project=project, role="owner").user


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_collection_modifyitems(config, items):
    """Every database test may touch every database alias: on the embedded default the channel layer
    keeps its messages in a second SQLite file, and on-commit pushes write there."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is not None and "databases" not in marker.kwargs:
            marker.kwargs["databases"] = "__all__"


@pytest.fixture
def subprocess_env(transactional_db):
    """Environment for a child process (worker, `autopilot serve`, the CLI) that must see this test's
    databases. Needs committed data: tests using it run with `django_db(transaction=True)`."""
    import os

    from django.db import connections

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "autopilot.settings", "PYTHONUNBUFFERED": "1"}
    default = connections["default"].settings_dict
    if default["ENGINE"].endswith("sqlite3"):
        env["AUTOPILOT_SQLITE_PATH"] = str(default["NAME"])
    else:
        user = default.get("USER") or "postgres"
        host = default.get("HOST") or "127.0.0.1"
        port = default.get("PORT") or 5432
        from urllib.parse import quote

        password = f":{quote(default['PASSWORD'], safe='')}" if default.get("PASSWORD") else ""
        env["DATABASE_URL"] = f"postgres://{quote(user, safe='')}{password}@{host}:{port}/{default['NAME']}"
    if "channels" in connections.settings:
        env["AUTOPILOT_CHANNELS_SQLITE_PATH"] = str(connections["channels"].settings_dict["NAME"])
    return env
