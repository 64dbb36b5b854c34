"""The task board and a task's dependency view in a real browser against the real ASGI server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from blueprints.graph import generate_tasks
from blueprints.models import Task, TaskDependency
from tests.blueprints.graph_helpers import build_plan
from tests.blueprints.test_graph import SPEC
from tests.factories import MembershipFactory


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_board_filters_and_dependency_editing(logged_in_page, browser_user, project, asgi_server, tmp_path):
    page = logged_in_page
    # Given an operator on a project with a generated plan
    MembershipFactory(project=project, user=browser_user, role="operator")
    generate_tasks(blueprint=build_plan(project, SPEC))
    auth = Task.objects.get(project=project, title="Authentication")
    schema = Task.objects.get(project=project, title="Database schema")

    # When they open the task board
    page.goto(f"/projects/{project.pk}/tasks/")

    # Then every status has a column with its count
    expect(page.locator("#board-total")).to_have_text("8 tasks")
    expect(page.locator("#column-todo .count")).to_have_text("6")
    expect(page.locator("#column-done .count")).to_have_text("2")
    page.screenshot(path=str(tmp_path / "board.png"), full_page=True)

    # When they tick the "Done" status filter (htmx swaps the board, the URL follows)
    page.get_by_label("Done", exact=True).check()

    # Then only the done column remains
    expect(page.locator("#column-todo")).to_have_count(0)
    expect(page.locator("#column-done .task-card")).to_have_count(2)
    expect(page).to_have_url(re.compile(r"status=done"))

    # When they filter by the plan node "Phase 1" instead
    page.get_by_label("Done", exact=True).uncheck()
    page.get_by_label("Plan node").select_option(label="· Phase 1: Foundations")
    expect(page.locator("#board-total")).to_have_text("5 tasks")

    # When they open Database schema and try to make it depend on Authentication (which depends on it)
    page.get_by_role("link", name=re.compile(r"Database schema")).click()
    expect(page.get_by_role("heading", name=re.compile(r"Database schema"))).to_be_visible()
    page.locator("#add-dependency input[name=depends_on]").fill(str(auth.pk))
    page.get_by_role("button", name="Add dependency").click()

    # Then the refusal names the cycle, and nothing was added
    expect(page.locator("#dependency-error")).to_contain_text(
        f"Database schema (#{schema.pk}) → Authentication (#{auth.pk}) → Database schema (#{schema.pk})"
    )
    assert not TaskDependency.objects.filter(task=schema).exists()

    # When they add a dependency that is fine
    ci = Task.objects.get(project=project, title="Set up CI pipeline")
    page.locator("#add-dependency input[name=depends_on]").fill(str(ci.pk))
    page.get_by_role("button", name="Add dependency").click()

    # Then it appears upstream, and the downstream lists Authentication
    expect(page.locator("#upstream")).to_contain_text("Set up CI pipeline")
    expect(page.locator("#downstream")).to_contain_text("Authentication")
    expect(page.locator("#dependency-error")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "task.png"), full_page=True)
