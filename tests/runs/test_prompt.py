"""One prompt builder: the exact prompt a backend receives for a task run the tick started."""

from __future__ import annotations

import pytest

from autopilot.manager.tick import tick_project
from blueprints.models import Task
from runs.context import TASK_INSTRUCTION, build_prompt
from runs.models import ExecutionRun
from runs.snapshot import snapshot_refresh, snapshot_text, snapshot_text_from
from runs.worker import execute_run
from tests.factories import PlanNodeFactory, ProjectFactory, TaskFactory
from tests.fakellm import tool

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def llm(fake_llm, settings):
    settings.ANTHROPIC_BASE_URL = fake_llm.url
    settings.ANTHROPIC_API_KEY = "sk-ant-test-key-for-the-fake"
    settings.AUTOPILOT_LLM_MAX_RETRIES = 0
    return fake_llm


def test_a_task_run_started_by_the_tick_sends_the_task_once_with_the_tick_instruction(llm):
    # given a full-auto project whose code agent is the native loop, and a ready task in a spec section
    project = ProjectFactory(
        autonomy_mode="full_auto",
        model_matrix={"code": {"agent": "native", "model": "anthropic:claude-sonnet-4-6"}},
    )
    node = PlanNodeFactory(
        project=project, blueprint__project=project, title="Greeting", anchor="phase-1/greeting"
    )
    task = TaskFactory(
        project=project,
        plan_node=node,
        status=Task.Status.READY,
        title="Add a greeting",
        body="Write greet.py that prints hello.\n\nAcceptance: `python3 greet.py` prints hello.",
    )
    llm.script([tool("finish", {"summary": "nothing to do"})])
    snapshot = snapshot_refresh(project)  # the stored snapshot (younger than FRESH_FOR) the prompt carries

    # when the tick starts it and the worker executes the run
    report = tick_project(project, reason="test", enqueue=False)
    (started,) = report.started
    run = ExecutionRun.objects.get(pk=started["run"])
    execute_run(run.pk)

    # then the run stores only the tick's instruction, and the model receives exactly this prompt
    assert run.prompt == TASK_INSTRUCTION
    expected = (
        f"## Task\n\nTask #{task.pk}: Add a greeting\n"
        "Spec section: Greeting (phase-1/greeting)\n\n"
        "Write greet.py that prints hello.\n\nAcceptance: `python3 greet.py` prints hello.\n\n"
        f"## Project snapshot\n\n{snapshot_text_from(snapshot.data)}\n\n"
        "## Instruction\n\n"
        "Implement it in this repository, keep the change focused, and make the tests pass."
    )
    first = llm.wait_for_requests(1)[0]
    assert first.user_texts()[0] == expected
    assert first.user_texts()[0].count("Write greet.py") == 1


def test_a_human_prompt_that_repeats_the_task_title_is_not_sent_twice(project):
    # given a task run created with the task's title as its prompt (the default of run_create)
    task = TaskFactory(project=project, title="Fix the parser", body="It drops the last line.")
    run = ExecutionRun(project=project, task=task, prompt="Fix the parser", agent_backend="scripted")

    # then the prompt names the task once, then its body
    assert build_prompt(run) == (
        f"## Task\n\nTask #{task.pk}: Fix the parser\n\nIt drops the last line.\n\n"
        f"## Project snapshot\n\n{snapshot_text(project)}"
    )


def test_a_run_without_a_task_receives_its_prompt_verbatim(project):
    run = ExecutionRun(project=project, prompt="List the files", agent_backend="scripted")
    assert build_prompt(run) == "List the files"
