"""The project's Overview tab (the snapshot) and the run page's alignment panel, in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from autopilot.state import transition
from blueprints.ingestion import ingest_blueprint
from blueprints.models import Task
from runs.models import ProjectSnapshot
from tests.factories import MembershipFactory
from tests.runs.test_alignment import branch_run

SPEC = (
    "# Build\n\n## Store\n\n### Write\n\nWords.\n\n### Read\n\nWords.\n\n"
    "# Ship\n\n## Deploy\n\n### Release\n\nWords.\n"
)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_overview_shows_the_snapshot_and_refreshes(
    logged_in_page, browser_user, project, asgi_server, tmp_path
):
    page = logged_in_page
    csp_errors: list[str] = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
    # Given an operator's project with two phases, one blocked task with a reason
    MembershipFactory(project=project, user=browser_user, role="operator")
    ingest_blueprint(project=project, text=SPEC, title="Spec")
    tasks = {t.title: t for t in Task.objects.filter(project=project)}
    transition(tasks["Release"], Task.Status.BLOCKED, reason="waiting for the release key")

    # When they open the project's Overview tab
    page.goto(f"/projects/{project.pk}/")

    # Then the snapshot is there: progress per phase, the blocked task with its reason
    overview = page.get_by_test_id("overview")
    expect(overview.locator("#tile-progress")).to_contain_text("0/3")
    expect(page.get_by_test_id("phase-row")).to_have_count(2)
    expect(page.get_by_test_id("phase-row").first).to_contain_text("Build")
    expect(page.locator("#overview-blocked")).to_contain_text("waiting for the release key")
    expect(page.locator("#tile-eta")).to_contain_text("?")

    # When a task is done and they refresh
    Task.objects.filter(pk=tasks["Write"].pk).update(status=Task.Status.DONE)
    page.get_by_test_id("snapshot-refresh").click()

    # Then a new snapshot shows it
    expect(page.locator("#tile-progress")).to_contain_text("1/3")
    assert ProjectSnapshot.objects.filter(project=project).count() == 2
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
    assert csp_errors == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_run_page_alignment_panel(logged_in_page, browser_user, project, asgi_server):
    page = logged_in_page
    MembershipFactory(project=project, user=browser_user, role="operator")
    run = branch_run(project, {"runs/snapshot.py": "x = 1\n", "package-lock.json": "{}\n"})

    page.goto(f"/runs/{run.pk}/")
    panel = page.get_by_test_id("alignment")
    expect(panel).to_contain_text("Not checked yet.")
    panel.get_by_test_id("check-alignment").click()

    expect(page.locator("#alignment-verdict")).to_have_text("block")
    expect(page.get_by_test_id("alignment")).to_contain_text("a lockfile the task does not mention")
    expect(page.get_by_test_id("alignment")).to_contain_text("no test was added or changed")
    run.refresh_from_db()
    assert run.alignment["verdict"] == "block"
