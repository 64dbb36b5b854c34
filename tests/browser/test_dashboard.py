"""The dashboard in a real browser against `autopilot serve` (daphne): session cards appear, move and
update over the websocket without a reload; Approve and Stop work from a card; a viewer sees no control;
after switching the mode every panel of the project agrees. Screenshots go to var/screenshots/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from runs.models import ExecutionRun
from tests.factories import ExecutionRunFactory, ExecutionStepFactory, MembershipFactory

SHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
LIVE_MS = 60_000


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def start_in_another_process(env, project_id: int, script: list, *, execute: bool = True) -> subprocess.Popen:
    """A separate process creates the run (its events reach the server through the channel layer) and,
    unless told not to, executes it as a worker would."""
    code = (
        "import django, sys; django.setup()\n"
        "from autopilot.models import Project\n"
        "from runs import services\n"
        "from runs.worker import execute_run\n"
        f"run = services.run_create(project=Project.objects.get(pk={project_id}), prompt='Add a notes file',"
        f" run_settings={{'script': {script!r}}}, enqueue=False, max_wall_seconds=120)\n"
        "print('run', run.pk, flush=True)\n" + ("print(execute_run(run.pk), flush=True)\n" if execute else "")
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    try:
        process.wait(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.stdout.read()


def card(page, run_id: int):
    return page.locator(f"[data-testid=run-card][data-run='{run_id}']")


def only_run(project) -> ExecutionRun:
    return ExecutionRun.objects.filter(project=project).get()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_run_started_elsewhere_appears_as_a_card_and_succeeds_live(
    logged_in_page, browser_user, project, subprocess_env
):
    page = logged_in_page
    MembershipFactory(project=project, user=browser_user, role="operator")
    page.goto("/")
    expect(page.locator("#board")).to_be_visible()
    expect(page.get_by_test_id("run-card")).to_have_count(0)
    page.evaluate("window.__notReloaded = true")

    script = [
        {"sleep": 2},
        {"usage": {"model": "claude-sonnet-4-5", "input_tokens": 20000, "output_tokens": 4000}},
        {"say": "Adding notes."},
        {"write": "notes.txt", "content": "hello\n"},
        {"sleep": 1},
        {"finish": "notes added"},
    ]
    worker = start_in_another_process(subprocess_env, project.pk, script)
    try:
        cards = page.get_by_test_id("run-card")
        expect(cards).to_have_count(1, timeout=LIVE_MS)
        expect(cards.first.get_by_test_id("card-status")).to_have_text("Running", timeout=LIVE_MS)
        shoot(page, "dashboard.png")
        expect(cards.first.get_by_test_id("card-status")).to_have_text("Succeeded", timeout=LIVE_MS)
        expect(page.locator("#cards-finished [data-testid=run-card]")).to_have_count(1)
        expect(cards.first.get_by_test_id("card-cost")).not_to_contain_text("$0.0000 ")
        expect(cards.first.get_by_test_id("card-steps")).not_to_have_text("0")
    finally:
        output = finish(worker)
    assert "succeeded" in output, output
    run = only_run(project)
    assert run.cost_usd > 0
    assert card(page, run.pk).get_by_test_id("card-cost").inner_text().startswith(f"${run.cost_usd:.4f}")
    assert page.evaluate("window.__notReloaded") is True  # everything arrived without a reload


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_approve_a_waiting_step_from_its_card(logged_in_page, browser_user, project, subprocess_env):
    page = logged_in_page
    MembershipFactory(project=project, user=browser_user, role="operator")
    project.autonomy_mode = "semi_auto"
    project.save(update_fields=["autonomy_mode"])
    page.goto("/")
    script = [
        {"say": "Linking."},
        {"write": "notes.txt", "content": "x\n"},
        {"run": "ln -s notes.txt link.txt"},
        {"finish": "linked"},
    ]
    worker = start_in_another_process(subprocess_env, project.pk, script)
    try:
        approve = page.get_by_test_id("card-approve")
        expect(approve).to_be_visible(timeout=LIVE_MS)
        expect(page.locator("#cards-waiting [data-testid=run-card]")).to_have_count(1)
        expect(page.get_by_test_id("needs-input-count")).to_have_text("1", timeout=20_000)
        shoot(page, "dashboard-waiting.png")
        approve.click()
        expect(page.get_by_test_id("card-status")).to_have_text("Succeeded", timeout=LIVE_MS)
        expect(page.get_by_test_id("needs-input-count")).to_have_count(0, timeout=20_000)
    finally:
        output = finish(worker)
    assert "succeeded" in output, output
    step = only_run(project).steps.get(kind="run_terminal")
    assert step.decided_by == browser_user


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_stop_a_run_from_its_card(logged_in_page, browser_user, project, subprocess_env):
    page = logged_in_page
    MembershipFactory(project=project, user=browser_user, role="operator")
    page.goto("/")
    worker = start_in_another_process(subprocess_env, project.pk, [{"say": "Thinking."}, {"sleep": 60}])
    try:
        status = page.get_by_test_id("card-status")
        expect(status).to_have_text("Running", timeout=LIVE_MS)
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_test_id("card-stop").click()
        expect(status).to_have_text("Cancelled", timeout=LIVE_MS)
        expect(page.get_by_test_id("card-stop")).to_have_count(0)
    finally:
        output = finish(worker)
    assert only_run(project).status == ExecutionRun.Status.CANCELLED, output


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_viewer_sees_no_controls(logged_in_page, browser_user, project):
    page = logged_in_page
    MembershipFactory(project=project, user=browser_user, role="viewer")
    waiting = ExecutionRunFactory(project=project, status=ExecutionRun.Status.WAITING_APPROVAL)
    ExecutionStepFactory(run=waiting, status="needs_approval")
    ExecutionRunFactory(project=project, status=ExecutionRun.Status.RUNNING)

    page.goto("/")
    expect(page.get_by_test_id("run-card")).to_have_count(2)
    expect(page.get_by_test_id("card-view")).to_have_count(2)
    for control in ("card-stop", "card-approve"):
        expect(page.get_by_test_id(control)).to_have_count(0)
    for path in (f"/projects/{project.pk}/", f"/projects/{project.pk}/manager/", f"/runs/{waiting.pk}/"):
        page.goto(path)
        expect(page.get_by_test_id("mode-pill")).to_be_visible()
        for control in ("pause", "resume", "tick-now", "stop", "approve"):
            expect(page.get_by_test_id(control)).to_have_count(0)
        expect(page.get_by_label("Autonomy mode")).to_have_count(0)
    page.goto("/projects/")
    expect(page.get_by_test_id("remove-project")).to_have_count(0)
    expect(page.locator("#add-project")).to_have_count(0)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_after_switching_mode_every_panel_agrees(logged_in_page, browser_user, project):
    page = logged_in_page
    MembershipFactory(project=project, user=browser_user, role="owner")
    project.paused = True
    project.save(update_fields=["paused"])
    page.goto(f"/projects/{project.pk}/manager/")
    expect(page.get_by_test_id("plan-mode")).to_have_text("Off")
    page.evaluate("window.__notReloaded = true")

    page.get_by_label("Autonomy mode").select_option("semi_auto")
    expect(page.get_by_test_id("mode-pill")).to_have_text("Semi-auto")
    expect(page.get_by_test_id("plan-mode")).to_have_text("Semi-auto", timeout=10_000)

    page.get_by_test_id("resume").click()
    expect(page.get_by_test_id("paused-pill")).to_have_count(0)
    expect(page.locator("#plan-state")).not_to_contain_text("paused", timeout=10_000)
    assert page.evaluate("window.__notReloaded") is True
    shoot(page, "manager.png")

    page.get_by_test_id("tick-now").click()
    expect(page.locator(".messages")).to_contain_text("Tick:")
    assert "notice" not in page.url
