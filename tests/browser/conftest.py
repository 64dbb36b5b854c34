"""Browser test fixtures: the real ASGI server in a subprocess and headless Chromium through Playwright.

Use them for any page (mark the test `@pytest.mark.browser` and `@pytest.mark.django_db(transaction=True)`):

    @pytest.mark.browser
    @pytest.mark.django_db(transaction=True)
    def test_my_page(logged_in_page, browser_user, project, asgi_server):
        MembershipFactory(project=project, user=browser_user, role="operator")   # grant access
        logged_in_page.goto(f"/projects/{project.pk}/tasks/")                    # base_url is the server
        expect(logged_in_page.get_by_role("heading", name=project.name)).to_be_visible()

Fixtures
- `asgi_server`: daphne serving `autopilot.asgi` (HTTP, websockets, static files through whitenoise)
  on a free 127.0.0.1 port, against this test's databases (`subprocess_env`, so data you create in
  the test is visible once committed: `transaction=True`). A `tests.liveserver.LiveServer`:
  `.url`, `.ws_url`, `.log()` (the server's output, handy in assertion messages).
- `browser`: a headless Chromium (Debian's /usr/bin/chromium; `make test` installs it) launched once
  per test module. Skipped with a clear reason only when /usr/bin/chromium is absent.
- `page`: a fresh browser context + page per test, with `base_url` set to `asgi_server.url`, so
  `page.goto("/")` works. Not logged in.
- `browser_user`: a user (password `BROWSER_PASSWORD`) created in the database; no project access —
  add memberships (tests.factories.MembershipFactory) or make it a superuser as the test needs.
- `logged_in_page`: `page` after logging `browser_user` in through the real login form (/accounts/login/).

While a module's browser is open, Playwright's event loop runs in the test thread, which makes
Django refuse ORM calls as "async-unsafe"; the `browser` fixture sets DJANGO_ALLOW_ASYNC_UNSAFE for
that module only (the ORM is still used synchronously, from one thread). For the same reason events
recorded in the test process are not pushed live (async_to_sync cannot run there): record them from
a subprocess, or reload the page.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.factories import UserFactory
from tests.liveserver import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]
BROWSER_PASSWORD = "pw-for-tests-123"  # tests.factories.UserFactory's password
ACTION_TIMEOUT_MS = 15_000


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here) and item.get_closest_marker("browser") is None:
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def asgi_server(subprocess_env, tmp_path):
    with LiveServer(env=subprocess_env, log_path=tmp_path / "daphne.log") as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            "Chromium is not installed at /usr/bin/chromium (apt-get install chromium, or `make browser`)"
        )
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, asgi_server):
    context = browser.new_context(base_url=asgi_server.url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def browser_user(browser, transactional_db):
    # Depends on `browser` so the user is created with DJANGO_ALLOW_ASYNC_UNSAFE already set.
    return UserFactory()


@pytest.fixture
def logged_in_page(page, browser_user):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(browser_user.username)
    page.get_by_label("Password").fill(BROWSER_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    return page
