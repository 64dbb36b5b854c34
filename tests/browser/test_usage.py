"""The usage page in a real browser: SVG charts with axes, labels and values, and the date range."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from runs.budget import usage_record
from runs.models import UsageRecord
from tests.browser.test_csp import Violations
from tests.browser.test_sessions import keep
from tests.factories import ExecutionRunFactory, MembershipFactory, ProjectFactory


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_usage_page_shows_charts_with_values(logged_in_page, browser_user, project, asgi_server, tmp_path):
    page = logged_in_page
    violations = Violations(page.context)
    # Given two visible projects with spend on several days, one with a daily cap
    MembershipFactory(project=project, user=browser_user, role="viewer")
    second = ProjectFactory(name="Second project", daily_budget_usd=Decimal("2"))
    MembershipFactory(project=second, user=browser_user, role="viewer")
    a = ExecutionRunFactory(project=project, agent_backend="native", model="claude-sonnet-4-5")
    b = ExecutionRunFactory(project=second, agent_backend="claude_code", model="claude-haiku-4-5")
    usage_record(
        run=a, model="claude-sonnet-4-5", input_tokens=4000, output_tokens=900, cost_usd=Decimal("1.20")
    )
    usage_record(
        run=b, model="claude-haiku-4-5", input_tokens=2000, output_tokens=300, cost_usd=Decimal("0.80")
    )
    old = usage_record(
        run=a, model="claude-sonnet-4-5", input_tokens=100, output_tokens=10, cost_usd=Decimal("3")
    )
    UsageRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=4))

    # When the user opens the usage page
    page.goto("/usage/")

    # Then every chart is drawn with its values
    expect(page.get_by_test_id("total-spend")).to_have_text("$5.0000")
    daily = page.locator("[data-chart=daily]")
    expect(daily.locator("rect.bar")).to_have_count(3)  # today: two projects stacked; 4 days ago: one
    expect(daily.get_by_test_id("chart-value")).to_have_text(["$3.00", "$2.00"])
    expect(daily.locator("text.tick").first).to_have_text("$0.00")
    expect(daily.locator(".legend")).to_contain_text("Second project")
    expect(page.locator("[data-chart=projects]").get_by_test_id("chart-value")).to_have_text(
        ["$4.20", "$0.80"]
    )
    expect(page.locator("[data-chart=models]")).to_contain_text("claude-haiku-4-5")
    expect(page.locator("[data-chart=backends]")).to_contain_text("Claude Code")
    expect(page.locator("[data-chart=caps] line.cap")).to_have_count(1)
    expect(page.locator("[data-chart=tokens]").get_by_test_id("chart-value").last).to_have_text("7,200")
    keep(page, tmp_path, "usage.png")

    # When the range is narrowed to today
    today = timezone.localdate().isoformat()
    page.get_by_label("From", exact=True).fill(today)
    page.get_by_label("To", exact=True).fill(today)
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_test_id("total-spend")).to_have_text("$2.0000")
    expect(page.locator("[data-chart=daily] rect.bar")).to_have_count(2)

    # And a reversed range is refused with the reason
    page.goto("/usage/?start=2026-02-10&end=2026-02-01")
    expect(page.locator("#usage-errors")).to_contain_text("start date is after the end date")
    assert violations.of(page) == []
