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

The lifecycle of a task's code run (runs.integration has the merge queue):
- succeeded, its tests passed or none ran → review when a human must approve it
  (`integration.review_needed`: an explicit project.review_required wins, else the legacy
  auto_complete_on_tests means "don't wait for review", else required in suggest and semi_auto, not
  in full_auto), otherwise straight to `integrating` with an Integration queued; done = merged;
- succeeded but its own tests failed, failed, timed out → ready for rework (blocked after max attempts);
- cancelled → blocked (never restarted behind a human's back).

Idempotent: every outcome is applied once per run, marked by a `manager.outcome` event on the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from autopilot.errors import ApplicationError
from autopilot.events import record_event
from autopilot.manager.models import FileStat
from autopilot.models import Event
from autopilot.state import can_transition, transition
from blueprints import locks as task_locks
from blueprints.models import PlanNode, Task
from runs import alignment, integration
from runs.models import ExecutionRun, ExecutionStep
from runs.workspace import WorkspaceError

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
    applied = Event.objects.filter(kind=OUTCOME_KIND, subject_type="executionrun", subject_id=run.pk)
    # The alignment check (git, stored on the run for its review) runs before the task is locked.
    delivered = run.role == "code" and run.status == ExecutionRun.Status.SUCCEEDED and bool(run.branch)
    blocked_by = _alignment_block(run) if delivered and not applied.exists() else ""
    with transaction.atomic():
        task = task_locks.lock_task(run.task_id, related=("plan_node",))
        if task is None:
            return None
        if applied.exists():
            return None  # already applied (duplicate delivery)
        outcome = _outcome(run, task, blocked_by)
        record_event(kind=OUTCOME_KIND, subject=run, data={"task": task.pk, **outcome})
    return outcome


def _outcome(run, task: Task, blocked_by: str = "") -> dict:
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
        if result is False:
            # The run's own tests failed: rework, exactly like a failed run (below).
            return _failed(run, task, project, attempts, files, rework, other_open, why="its tests failed")
        # Delivered: a human reviews it first when the project requires it (integration.review_needed);
        # otherwise it goes straight to the merge queue, whose integration tests are the gate (the
        # task is done once merged). Milestones have no code: done.
        if task.kind == Task.Kind.MILESTONE:
            target = Task.Status.DONE
        else:
            # (A run without a branch has nothing to merge: a human looks at it.) A change the
            # alignment check blocked (forbidden paths, far over its size) waits for a human.
            auto = not integration.review_needed(project, run.autonomy_mode) and bool(run.branch)
            blocked_by = blocked_by if auto else ""
            auto = auto and not blocked_by
            target = Task.Status.INTEGRATING if auto else Task.Status.REVIEW
        fields = {"attempts": attempts}
        if target == Task.Status.DONE:
            fields["completed_at"] = now
        queued = None
        if not other_open and task.status != target and can_transition(Task, task.status, target):
            transition(
                task,
                target,
                reason=f"run #{run.pk} succeeded"
                + (" and its tests passed" if passed else "")
                + (f"; the alignment check blocks the merge: {blocked_by}" if blocked_by else ""),
                fields=fields,
                event_data={"run": run.pk},
            )
            if target == Task.Status.INTEGRATING:
                queued = integration.enqueue(task, run)
        else:
            Task.objects.filter(pk=task.pk).update(attempts=F("attempts") + 1)
        if node is not None:
            node.difficulty = round(
                (1 - DIFFICULTY_WEIGHT) * node.difficulty + DIFFICULTY_WEIGHT * attempts, 4
            )
            PlanNode.objects.filter(pk=node.pk).update(difficulty=node.difficulty)
        _bump_files(project.pk, files, runs=1, **({"reworks": 1} if rework else {}))
        return {
            "task_status": target,
            "attempts": attempts,
            "tests_passed": passed,
            "files": len(files),
            **({"integration": queued.pk} if queued else {}),
        }

    return _failed(run, task, project, attempts, files, rework, other_open, why=run.status)


def _failed(
    run, task: Task, project, attempts: int, files: list[str], rework: bool, other_open: bool, *, why: str
) -> dict:
    """A failed (or timed out) run, or one whose tests failed: retry until max attempts, then block."""
    node = task.plan_node
    exhausted = attempts >= project.max_attempts
    target = Task.Status.BLOCKED if exhausted else Task.Status.READY
    reason = (
        f"run #{run.pk} {why}; {'no attempts left' if exhausted else 'will retry'} "
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


def _alignment_block(run) -> str:
    """The alignment check of a delivered run (stored on the run); its reasons when it blocks."""
    try:
        result = alignment.check_run(run)
    except (ApplicationError, WorkspaceError) as exc:
        logger.warning("alignment check of run %s failed: %s", run.pk, exc)
        return ""
    if result.get("verdict") != alignment.BLOCK:
        return ""
    reasons = [
        r.get("message", "") for r in result.get("reasons", []) if r.get("severity") == alignment.BLOCK
    ]
    return "; ".join(filter(None, reasons))[:1000] or "blocked"


def _test_outcome(run, task: Task, project, now) -> dict:
    """A test-role run of a task in review ended: passed → the merge queue when the project does not
    wait for a human's review; failed → rework."""
    passed = run.status == ExecutionRun.Status.SUCCEEDED
    if task.status != Task.Status.REVIEW:
        return {"task_status": task.status, "tests_passed": passed}
    if passed:
        delivered = integration.latest_delivery(task)
        if (
            not integration.review_needed(project, delivered.autonomy_mode if delivered else None)
            and delivered
        ):
            transition(
                task,
                Task.Status.INTEGRATING,
                reason=f"tests passed in run #{run.pk}",
                event_data={"run": run.pk},
            )
            queued = integration.enqueue(task, delivered)
            return {"task_status": Task.Status.INTEGRATING, "tests_passed": True, "integration": queued.pk}
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
