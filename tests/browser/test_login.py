"""Log in through the real form, see the dashboard, open a project, log out: real server, real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.factories import MembershipFactory, ProjectFactory


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_login_dashboard_project_page_and_logout(
    logged_in_page, browser_user, project, asgi_server, tmp_path
):
    page = logged_in_page
    # Given the user is a member of one project, and another project exists that they can't see
    MembershipFactory(project=project, user=browser_user, role="viewer")
    hidden = ProjectFactory()

    # When they open the dashboard, then only their project can be picked
    page.goto("/")
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_label("Filter by project").locator("option", has_text=project.name)).to_have_count(1)
    expect(page.get_by_label("Filter by project").locator("option", has_text=hidden.name)).to_have_count(0)

    # When they open the projects page, then it lists their project and not the other one
    page.goto("/projects/")
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    expect(page.get_by_role("link", name=project.name)).to_be_visible()
    expect(page.get_by_role("link", name=hidden.name)).to_have_count(0)
    expect(page.get_by_text(browser_user.username)).to_be_visible()
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    # When they open the project
    page.get_by_role("link", name=project.name).click()

    # Then the project page shows it, with its tabs
    expect(page).to_have_url(f"{asgi_server.url}/projects/{project.pk}/")
    expect(page.get_by_role("heading", name=project.name)).to_be_visible()
    expect(page.get_by_role("link", name="Runs")).to_be_visible()
    page.screenshot(path=str(tmp_path / "project.png"), full_page=True)

    # When they log out
    page.get_by_role("button", name="Log out").click()

    # Then they are back at the login page, and the dashboard asks for a login again
    expect(page).to_have_url(f"{asgi_server.url}/accounts/login/")
    page.goto("/")
    expect(page).to_have_url(f"{asgi_server.url}/accounts/login/?next=/")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_wrong_password_shows_an_error(page, browser_user, tmp_path):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(browser_user.username)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("didn't match")).to_be_visible()
    page.screenshot(path=str(tmp_path / "login.png"))
    assert page.url.endswith("/accounts/login/")
