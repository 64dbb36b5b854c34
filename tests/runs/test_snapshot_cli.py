"""`autopilot project snapshot NAME [--refresh] [--narrative] [--json]` through the real console script."""

from __future__ import annotations

import pytest

from runs.models import ProjectSnapshot
from tests.cli.shell import Shell
from tests.factories import MembershipFactory, ProjectFactory, TaskFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sh(subprocess_env, tmp_path) -> Shell:
    return Shell(subprocess_env, tmp_path)


def test_snapshot_shows_the_latest_and_refresh_makes_a_new_one(sh):
    project = ProjectFactory(name="shop")
    TaskFactory(project=project, title="Checkout", status="blocked")

    shown = sh.json("project", "snapshot", "shop")
    assert shown["data"]["totals"]["blocked"] == 1 and shown["project"] == project.pk
    assert sh.json("project", "snapshot", "shop")["id"] == shown["id"]  # the stored one, not a new one

    refreshed = sh.json("project", "snapshot", "shop", "--refresh")
    assert refreshed["id"] != shown["id"]
    assert ProjectSnapshot.objects.filter(project=project).count() == 2

    text = sh("project", "snapshot", "shop").stdout
    assert f"Snapshot #{refreshed['id']} of shop" in text
    assert "Project shop: 0/1 work tasks done" in text and "1 blocked" in text


def test_narrative_without_a_model_says_why(sh):
    ProjectFactory(name="quiet")
    text = sh("project", "snapshot", "quiet", "--narrative").stdout
    assert "No narrative: The project's manager role uses the scripted backend" in text


def test_a_viewer_may_read_but_not_refresh(sh):
    project = ProjectFactory(name="ro")
    viewer = MembershipFactory(project=project, role="viewer").user
    assert sh.json("project", "snapshot", "ro", "--user", viewer.username)["project"] == project.pk
    refused = sh("project", "snapshot", "ro", "--refresh", "--user", viewer.username, ok=False)
    assert refused.returncode == 2 and "operator role" in refused.stderr


def test_an_unknown_project_is_a_clear_error(sh):
    result = sh("project", "snapshot", "no-such-project", "--json", ok=False)
    assert result.returncode == 2 and "no-such-project" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
