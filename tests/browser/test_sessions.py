"""The sessions history in a real browser: filter, sort and page the table, compare two runs; and
starting a scripted run from a task page through the launch dialog."""

from __future__ import annotations

import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from runs.models import ExecutionRun
from tests.browser.test_csp import Violations
from tests.factories import ExecutionRunFactory, ExecutionStepFactory, MembershipFactory, TaskFactory


def keep(page, tmp_path: Path, name: str) -> None:
    """A full-page screenshot, kept under var/screenshots/ (CI keeps them). `caret="initial"`: by default
    Playwright injects a <style> hiding the text caret, which the page's CSP refuses (a console error
    the CSP assertions would count)."""
    page.screenshot(path=str(tmp_path / name), full_page=True, caret="initial")
    shots = Path(settings.BASE_DIR) / "var" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp_path / name, shots / name)


def rows(page):
    return page.locator("[data-testid=session-row]")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_filter_sort_page_and_compare_sessions(logged_in_page, browser_user, project, asgi_server, tmp_path):
    page = logged_in_page
    violations = Violations(page.context)
    # Given a viewer of a project with 30 runs of different costs, two of them failed
    MembershipFactory(project=project, user=browser_user, role="viewer")
    runs = [
        ExecutionRunFactory(
            project=project,
            status="succeeded",
            cost_usd=Decimal(i) / 100,
            turns=i,
            prompt=f"session number {i}",
        )
        for i in range(30)
    ]
    ExecutionRun.objects.filter(pk__in=[runs[3].pk, runs[7].pk]).update(status="failed")
    for run, kinds in (
        (runs[28], ["read_file", "write_file"]),
        (runs[29], ["read_file", "run_terminal", "finish"]),
    ):
        for seq, kind in enumerate(kinds, 1):
            ExecutionStepFactory(run=run, seq=seq, kind=kind, status="completed")

    # When the viewer opens the sessions history
    page.goto("/sessions/")
    expect(rows(page)).to_have_count(25)
    expect(page.get_by_test_id("page-info")).to_have_text("Page 1 of 2")
    expect(page.get_by_test_id("sessions-totals")).to_contain_text("30 runs in this selection")

    # Then sorting by cost (largest first) puts the dearest run on top
    page.locator("th a[data-sort=cost]").click()
    page.wait_for_url(re.compile(r"sort=-cost"))
    expect(rows(page).first).to_have_attribute("data-run", str(runs[29].pk))
    expect(rows(page).first.locator("[data-col=cost]")).to_have_text("$0.2900")
    keep(page, tmp_path, "sessions.png")

    # And the next page holds the cheapest five, still sorted
    page.get_by_role("link", name="Next →").click()
    expect(page.get_by_test_id("page-info")).to_have_text("Page 2 of 2")
    expect(rows(page)).to_have_count(5)
    expect(rows(page).last).to_have_attribute("data-run", str(runs[0].pk))

    # When filtering on the failed status
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"status=failed"))
    expect(rows(page)).to_have_count(2)
    expect(page.get_by_test_id("sessions-totals")).to_contain_text("2 runs in this selection")
    expect(page.get_by_test_id("sessions-totals").locator("[data-total=cost]")).to_have_text("$0.1000")

    # And by text
    page.goto("/sessions/?sort=-cost")
    page.get_by_label("Text").fill("number 2")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"q=number"))
    expect(rows(page)).to_have_count(11)  # 2, 20…29

    # When two runs are picked, compare is enabled and shows them side by side
    page.goto("/sessions/?sort=-cost")
    compare = page.locator("[data-compare-button]")
    expect(compare).to_be_disabled()
    page.get_by_label(f"Pick run #{runs[29].pk} to compare").check()
    expect(compare).to_be_disabled()
    page.get_by_label(f"Pick run #{runs[28].pk} to compare").check()
    expect(compare).to_be_enabled()
    compare.click()
    page.wait_for_url(re.compile(r"/sessions/compare/"))
    table = page.get_by_test_id("compare-table")
    expect(table).to_contain_text(f"Run #{runs[29].pk}")
    expect(table).to_contain_text(f"Run #{runs[28].pk}")
    expect(table.locator("[data-row=cost]")).to_contain_text("$0.2900")
    expect(table.locator("[data-row=steps]")).to_contain_text("3")
    expect(page.locator("#compare-tools")).to_contain_text("run_terminal")
    keep(page, tmp_path, "compare.png")

    # And a click on a run opens its page
    page.get_by_role("link", name=f"Run #{runs[29].pk}").click()
    page.wait_for_url(re.compile(rf"/runs/{runs[29].pk}/$"))
    assert violations.of(page) == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_run_a_task_from_its_page_through_the_launch_dialog(
    logged_in_page, browser_user, project, asgi_server, tmp_path
):
    page = logged_in_page
    violations = Violations(page.context)
    # Given an operator and a task with no runs
    MembershipFactory(project=project, user=browser_user, role="operator")
    task = TaskFactory(project=project, title="Write the changelog")
    page.goto(f"/projects/{project.pk}/tasks/{task.pk}/")
    expect(page.locator("#task-runs")).to_contain_text("No runs yet.")

    # When they open "Run this task"
    page.get_by_test_id("launch-button").click()
    dialog = page.locator("#launch-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text(f"Run task #{task.pk}")
    # only configured backends can be chosen (this server has no API keys)
    expect(dialog.locator("option[value=claude_code]")).to_be_disabled()
    expect(dialog.locator("option[value=claude_code]")).to_contain_text("no ANTHROPIC_API_KEY configured")
    expect(dialog.locator("option[value=scripted]")).to_be_enabled()
    dialog.get_by_label("Agent").select_option("scripted")
    keep(page, tmp_path, "launch-dialog.png")
    dialog.get_by_role("button", name="Start run").click()

    # Then the run page opens, and the task page lists the run
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    run = ExecutionRun.objects.get(task=task)
    assert (
        run.agent_backend == "scripted"
        and run.prompt == "Write the changelog"
        and run.created_by == browser_user
    )
    page.goto(f"/projects/{project.pk}/tasks/{task.pk}/")
    listed = page.locator(f"[data-testid=task-run][data-run='{run.pk}']")
    expect(listed).to_be_visible()
    expect(listed).to_contain_text("Queued")
    page.goto("/sessions/")
    expect(rows(page).first).to_have_attribute("data-run", str(run.pk))

    # And a bad value comes back as an error inside the dialog, creating nothing
    page.goto(f"/projects/{project.pk}/tasks/{task.pk}/")
    page.get_by_test_id("launch-button").click()
    dialog = page.locator("#launch-dialog")
    dialog.get_by_label("Budget $").fill("-3")
    dialog.get_by_role("button", name="Start run").click()
    expect(dialog.locator("#run-error")).to_contain_text("budget")
    assert ExecutionRun.objects.filter(task=task).count() == 1
    assert violations.of(page) == []
