"""The plan page's search box in a real browser: results appear as you type (htmx, no page load), link to
the node in the tree, escape the spec's markup, and nothing breaks the Content-Security-Policy."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from blueprints.ingestion import ingest_blueprint
from blueprints.models import PlanNode
from tests.browser.test_csp import Violations
from tests.factories import MembershipFactory

SPEC = (
    "# Phase 1\n\n## Login\n\nPassword login. <img src=x onerror=alert(1)>\n\n"
    "## Storage\n\nSQLite first, PostgreSQL later.\n\n# Phase 2\n\n## Search\n\nFull text over sections.\n"
)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_search_box_lists_sections_as_you_type(logged_in_page, browser_user, project, asgi_server):
    page = logged_in_page
    violations = Violations(page.context)
    MembershipFactory(project=project, user=browser_user, role="viewer")
    ingest_blueprint(project=project, text=SPEC)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    # Given the plan page
    page.goto(f"/projects/{project.pk}/plan/")
    url = page.url
    box = page.get_by_test_id("plan-search")
    expect(box).to_be_visible()

    # When the user types, the results list fills in without a page load
    box.press_sequentially("postgresql", delay=20)
    results = page.get_by_test_id("plan-search-results")
    expect(results.get_by_role("link", name="Storage")).to_be_visible()
    expect(results.locator("mark")).to_have_text(["PostgreSQL"])
    assert page.url == url

    # A query with spec markup and FTS syntax is harmless: escaped text, no dialog, no error
    box.fill('password "( * OR')
    expect(results.get_by_role("link", name="Login")).to_be_visible()
    expect(results).to_contain_text("<img src=x onerror=alert(1)>")
    box.fill("zebra")
    expect(results).to_contain_text("No section contains every word of “zebra”")

    # Following a result opens the tree at the node
    box.fill("sqlite")
    results.get_by_role("link", name="Storage").click()
    storage = PlanNode.objects.get(project=project, anchor="phase-1/storage")
    expect(page.locator(f"#node-{storage.pk}")).to_be_visible()
    assert page.url.endswith(f"#node-{storage.pk}")
    assert dialogs == []
    assert violations.of(page) == []
