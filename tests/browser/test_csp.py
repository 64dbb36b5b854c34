"""The Content-Security-Policy in a real browser: every main page loads without a single violation, and
htmx, the websocket, confirmations and Swagger UI still work under it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from blueprints.graph import generate_tasks
from blueprints.models import Task
from tests.blueprints.graph_helpers import build_plan
from tests.blueprints.test_graph import SPEC
from tests.factories import ExecutionRunFactory, MembershipFactory

# Registered before any page script runs (Playwright injects it whatever the CSP says).
COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " at " + e.sourceFile
                              + ":" + e.lineNumber + " " + (e.sample || ""));
});
"""


class Violations:
    """CSP violations seen by a browser context: `securitypolicyviolation` events and console errors."""

    def __init__(self, context):
        self.console: list[str] = []
        context.add_init_script(COLLECT_VIOLATIONS)
        context.on("console", self._on_console)

    def _on_console(self, message):
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.console.append(message.text)

    def of(self, page) -> list[str]:
        return page.evaluate("window.__cspViolations || []") + self.console


def visit(page, violations: Violations, path: str, ready) -> list[str]:
    page.goto(path)
    expect(ready(page)).to_be_visible()
    page.wait_for_load_state("networkidle")
    found = violations.of(page)
    violations.console.clear()
    return found


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_main_pages_load_without_csp_violations_and_htmx_still_works(
    logged_in_page, browser_user, project, asgi_server
):
    page = logged_in_page
    violations = Violations(page.context)
    # Given an operator (and staff, for the admin) on a project with a plan, tasks and a run
    MembershipFactory(project=project, user=browser_user, role="operator")
    browser_user.is_staff = browser_user.is_superuser = True
    browser_user.save(update_fields=["is_staff", "is_superuser"])
    blueprint = build_plan(project, SPEC)
    generate_tasks(blueprint=blueprint)
    task = Task.objects.filter(project=project).order_by("pk").first()
    run = ExecutionRunFactory(project=project, task=task)
    p = project.pk

    # When each main page is opened, Then none reports a CSP violation
    pages = {
        "/": lambda pg: pg.get_by_role("link", name=project.name).first,
        f"/projects/{p}/": lambda pg: pg.get_by_test_id("mode-pill"),
        f"/projects/{p}/tasks/": lambda pg: pg.locator("#board-total"),
        f"/projects/{p}/tasks/{task.pk}/": lambda pg: pg.locator("#dependencies"),
        f"/projects/{p}/runs/": lambda pg: pg.locator("#runs-live"),
        f"/runs/{run.pk}/": lambda pg: pg.locator("#run-live"),
        f"/runs/{run.pk}/replay/": lambda pg: pg.locator("main"),
        f"/projects/{p}/manager/": lambda pg: pg.locator(".charts").first,
        f"/projects/{p}/blueprints/": lambda pg: pg.locator("main h2, main h1").first,
        f"/projects/{p}/plan/": lambda pg: pg.locator("main h2, main h1").first,
        "/api/docs/": lambda pg: pg.locator(".opblock").first,
        "/dashboard/": lambda pg: pg.get_by_test_id("run-card").first,
        "/projects/": lambda pg: pg.locator("#add-project"),
        "/no-such-page/": lambda pg: pg.locator("#error-page"),
        "/admin/": lambda pg: pg.locator("#site-name"),
        "/admin/autopilot/project/": lambda pg: pg.locator("#result_list"),
        f"/admin/autopilot/project/{p}/change/": lambda pg: pg.locator("#project_form"),
        f"/admin/blueprints/blueprint/{blueprint.pk}/change/": lambda pg: pg.locator("#blueprint_form"),
    }
    found = {path: visit(page, violations, path, ready) for path, ready in pages.items()}
    assert {path: v for path, v in found.items() if v} == {}

    # When the project header's mode select changes (hx-post, swaps the controls in place)
    page.goto(f"/projects/{p}/")
    page.get_by_label("Autonomy mode").select_option("suggest")
    # Then the swapped controls show the new mode
    expect(page.get_by_test_id("mode-pill")).to_have_text("Suggest")
    project.refresh_from_db()
    assert project.autonomy_mode == "suggest"

    # When a task's dependency form gets a 400 (a task cannot depend on itself), Then the error is swapped in
    page.goto(f"/projects/{p}/tasks/{task.pk}/")
    page.locator("#add-dependency input[name=depends_on]").fill(str(task.pk))
    page.get_by_role("button", name="Add dependency").click()
    expect(page.locator("#dependency-error")).to_be_visible()

    # When "Delete task" is answered "no", the task stays; answered "yes", it is deleted
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete task").click()
    expect(page.locator("#dependencies")).to_be_visible()
    assert Task.objects.filter(pk=task.pk).exists()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete task").click()
    expect(page).to_have_url(re.compile(rf"/projects/{p}/tasks/$"))
    assert not Task.objects.filter(pk=task.pk).exists()
    assert violations.of(page) == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_admin_login_and_login_pages_have_no_csp_violations(browser, asgi_server):
    context = browser.new_context(base_url=asgi_server.url)
    try:
        violations = Violations(context)
        page = context.new_page()
        found = {
            "/accounts/login/": visit(
                page, violations, "/accounts/login/", lambda pg: pg.get_by_label("Username")
            ),
            "/admin/login/": visit(page, violations, "/admin/login/", lambda pg: pg.locator("#login-form")),
        }
    finally:
        context.close()
    assert found == {"/accounts/login/": [], "/admin/login/": []}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_blocked_inline_script_is_reported(logged_in_page, asgi_server):
    # The detector itself: an inline script injected into one of our pages is refused and seen
    page = logged_in_page
    violations = Violations(page.context)
    page.goto("/")
    page.evaluate("""() => { const s = document.createElement("script"); s.textContent = "window.__ran = 1";
                             document.body.appendChild(s); }""")
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.__ran") is None
    assert any("script-src" in v for v in violations.of(page))
