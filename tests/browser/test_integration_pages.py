"""The Integration tab and a task's review buttons in a real browser against the real ASGI server,
over a real merge queue on real git (issue #11)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from blueprints.models import Task
from runs.models import Integration, TaskReview
from tests.factories import MembershipFactory
from tests.runs.integration_doors import build_queue


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_integration_tab_and_a_review(logged_in_page, browser_user, asgi_server, tmp_path):
    page = logged_in_page
    # Given an operator on a project with a merged task, a conflict waiting, one queued, one in review
    q = build_queue()
    MembershipFactory(project=q.project, user=browser_user, role="operator")

    # When they open the project's Integration tab
    page.goto(f"/projects/{q.project.pk}/")
    page.get_by_role("link", name="Integration", exact=True).click()

    # Then they see the queue with positions, the conflict with its file and hunks, the recent merge
    # and the integration branch against the base
    expect(page.locator("#queue-table [data-testid=queued]")).to_have_count(1)
    expect(page.locator("#queue-table td.num").first).to_have_text("1")
    waiting = page.locator(f"[data-testid=waiting][data-integration='{q.conflict.pk}']")
    expect(waiting).to_contain_text("calc.py")
    expect(page.locator("#recent-table [data-testid=merged]")).to_contain_text(q.merged.merge_commit[:10])
    expect(page.get_by_test_id("commits-ahead")).to_have_text(re.compile(r"[1-9]"))
    page.screenshot(path=str(tmp_path / "integration.png"), full_page=True)

    # When they open the diff, then come back and mark the conflict resolved
    page.get_by_test_id("open-diff").click()
    expect(page.locator("#diff-text")).to_contain_text("+def add(a, b):")
    page.go_back()
    page.get_by_test_id(f"resolve-{q.conflict.pk}").click()

    # Then it is queued again, second in line
    expect(page.locator(".messages")).to_contain_text("resolve done")
    expect(page.locator("#queue-table [data-testid=queued]")).to_have_count(2)
    expect(page.locator("[data-testid=waiting]")).to_have_count(0)
    assert Integration.objects.get(pk=q.conflict.pk).status == "queued"

    # When they open the task in review, ask for changes without a comment
    page.goto(f"/projects/{q.project.pk}/tasks/{q.review_task.pk}/")
    expect(page.get_by_test_id("pr-body")).to_have_value(re.compile(r"^# Div"))
    page.get_by_test_id("review-request-changes").click()

    # Then the panel says a comment is needed, and nothing was recorded
    expect(page.locator("#review-error")).to_contain_text("needs a comment")
    assert not TaskReview.objects.exists()

    # When they reject it with a comment
    page.locator("#review-form textarea[name=comment]").fill("Division by zero is not handled")
    page.get_by_test_id("review-reject").click()

    # Then the review is listed and the task went back to todo
    expect(page.locator("#reviews")).to_contain_text("Division by zero is not handled")
    expect(page.locator("#reviews")).to_contain_text("Rejected")
    assert Task.objects.get(pk=q.review_task.pk).status == "todo"
    assert TaskReview.objects.get().author == browser_user
