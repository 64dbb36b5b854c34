"""What a run's start and end mean for its task, and the learning signals they leave behind.

Definitions:
- attempts: finished code runs of a task (success or failure); cancelled runs do not count.
- rework: a code run that starts for a task which already had a finished run (a retry after a
  failure, or another pass after review). Counted on the task, its plan node and the files it touches.
- tests passed: the run's last step of kind `test` completed (the test worker's step; a failing test
  command fails that step), or the run itself is a succeeded `test`-role run.
- difficulty (plan node): an exponential moving average (weight 0.3) of the attempts its tasks needed
  to succeed; a failure pushes it up by the attempts spent so far.
- cycle time: task.started_at (first run started) → task.completed_at (done).

Idempotent: every outcome is applied once per run, marked by a `manager.outcome` event on the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from autopilot.events import record_event
from autopilot.manager.models import FileStat
from autopilot.manager.requests import is_inline
from autopilot.models import Event
from autopilot.state import can_transition, transition
from blueprints import locks as task_locks
from blueprints.models import PlanNode, Task
from runs.models import ExecutionRun, ExecutionStep
from runs.services import run_create

logger = logging.getLogger(__name__)

OUTCOME_KIND = "manager.outcome"
DIFFICULTY_WEIGHT = 0.3


def touched_files(diff_summary) -> list[str]:
    """File paths from a run's diff summary (list of paths, list of {path: …}, or {path: stats})."""
    if not diff_summary:
        return []
    files = diff_summary.get("files", diff_summary) if isinstance(diff_summary, dict) else diff_summary
    paths: list[str] = []
    if isinstance(files, dict):
        paths = [str(k) for k in files]
    elif isinstance(files, Iterable) and not isinstance(files, (str, bytes)):
        for item in files:
            if isinstance(item, str):
                paths.append(item)
            elif isinstance(item, dict):
                name = item.get("path") or item.get("file") or item.get("name")
                if name:
                    paths.append(str(name))
    return [p[:1000] for p in dict.fromkeys(paths) if p][:500]


def tests_result(run) -> bool | None:
    """True/False from the run's last test step (or a test-role run's outcome); None: no tests ran."""
    if run.role == "test":
        return run.status == ExecutionRun.Status.SUCCEEDED
    last = (
        ExecutionStep.objects.filter(run=run, kind=ExecutionStep.Kind.TEST)
        .order_by("-seq")
        .values("status")
        .first()
    )
    return None if last is None else last["status"] == ExecutionStep.Status.COMPLETED


def _bump_files(project_id: int, paths: list[str], **increments: int) -> None:
    if not paths:
        return
    FileStat.objects.bulk_create(
        [FileStat(project_id=project_id, path=p) for p in paths], ignore_conflicts=True
    )
    FileStat.objects.filter(project_id=project_id, path__in=paths).update(
        **{name: F(name) + value for name, value in increments.items()}, updated_at=timezone.now()
    )


def apply_run_started(run_id: int) -> None:
    """A code run started: its task moves to in_progress; a repeated pass counts as rework."""
    run = ExecutionRun.objects.filter(pk=run_id).only("pk", "task_id", "role", "created_by_id").first()
    if run is None or run.task_id is None or run.role != "code":
        return
    with transaction.atomic():
        task = task_locks.lock_task(run.task_id)
        if task is None or task.status == Task.Status.IN_PROGRESS:
            return
        if not can_transition(Task, task.status, Task.Status.IN_PROGRESS):
            return
        rework = task.attempts > 0
        fields = {"started_at": task.started_at or timezone.now()}
        if rework:
            fields["rework_count"] = task.rework_count + 1
        transition(
            task,
            Task.Status.IN_PROGRESS,
            reason=f"run #{run.pk} started",
            fields=fields,
            event_data={"run": run.pk, "rework": rework},
        )
        if rework and task.plan_node_id:
            PlanNode.objects.filter(pk=task.plan_node_id).update(rework_count=F("rework_count") + 1)


def apply_run_finished(run_id: int) -> dict | None:
    """A run reached a terminal status: move its task on and update the learning signals (once)."""
    run = ExecutionRun.objects.select_related("project").filter(pk=run_id).first()
    if run is None or run.task_id is None or run.status not in ExecutionRun.TERMINAL:
        return None
    if run.role not in ("code", "test"):
        return None
    with transaction.atomic():
        task = task_locks.lock_task(run.task_id, related=("plan_node",))
        if task is None:
            return None
        if Event.objects.filter(kind=OUTCOME_KIND, subject_type="executionrun", subject_id=run.pk).exists():
            return None  # already applied (duplicate delivery)
        outcome = _outcome(run, task)
        record_event(kind=OUTCOME_KIND, subject=run, data={"task": task.pk, **outcome})
    return outcome


def _outcome(run, task: Task) -> dict:
    project = run.project
    now = timezone.now()
    open_runs = ExecutionRun.objects.filter(task=task, role="code", status__in=ExecutionRun.OPEN)
    other_open = open_runs.exclude(pk=run.pk).exists()
    files = touched_files(run.diff_summary)

    if run.role == "test":
        return _test_outcome(run, task, project, now)

    if run.status == ExecutionRun.Status.CANCELLED:
        # A human (or a queue clear) stopped it: don't restart it behind their back.
        if (
            not other_open
            and can_transition(Task, task.status, Task.Status.BLOCKED)
            and task.status in (Task.Status.IN_PROGRESS, Task.Status.READY)
        ):
            transition(
                task,
                Task.Status.BLOCKED,
                reason=f"run #{run.pk} was cancelled: {run.status_reason}".strip(": "),
                event_data={"run": run.pk},
            )
        return {"task_status": task.status, "cancelled": True}

    if task.status in Task.UNSTARTED and not other_open:
        # The run ended before its start was seen (or the hook was missed): it did start.
        transition(
            task,
            Task.Status.IN_PROGRESS,
            reason=f"run #{run.pk} ran",
            fields={"started_at": task.started_at or run.started_at or now},
            event_data={"run": run.pk},
        )
    attempts = task.attempts + 1
    rework = task.rework_count > 0
    node = task.plan_node
    if run.status == ExecutionRun.Status.SUCCEEDED:
        result = tests_result(run)
        passed = result is True
        has_command = bool(project.test_command.strip())
        # Auto-complete: done when the run's tests passed, or when no tests ran and there is no test
        # command at all; with a test command and no test step, the test worker runs in the run's
        # worktree first (a test-role run resuming this one) and its result decides.
        verify = project.auto_complete_on_tests and result is None and has_command
        complete = project.auto_complete_on_tests and (passed or (result is None and not has_command))
        target = Task.Status.DONE if complete else Task.Status.REVIEW
        fields = {"attempts": attempts}
        if target == Task.Status.DONE:
            fields["completed_at"] = now
        if not other_open and task.status != target and can_transition(Task, task.status, target):
            transition(
                task,
                target,
                reason=f"run #{run.pk} succeeded" + (" and its tests passed" if passed else ""),
                fields=fields,
                event_data={"run": run.pk},
            )
        else:
            Task.objects.filter(pk=task.pk).update(attempts=F("attempts") + 1)
        if node is not None:
            node.difficulty = round(
                (1 - DIFFICULTY_WEIGHT) * node.difficulty + DIFFICULTY_WEIGHT * attempts, 4
            )
            PlanNode.objects.filter(pk=node.pk).update(difficulty=node.difficulty)
        _bump_files(project.pk, files, runs=1, **({"reworks": 1} if rework else {}))
        test_run = _start_test_run(run, task) if verify and not other_open else None
        return {
            "task_status": target,
            "attempts": attempts,
            "tests_passed": passed,
            "files": len(files),
            **({"test_run": test_run.pk} if test_run else {}),
        }

    # failed or timed out
    exhausted = attempts >= project.max_attempts
    target = Task.Status.BLOCKED if exhausted else Task.Status.READY
    reason = (
        f"run #{run.pk} {run.status}; {'no attempts left' if exhausted else 'will retry'} "
        f"(attempt {attempts} of {project.max_attempts})"
    )
    if not other_open and task.status != target and can_transition(Task, task.status, target):
        transition(task, target, reason=reason, fields={"attempts": attempts}, event_data={"run": run.pk})
    else:
        Task.objects.filter(pk=task.pk).update(attempts=F("attempts") + 1)
    if node is not None:
        node.difficulty = round(
            (1 - DIFFICULTY_WEIGHT) * node.difficulty + DIFFICULTY_WEIGHT * (attempts + 1), 4
        )
        PlanNode.objects.filter(pk=node.pk).update(
            failure_count=F("failure_count") + 1, difficulty=node.difficulty
        )
    _bump_files(project.pk, files, runs=1, failures=1, **({"reworks": 1} if rework else {}))
    return {"task_status": target, "attempts": attempts, "exhausted": exhausted, "files": len(files)}


def _start_test_run(run, task: Task):
    """Queue the test worker in the code run's worktree (resumed_from reuses it)."""
    return run_create(
        project=run.project,
        task=task,
        role="test",
        agent_backend="test_worker",
        prompt=f"Run the tests for task #{task.pk} ({task.title}) on the changes of run #{run.pk}.",
        priority=run.priority,
        resumed_from=run,
        enqueue=not is_inline(run.project_id),
    )


def _test_outcome(run, task: Task, project, now) -> dict:
    """A test-worker run ended: passed → done (when the project auto-completes); failed → rework."""
    passed = run.status == ExecutionRun.Status.SUCCEEDED
    if task.status != Task.Status.REVIEW:
        return {"task_status": task.status, "tests_passed": passed}
    if passed:
        if project.auto_complete_on_tests:
            transition(
                task,
                Task.Status.DONE,
                reason=f"tests passed in run #{run.pk}",
                fields={"completed_at": now},
                event_data={"run": run.pk},
            )
            return {"task_status": Task.Status.DONE, "tests_passed": True}
        return {"task_status": task.status, "tests_passed": True}
    if run.status == ExecutionRun.Status.CANCELLED:
        return {"task_status": task.status, "tests_passed": False, "cancelled": True}
    files = touched_files(
        (run.resumed_from.diff_summary if run.resumed_from_id else None) or run.diff_summary
    )
    _bump_files(project.pk, files, failures=1)
    if task.plan_node_id:
        PlanNode.objects.filter(pk=task.plan_node_id).update(failure_count=F("failure_count") + 1)
    if task.attempts >= project.max_attempts:
        return {"task_status": task.status, "tests_passed": False, "exhausted": True}
    transition(
        task,
        Task.Status.READY,
        reason=f"tests failed in run #{run.pk}; rework (attempt {task.attempts + 1} "
        f"of {project.max_attempts})",
        event_data={"run": run.pk},
    )
    return {"task_status": Task.Status.READY, "tests_passed": False}
