"""The projects page in a real browser: add a project (branch detected) and remove it with a
confirmation that names what happens to the files."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from autopilot.models import Project
from tests.factories import grant_register
from tests.factories import repo_root_for_tests as repo_root_dir
from tests.gitrepo import make_repo
from tests.liveserver import LiveServer

SHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"


@pytest.fixture
def repo_root():
    root = repo_root_dir().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def asgi_server(subprocess_env, tmp_path, repo_root):
    """The live server, with the repository root the form may register from."""
    with LiveServer(
        env={**subprocess_env, "AUTOPILOT_REPO_ROOTS": str(repo_root)}, log_path=tmp_path / "daphne.log"
    ) as server:
        yield server


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_add_and_remove_a_project(logged_in_page, browser_user, repo_root):
    page = logged_in_page
    grant_register(browser_user)
    repo = make_repo(Path(tempfile.mkdtemp(dir=repo_root)) / "web-project")
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "-b", "develop"], check=True)

    page.goto("/projects/")
    expect(page.get_by_role("link", name="Projects", exact=True)).to_have_attribute("aria-current", "page")
    form = page.locator("#project-form")
    form.get_by_label("Name").fill("From the web")
    form.get_by_label("Repository path").fill(str(repo_root / "missing"))
    form.get_by_role("button", name="Add project").click()
    expect(page.locator("#project-error")).to_contain_text("does not exist")
    assert not Project.objects.filter(name="From the web").exists()

    form = page.locator("#project-form")
    form.get_by_label("Repository path").fill(str(repo))
    expect(page.get_by_test_id("branch-hint")).to_contain_text("develop")
    form.get_by_label("Test command").fill("python3 -m unittest -q")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "projects-add.png"), full_page=True)
    form.get_by_role("button", name="Add project").click()
    expect(page.get_by_role("heading", name="From the web")).to_be_visible()
    expect(page.locator(".messages")).to_contain_text("base branch develop")
    project = Project.objects.get(name="From the web")
    assert project.base_branch == "develop" and project.test_command == "python3 -m unittest -q"

    page.goto("/projects/")
    row = page.locator(f"[data-testid=project-row][data-project='{project.pk}']")
    expect(row).to_contain_text("From the web")
    page.screenshot(path=str(SHOTS / "projects.png"), full_page=True)
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    row.get_by_test_id("remove-project").click()
    expect(row).to_be_visible()
    assert "NOT touched" in questions[0] and Project.objects.filter(pk=project.pk).exists()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_test_id("remove-project").click()
    expect(page.locator(".messages")).to_contain_text("was not touched")
    expect(row).to_have_count(0)
    assert not Project.objects.filter(pk=project.pk).exists()
    assert (repo / ".git").is_dir()
