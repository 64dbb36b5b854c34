"""Blueprint upload with live progress (a real django-q2 worker), the versions page and the plan tree,
in a real browser against the real ASGI server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import expect

from blueprints.models import Blueprint, PlanNode
from tests.factories import MembershipFactory

ROOT = Path(__file__).resolve().parents[2]
SPEC = (
    "# Phase 1: Foundation\n\n## Login\n\nPassword login.\n\n- [ ] login form\n- [x] hashing\n\n"
    "## Storage\n\nSQLite.\n\n# Phase 2: Features\n\n## Search\n\nFull text.\n"
)


@pytest.fixture
def worker(subprocess_env, tmp_path):
    """A real django-q2 cluster (`manage.py qcluster`) against this test's databases."""
    log = (tmp_path / "qcluster.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "qcluster"],
        cwd=ROOT,
        env=subprocess_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_upload_shows_live_progress_then_the_plan_tree(
    logged_in_page, browser_user, project, asgi_server, worker, tmp_path
):
    page = logged_in_page
    MembershipFactory(project=project, user=browser_user, role="operator")
    spec = tmp_path / "roadmap.md"
    spec.write_text(SPEC)

    # Given the blueprint page of a project without a blueprint
    page.goto(f"/projects/{project.pk}/blueprints/")
    expect(page.get_by_text("No blueprint yet")).to_be_visible()

    # When a spec file is uploaded through the form
    page.get_by_label("or upload a file").set_input_files(str(spec))
    page.get_by_role("button", name="Ingest").click()

    # Then the job's progress appears and, once the worker is done, the result (polling stops)
    job = page.locator("#ingest-job")
    expect(job.locator(".job-status")).to_be_visible()
    expect(job).to_contain_text("Version 1 is active", timeout=90_000)
    expect(job).to_contain_text("7 nodes")
    expect(job.locator("progress")).to_have_attribute("value", "100")
    page.screenshot(path=str(tmp_path / "ingested.png"), full_page=True)
    assert Blueprint.objects.get(project=project).title == "roadmap.md"

    # When they open the plan
    job.get_by_role("link", name="Open the plan").click()

    # Then the tree is there, collapsible, with task counts per node
    tree = page.locator(".plan-tree")
    expect(tree).to_contain_text("Phase 1: Foundation")
    login = PlanNode.objects.get(project=project, anchor="phase-1-foundation/login")
    node = page.locator(f"#node-{login.pk}")
    expect(node.locator(".counts a").first).to_be_visible()
    phase = page.locator(
        "#node-{}".format(PlanNode.objects.get(project=project, anchor="phase-1-foundation").pk)
    )
    summary = phase.locator("summary").first
    summary.click()  # collapse
    expect(node).to_be_hidden()
    summary.click()  # expand
    expect(node).to_be_visible()

    # When a second version is pasted, the versions page shows its diff
    page.goto(f"/projects/{project.pk}/blueprints/")
    page.get_by_label("Paste the spec").fill(SPEC.replace("Full text.", "Ranked full text."))
    page.get_by_role("button", name="Ingest").click()
    expect(page.locator("#ingest-job")).to_contain_text("Version 2 is active", timeout=90_000)
    page.goto(f"/projects/{project.pk}/blueprints/")
    expect(page.locator("#version-diff")).to_contain_text("1 changed")
    expect(page.locator("#version-diff")).to_contain_text("phase-2-features/search")
