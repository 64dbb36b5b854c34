"""The run page's terminal in headless Chromium, against real interactive sessions (runs.interactive:
a real tmux server) served by a real daphne: an operator types into the live terminal and reads the
output on the page; a viewer sees no terminal but an explanation; a finished session's recording
replays on the page (redacted) for a viewer. No CSP violation on the way (xterm.js's run-time
<style> elements carry the page's nonce)."""

from __future__ import annotations

import subprocess

import pytest
from playwright.sync_api import expect

from runs import interactive
from tests.browser.test_csp import Violations
from tests.factories import MembershipFactory, TaskFactory, UserFactory
from tests.runs.helpers import wait_for

SECRET = "sk-ant-api03-" + "Zq8Wm3" * 8
WAIT_MS = 30_000


@pytest.fixture(autouse=True)
def _no_leftover_tmux():
    yield
    directory = interactive.socket_dir()
    if directory.is_dir():
        for entry in directory.glob("run-*.sock"):
            interactive.kill_server(int(entry.stem.split("-")[1]))


@pytest.fixture
def subprocess_env(subprocess_env, settings, tmp_path):
    """This test's recordings only, here and in the server (run ids repeat between tests)."""
    settings.AUTOPILOT_ARTIFACT_ROOT = tmp_path / "artifacts"
    return {**subprocess_env, "AUTOPILOT_ARTIFACT_ROOT": str(settings.AUTOPILOT_ARTIFACT_ROOT)}


def tmux(run, *args) -> str:
    return subprocess.run(
        [interactive.tmux_binary(), "-S", str(interactive.socket_path(run)), *args],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout


def screen(run) -> str:
    return tmux(run, "capture-pane", "-p", "-t", interactive.session_name(run))


def live_session(project, actor):
    run = interactive.start(task=TaskFactory(project=project, title="By hand"), actor=actor)
    wait_for(lambda: f"[run #{run.pk}]" in screen(run), message="no prompt in the session")
    return run


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_operator_types_in_the_browser_terminal_and_reads_the_output(
    logged_in_page, browser_user, project, asgi_server
):
    page = logged_in_page
    violations = Violations(page.context)
    # Given an operator and a live interactive session of the project
    MembershipFactory(project=project, user=browser_user, role="operator")
    run = live_session(project, browser_user)

    # When they open the run page, the terminal attaches
    page.goto(f"/runs/{run.pk}/")
    terminal = page.get_by_test_id("terminal")
    expect(terminal).to_have_attribute("data-state", "open", timeout=WAIT_MS)
    expect(page.get_by_test_id("terminal-status")).to_have_text("Attached.")

    # and they type a command into it
    terminal.click()
    page.keyboard.type("echo hello-$((6*7))")
    page.keyboard.press("Enter")

    # Then its output is on the page, and it ran in the session (tmux shows it too)
    expect(terminal.locator(".xterm-rows")).to_contain_text("hello-42", timeout=WAIT_MS)
    wait_for(lambda: "hello-42" in screen(run), message=f"not in the session: {screen(run)!r}")
    assert violations.of(page) == [], asgi_server.log()[-3000:]

    # When they leave the page, Then the browser's tmux client is gone and the session lives on
    page.goto("/")
    wait_for(lambda: tmux(run, "list-clients") == "", message="the browser's tmux client is still attached")
    assert interactive.is_live(run)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_viewer_sees_no_terminal_but_why(logged_in_page, browser_user, project, asgi_server):
    page = logged_in_page
    MembershipFactory(project=project, user=browser_user, role="viewer")
    operator = MembershipFactory(project=project, user=UserFactory(), role="operator").user
    run = live_session(project, operator)

    page.goto(f"/runs/{run.pk}/")

    expect(page.get_by_test_id("terminal-viewer-note")).to_contain_text("need the operator role")
    expect(page.get_by_test_id("terminal")).to_have_count(0)
    assert tmux(run, "list-clients") == ""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_finished_sessions_recording_replays_on_the_page_redacted(
    logged_in_page, browser_user, project, asgi_server
):
    page = logged_in_page
    violations = Violations(page.context)
    # Given a session where somebody ran two commands, one printing a key, then ended it
    operator = MembershipFactory(project=project, user=UserFactory(), role="operator").user
    run = live_session(project, operator)
    for line in ("echo replayed-$((6*7))", f"echo key={SECRET}"):
        tmux(run, "send-keys", "-t", interactive.session_name(run), "-l", line)
        tmux(run, "send-keys", "-t", interactive.session_name(run), "Enter")
    wait_for(lambda: "key=sk-ant" in screen(run), message="the commands did not run")
    interactive.finish(run, actor=operator)
    assert SECRET in interactive.recording_path(run).read_text()  # the raw file has it; the page must not

    # When a viewer opens the run page
    MembershipFactory(project=project, user=browser_user, role="viewer")
    page.goto(f"/runs/{run.pk}/")

    # Then the recording replays: the output is on the page, the key is not
    replay = page.get_by_test_id("terminal-replay")
    expect(replay).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    rows = replay.locator(".xterm-rows")
    expect(rows).to_contain_text("replayed-42")
    expect(rows).to_contain_text("key=[REDACTED")
    assert SECRET not in rows.inner_text() and SECRET not in page.content()

    # and it plays again from the start on request, at another speed
    page.get_by_label("Replay speed").select_option("16")
    page.get_by_role("button", name="Replay").click()
    expect(replay).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    expect(rows).to_contain_text("replayed-42")
    assert violations.of(page) == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_replay_below_the_fold_waits_until_it_is_shown(logged_in_page, browser_user, project, asgi_server):
    # xterm.js paints nothing while its terminal is off screen: a replay that played to its end below the
    # fold left a blank terminal in the page (and a viewer who scrolled down saw no playback)
    page = logged_in_page
    operator = MembershipFactory(project=project, user=UserFactory(), role="operator").user
    run = live_session(project, operator)
    tmux(run, "send-keys", "-t", interactive.session_name(run), "-l", "echo shown-$((6*7))")
    tmux(run, "send-keys", "-t", interactive.session_name(run), "Enter")
    wait_for(lambda: "shown-42" in screen(run), message="the command did not run")
    interactive.finish(run, actor=operator)
    MembershipFactory(project=project, user=browser_user, role="viewer")

    # Given a window too short to show the recording panel, When a viewer opens the run page
    page.set_viewport_size({"width": 1280, "height": 300})
    page.goto(f"/runs/{run.pk}/")

    # Then the replay is loaded but waits
    replay = page.get_by_test_id("terminal-replay")
    expect(replay).to_have_attribute("data-state", "ready", timeout=WAIT_MS)
    expect(page.get_by_test_id("terminal-status")).to_have_text("Ready: plays when shown.")

    # When they scroll to it, Then it plays to the end and its output is on the page
    replay.scroll_into_view_if_needed()
    expect(replay).to_have_attribute("data-state", "done", timeout=WAIT_MS)
    expect(replay.locator(".xterm-rows")).to_contain_text("shown-42")
