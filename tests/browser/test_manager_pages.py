"""The autopilot controls in the project header and the manager page, in a real browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from autopilot.manager.models import Proposal
from autopilot.models import Project
from runs.models import ExecutionRun
from tests.factories import MembershipFactory, TaskFactory


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_header_controls_and_manager_page(logged_in_page, browser_user, project, asgi_server, tmp_path):
    page = logged_in_page
    # Given an owner (the mode is an owner's setting; operators pause and tick) with one ready task
    MembershipFactory(project=project, user=browser_user, role="owner")
    task = TaskFactory(project=project, title="Build the parser", status="ready")
    page.goto(f"/projects/{project.pk}/")
    controls = page.locator("#autopilot-controls")
    expect(controls.get_by_test_id("mode-pill")).to_have_text("Off")

    # When they choose "Suggest" in the header (htmx posts on change)
    controls.get_by_label("Autonomy mode").select_option("suggest")
    # Then the pill follows and the change is stored
    expect(page.locator("#autopilot-controls").get_by_test_id("mode-pill")).to_have_text("Suggest")
    assert Project.objects.get(pk=project.pk).autonomy_mode == "suggest"

    # When they pause, then resume
    page.get_by_test_id("pause").click()
    expect(page.get_by_test_id("paused-pill")).to_be_visible()
    page.get_by_test_id("resume").click()
    expect(page.get_by_test_id("paused-pill")).to_have_count(0)

    # When they open the manager page and tick now
    page.goto(f"/projects/{project.pk}/manager/")
    expect(page.locator("#would-start")).to_contain_text("Build the parser")
    page.get_by_test_id("tick-now").click()
    proposal = Proposal.objects.get(task=task)
    # Then the proposal is listed; accepting it queues a run, shown in the queue with its position
    page.get_by_test_id(f"accept-{proposal.pk}").click()
    expect(page.locator("#queue")).to_contain_text("Build the parser")
    page.screenshot(path=str(tmp_path / "manager.png"), full_page=True)
    assert ExecutionRun.objects.filter(task=task, status="queued").exists()
