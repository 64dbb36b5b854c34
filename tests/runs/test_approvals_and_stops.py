"""Approvals in semi_auto, refusals in full_auto, messages, stops (graceful and forced) and limits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from runs import services
from runs.models import ExecutionRun, ExecutionStep, RunMessage, UsageRecord
from runs.worker import execute_run
from tests.factories import ProjectFactory, UserFactory
from tests.gitrepo import git
from tests.runs.helpers import run_in_thread, run_now, scripted, status_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
Status = ExecutionRun.Status


def waiting_step(run_id):
    return ExecutionStep.objects.filter(run_id=run_id, status=ExecutionStep.Status.NEEDS_APPROVAL).first()


def test_semi_auto_risky_step_waits_then_runs_when_approved():
    # given a semi_auto project and a run whose second step is risky (not allowlisted)
    project = ProjectFactory(autonomy_mode="semi_auto")
    reviewer = UserFactory()
    run = scripted(project, [{"write": "a.txt", "content": "a\n"}, {"run": "rm a.txt"}, {"finish": "done"}])
    thread = run_in_thread(run.pk)

    # when the run reaches the risky step
    step = wait_for(lambda: waiting_step(run.pk), message="the risky step never asked for approval")
    assert status_of(run.pk) == Status.WAITING_APPROVAL
    assert step.risky and "deletes files" in step.risk_reason
    services.run_approve(step=step, actor=reviewer, note="fine")
    thread.join(30)

    # then the step ran, the approval is recorded with who gave it, and the run succeeded
    run.refresh_from_db()
    step.refresh_from_db()
    assert run.status == Status.SUCCEEDED
    assert (
        step.status == ExecutionStep.Status.COMPLETED
        and step.decided_by == reviewer
        and step.decision_note == "fine"
    )
    assert "a.txt" not in git(project.repo_path, "ls-tree", "-r", "--name-only", run.branch)
    assert run.project.events.filter(kind="executionstep.approved", actor=reviewer).exists()


def test_semi_auto_rejection_sends_the_message_back_to_the_agent(settings):
    # given a run on the native-like scripted backend whose risky step will be rejected
    project = ProjectFactory(autonomy_mode="semi_auto")
    reviewer = UserFactory()
    run = scripted(project, [{"run": "curl http://example.com"}, {"finish": "done"}])
    thread = run_in_thread(run.pk)
    step = wait_for(lambda: waiting_step(run.pk))

    # when a human rejects it with a message
    services.run_reject(step=step, actor=reviewer, message="no network, use the fixture file")
    thread.join(30)

    # then the step was skipped with the message, and the run carried on
    step.refresh_from_db()
    assert step.status == ExecutionStep.Status.SKIPPED
    assert step.decided_by == reviewer and step.decision_note == "no network, use the fixture file"
    assert "no network, use the fixture file" in step.output
    assert status_of(run.pk) == Status.SUCCEEDED


def test_reject_needs_a_message_and_a_waiting_step(project):
    run = run_now(project, [{"finish": "ok"}])
    step = run.steps.first()
    with pytest.raises(Exception, match="needs a message"):
        services.run_reject(step=step, message=" ")
    with pytest.raises(Exception, match="not waiting for approval"):
        services.run_approve(step=step)


def test_full_auto_refuses_risky_steps_without_waiting():
    project = ProjectFactory(autonomy_mode="full_auto")
    run = run_now(project, [{"run": "wget http://x"}, {"run": "git push origin main"}, {"finish": "ok"}])
    assert run.status == Status.SUCCEEDED
    refused = list(run.steps.filter(kind="run_terminal"))
    assert [s.status for s in refused] == ["skipped", "skipped"]
    assert "Refused in full_auto: network tool 'wget'" in refused[0].output
    assert "git push" in refused[1].output


def test_message_reaches_a_running_agent_without_stopping_it(project):
    # given a run that is busy
    run = scripted(project, [{"sleep": 0.5}, {"sleep": 0.5}, {"sleep": 0.5}, {"finish": "ok"}])
    thread = run_in_thread(run.pk)
    wait_for(lambda: status_of(run.pk) == Status.RUNNING)

    # when a human sends a message
    message = services.run_message(run=run, body="please also update the README")
    thread.join(30)

    # then it was delivered between turns, recorded as a step, and the run finished normally
    message.refresh_from_db()
    assert message.delivered_at is not None
    assert run.steps.filter(kind="message", input__body="please also update the README").exists()
    assert status_of(run.pk) == Status.SUCCEEDED


def test_graceful_stop_mid_run_cancels_and_keeps_the_partial_work(project):
    # given a run that wrote a file and is now busy
    run = scripted(
        project,
        [{"write": "part.txt", "content": "1\n"}, {"sleep": 60}, {"write": "never.txt", "content": "x"}],
    )
    thread = run_in_thread(run.pk)
    wait_for(lambda: ExecutionStep.objects.filter(run_id=run.pk, kind="write_file").exists())

    # when a human stops it
    services.run_stop(run=run, actor=UserFactory(username="stopper"), reason="wrong approach")
    thread.join(30)

    # then it ends cancelled with who and why, its partial work committed on its branch
    run.refresh_from_db()
    assert run.status == Status.CANCELLED
    assert run.status_reason == "stopped by stopper: wrong approach"
    files = git(project.repo_path, "ls-tree", "-r", "--name-only", run.branch).split()
    assert "part.txt" in files and "never.txt" not in files


def test_forced_stop_kills_the_agent_process_group(project, settings):
    # given a run blocked in a long command (which ignores SIGTERM-free graceful stops until it returns)
    settings.AUTOPILOT_STOP_GRACE_SECONDS = 0.5
    project.command_allowlist = ["python3"]
    project.save()
    run = scripted(
        project, [{"run": "python3 -c 'import time; time.sleep(120)'", "timeout": 300}, {"finish": "no"}]
    )
    thread = run_in_thread(run.pk)
    pids = wait_for(lambda: ExecutionRun.objects.values_list("child_pids", flat=True).get(pk=run.pk))

    # when a human force-stops it
    services.run_stop(run=run, force=True)
    thread.join(30)

    # then the agent's process group was killed and the run is cancelled
    assert not thread.is_alive()
    assert status_of(run.pk) == Status.CANCELLED
    import os

    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_queued_run_is_cancelled_at_once(project):
    run = scripted(project, [{"finish": "x"}])
    services.run_stop(run=run, reason="not needed")
    run.refresh_from_db()
    assert run.status == Status.CANCELLED and run.status_reason.startswith(
        "cancelled by the system before it started"
    )
    assert execute_run(run.pk) == "not claimed"


def test_budget_stop(project):
    # given a run with a $0.01 budget whose model calls cost more
    run = run_now(
        project,
        [{"usage": {"model": "claude-sonnet-4-5", "input_tokens": 2000, "output_tokens": 1000}}] * 3
        + [{"finish": "x"}],
        budget_usd=Decimal("0.01"),
    )
    # then it stopped after the call that crossed the budget
    assert run.status == Status.FAILED
    assert run.status_reason.startswith("budget exceeded: $0.0210 spent of $0.0100")
    assert UsageRecord.objects.filter(run=run).count() == 1
    assert run.cost_usd == Decimal("0.021")


def test_project_daily_cap_stop():
    # given a project with a $0.02 daily cap; each run makes a $0.015 model call
    project = ProjectFactory(daily_budget_usd=Decimal("0.02"))
    call = {"usage": {"model": "claude-sonnet-4-5", "input_tokens": 5000}}
    first = run_now(project, [call, {"finish": "x"}])
    assert first.status == Status.SUCCEEDED

    # when a second run crosses the cap, and a third starts afterwards
    second = run_now(project, [call, {"say": "more"}, {"finish": "x"}])
    third = run_now(project, [{"say": "hi"}, {"finish": "x"}])

    # then both stop with the cap as the reason (the third before doing anything)
    assert second.status == Status.FAILED
    assert second.status_reason == "project daily budget cap reached: $0.0300 of $0.0200 today"
    assert third.status == Status.FAILED and third.steps.count() == 0
    assert third.started_at is None


def test_max_turns_stop(project):
    run = run_now(project, [{"say": str(i)} for i in range(10)], max_turns=3)
    assert run.status == Status.FAILED and run.status_reason == "max turns reached (3)"
    assert run.turns == 3


def test_wall_time_stop(project):
    run = run_now(project, [{"sleep": 30}, {"finish": "x"}], max_wall_seconds=1)
    assert run.status == Status.TIMED_OUT and run.status_reason == "wall time limit reached (1s)"


def test_stuck_loop_same_call_repeated(project):
    run = run_now(project, [{"read": "README.md"}] * 6 + [{"finish": "x"}], run_settings={"stuck_repeat": 4})
    assert run.status == Status.FAILED
    assert run.status_reason == "stuck loop: the same tool call (read_file) was repeated 4 times"
    assert run.steps.filter(kind="read_file").count() == 4


def test_stuck_loop_no_progress(project):
    script = [
        {"say": "thinking"},
        {"list": "."},
        {"say": "hmm"},
        {"search": "x"},
        {"say": "still"},
        {"finish": "x"},
    ]
    run = run_now(project, script, run_settings={"stuck_idle_turns": 3})
    assert run.status == Status.FAILED
    assert run.status_reason == "stuck loop: 3 turns without a file change or a new command"


def test_messages_to_finished_runs_are_kept(project):
    run = run_now(project, [{"finish": "x"}])
    message = services.run_message(run=run, body="nice")
    assert RunMessage.objects.get(pk=message.pk).delivered_at is not None
