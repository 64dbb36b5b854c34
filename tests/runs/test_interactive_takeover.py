"""Take over an autonomous run and hand it back (runs.interactive.takeover/handback): the real worker
pauses at a step boundary, a real tmux terminal opens in its worktree, the human's edits become steps
with their diff (step rollback restores them), and the agent's next turn receives the note and the
summary — the scripted backend and the native backend against the fake LLM server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from autopilot.errors import ApplicationError, Conflict
from runs import interactive, services
from runs.models import ExecutionRun, ExecutionStep
from tests.factories import ProjectFactory
from tests.fakellm import slow, tool
from tests.runs.helpers import run_in_thread, scripted, status_of, wait_for
from tests.runs.test_interactive import screen, type_line

pytestmark = pytest.mark.django_db(transaction=True)
PATIENT = {"stuck_idle_turns": 1000}


@pytest.fixture(autouse=True)
def _no_leftover_tmux():
    yield
    directory = interactive.socket_dir()
    if directory.is_dir():
        for entry in directory.glob("run-*.sock"):
            interactive.kill_server(int(entry.stem.split("-")[1]))


def _take_over(run: ExecutionRun) -> ExecutionStep:
    wait_for(lambda: ExecutionRun.objects.get(pk=run.pk).worktree_path and status_of(run.pk) == "running")
    step = interactive.takeover(run)
    assert interactive.wait_paused(run, timeout=30), "the worker did not pause"
    assert status_of(run.pk) == ExecutionRun.Status.WAITING_APPROVAL
    assert interactive.open_takeover(run) and interactive.is_live(run)
    wait_for(lambda: f"[run #{run.pk}]" in screen(run), message="no prompt in the take-over terminal")
    return step


def test_scripted_run_taken_over_and_handed_back(db):
    project = ProjectFactory(autonomy_mode="full_auto")
    script = [
        {"write": "agent.txt", "content": "from the agent\n"},
        *[{"sleep": 0.1}] * 80,
        {"finish": "done after the human"},
    ]
    run = scripted(project, script, run_settings=PATIENT, max_turns=1000)
    worker = run_in_thread(run.pk)
    step = _take_over(run)
    run.refresh_from_db()
    worktree = Path(run.worktree_path)
    assert "agent.txt" in screen(run) or (worktree / "agent.txt").exists()
    with pytest.raises(Conflict, match="already taken over"):
        interactive.takeover(run)

    type_line(run, "printf 'human line\\n' >> agent.txt; echo new > human.txt; echo edited-$((1+1))")
    wait_for(lambda: "edited-2" in screen(run))
    result = interactive.handback(run, note="fixed the greeting; now add tests")
    assert not interactive.is_live(run)
    assert sorted(f["path"] for f in result["files"]) == ["agent.txt", "human.txt"]
    assert result["added"] == 2

    # the agent goes on and finishes; its next turn got the note and the summary
    worker.join(timeout=120)
    run.refresh_from_db()
    assert run.status == ExecutionRun.Status.SUCCEEDED, run.status_reason
    takeover_step = ExecutionStep.objects.get(pk=step.pk)
    assert takeover_step.status == ExecutionStep.Status.COMPLETED
    assert "fixed the greeting" in takeover_step.output
    message = run.steps.get(kind=ExecutionStep.Kind.MESSAGE)
    assert "Note: fixed the greeting; now add tests" in message.input["body"]
    assert "agent.txt (+1 -0)" in message.input["body"] and "human.txt (+1 -0)" in message.input["body"]
    noted = run.steps.filter(kind=ExecutionStep.Kind.LLM_TURN, output__startswith="Noted: A human")
    assert noted.exists() and message.seq < noted.first().seq

    # the human's edits are steps with their diff, rolled back like any step
    edits = {s.input["path"]: s for s in run.steps.filter(tool_name="human_edit")}
    assert set(edits) == {"agent.txt", "human.txt"}
    assert "+human line" in edits["agent.txt"].diff and edits["agent.txt"].rollback["absent"] is False
    services.step_rollback(step=edits["agent.txt"])
    assert (worktree / "agent.txt").read_text() == "from the agent\n"
    services.step_rollback(step=edits["human.txt"])
    assert not (worktree / "human.txt").exists()
    assert (
        subprocess.run(
            ["git", "show", f"{run.branch}:agent.txt"], cwd=worktree, capture_output=True, text=True
        ).stdout
        == "from the agent\n"
    )
    # the recording covers the take-over terminal
    assert "edited-2" in interactive.recording_text(run)


def test_handback_before_the_pause_and_refusals(db):
    project = ProjectFactory(autonomy_mode="full_auto")
    done = scripted(project, [{"finish": "x"}])
    with pytest.raises(Conflict, match="only a running agent can be taken over"):
        interactive.takeover(done)
    with pytest.raises(Conflict, match="is not taken over"):
        interactive.handback(done, note="x")
    run = scripted(project, [*[{"sleep": 0.1}] * 80, {"finish": "ok"}], run_settings=PATIENT, max_turns=1000)
    worker = run_in_thread(run.pk)
    step = _take_over(run)
    with pytest.raises(ApplicationError, match="note is at most"):
        interactive.handback(run, note="x" * 100_000)
    assert interactive.is_live(run)  # a refused hand-back changed nothing
    interactive.handback(run, note="")
    services.run_stop(run=run, reason="enough")
    worker.join(timeout=60)
    assert ExecutionStep.objects.get(pk=step.pk).status == ExecutionStep.Status.COMPLETED
    assert "no files changed" in ExecutionRun.objects.get(pk=run.pk).steps.get(kind="message").input["body"]


@pytest.fixture
def llm(fake_llm, settings):
    settings.ANTHROPIC_BASE_URL = fake_llm.url
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key-for-the-fake"
    settings.OPENAI_BASE_URL = fake_llm.base_url_v1
    settings.OPENAI_API_KEY = "sk-test-openai-fake-key-000"
    settings.AUTOPILOT_LLM_MAX_RETRIES = 0
    return fake_llm


def test_native_agent_receives_the_note_in_its_next_request(llm):
    project = ProjectFactory(autonomy_mode="full_auto")
    llm.script(
        [
            # a slow first answer: the take-over below is asked while the agent waits for it
            slow(3, tool("write_file", {"path": "greet.py", "content": "print('hi')\n"})),
            tool("finish", {"summary": "finished after the hand-back"}),
        ]
    )
    run = services.run_create(
        project=project,
        prompt="Add a greeting",
        agent_backend="native",
        model="anthropic:claude-sonnet-4-6",
        enqueue=False,
    )
    worker = run_in_thread(run.pk)
    _take_over(run)
    before = len(llm.model_requests())
    type_line(run, "echo 'print(\"from the human\")' > human.py; echo ok-$((2+2))")
    wait_for(lambda: "ok-4" in screen(run))
    interactive.handback(run, note="keep human.py as it is")
    worker.join(timeout=60)
    run.refresh_from_db()
    assert run.status == ExecutionRun.Status.SUCCEEDED, run.status_reason
    after = llm.model_requests()[before:]
    assert after, "the agent made no request after the hand-back"
    texts = "\n".join(after[0].user_texts())
    assert "Note: keep human.py as it is" in texts and "human.py (+1 -0)" in texts
    assert not any("keep human.py" in t for r in llm.model_requests()[:before] for t in r.user_texts())
