"""The run detail page in a real browser: steps arrive live over the websocket, a step is approved."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from runs import services
from runs.models import ExecutionRun, ExecutionStep
from tests.factories import MembershipFactory

SCRIPT = [
    {"sleep": 1},
    {"say": "Let me add a notes file."},
    {"write": "notes.txt", "content": "first line\nsecond line\n"},
    {"run": "ln -s notes.txt link.txt"},
    {"finish": "notes added"},
]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_run_page_shows_steps_live_and_approves_a_step(
    logged_in_page, browser_user, project, asgi_server, subprocess_env, tmp_path
):
    page = logged_in_page
    # Given an operator on a semi_auto project and a queued scripted run whose command needs approval
    MembershipFactory(project=project, user=browser_user, role="operator")
    project.autonomy_mode = "semi_auto"
    project.save(update_fields=["autonomy_mode"])
    run = services.run_create(
        project=project,
        prompt="add notes",
        run_settings={"script": SCRIPT},
        enqueue=False,
        max_wall_seconds=120,
    )
    page.goto(f"/runs/{run.pk}/")
    expect(page.get_by_test_id("run-status")).to_have_text("Queued")
    expect(page.get_by_test_id("demo-banner")).to_be_visible()

    # When a worker process executes it
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from runs.worker import execute_run; "
            f"print(execute_run({run.pk}))",
        ],
        cwd=settings.BASE_DIR,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Then the steps appear without reloading, the diff is colored, and the risky command waits
        expect(page.locator("[data-testid=step][data-kind=write_file]")).to_be_visible(timeout=60_000)
        expect(page.locator("#steps .diff-add").first).to_have_text("+first line")
        waiting = page.locator("[data-testid=step][data-status=needs_approval]")
        expect(waiting).to_be_visible(timeout=60_000)
        expect(page.get_by_test_id("run-status")).to_have_text("Waiting for approval")
        page.screenshot(path=str(tmp_path / "run-waiting.png"), full_page=True)

        # When the operator approves it
        waiting.get_by_test_id("approve").click()

        # Then the run continues to the end, live
        expect(page.get_by_test_id("run-status")).to_have_text("Succeeded", timeout=60_000)
        expect(page.locator("[data-testid=step][data-kind=commit]")).to_be_visible()
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    output = worker.stdout.read()
    assert "succeeded" in output, output
    step = ExecutionStep.objects.get(run=run, kind="run_terminal")
    assert step.status == ExecutionStep.Status.COMPLETED and step.decided_by == browser_user
    assert ExecutionRun.objects.get(pk=run.pk).status == "succeeded"
    page.reload()
    expect(page.locator("#analysis")).to_be_visible()
    page.screenshot(path=str(tmp_path / "run-done.png"), full_page=True)
    # The project's runs page lists it with its status, cost and branch
    page.goto(f"/projects/{project.pk}/runs/")
    expect(page.locator("#runs")).to_contain_text("autopilot/run-")
    expect(page.locator("#runs")).to_contain_text("Succeeded")
    page.screenshot(path=str(tmp_path / "run-list.png"), full_page=True)
    shots = Path(settings.BASE_DIR) / "var" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    for name in ("run-waiting.png", "run-done.png", "run-list.png"):
        shutil.copy(tmp_path / name, shots / name)
