"""Full-auto from the terminal: `autopilot run PROJECT --full-auto [--max-budget USD] [--until-empty]`.

Drives ticks and workers in this process (no cluster needed): tick → execute the runs it started
(up to the project's max parallel runs at once, each in its own thread and DB connection) → tick …
until no ready task remains or the budget is spent. Prints each start and finish (JSON lines with
--json; the last line is a summary). With the scripted backend it needs no network.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Sum

from autopilot.cli_support import to_jsonable
from autopilot.errors import ApplicationError
from autopilot.manager import ranking
from autopilot.manager.queue import QUEUE_ORDER
from autopilot.manager.requests import inline_ticks
from autopilot.manager.tick import Code, tick_project
from autopilot.models import AutonomyMode, Project
from blueprints.models import Task
from runs.models import ExecutionRun
from runs.worker import execute_run

MAX_ROUNDS = 100_000
BACKOFF_POLL_SECONDS = 1.0


class _Printer:
    def __init__(self, stdout, as_json: bool):
        self.stdout = stdout or sys.stdout
        self.as_json = as_json
        self.lock = threading.Lock()

    def __call__(self, data: dict, text: str) -> None:
        line = json.dumps(to_jsonable(data), ensure_ascii=False) if self.as_json else text
        with self.lock:
            self.stdout.write(line if hasattr(self.stdout, "style_func") else line + "\n")
            self.stdout.flush()


def drive_full_auto(
    *,
    project: Project,
    max_budget=None,
    until_empty: bool = False,
    stdout=None,
    as_json: bool = False,
    actor=None,
) -> None:
    """The door used by `autopilot run --full-auto` (returns nothing: a command prints, not returns)."""
    drive(
        project=project,
        max_budget=max_budget,
        until_empty=until_empty,
        stdout=stdout,
        as_json=as_json,
        actor=actor,
    )


def drive(
    *,
    project: Project,
    max_budget=None,
    until_empty: bool = False,
    stdout=None,
    as_json: bool = False,
    actor=None,
) -> dict:
    project = Project.objects.get(pk=project.pk)
    if project.paused:
        raise ApplicationError(f"Project '{project.name}' is paused; resume it before driving it.")
    budget = None if max_budget in (None, "") else Decimal(str(max_budget))
    if budget is not None and budget <= 0:
        raise ApplicationError("--max-budget must be more than 0.")
    say = _Printer(stdout, as_json)
    totals = {"runs": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "cost_usd": Decimal("0")}
    started_ids: list[int] = []
    stopped_because = ""
    waiting = False

    def execute(run: ExecutionRun) -> None:
        try:
            say(
                {
                    "event": "start",
                    "run": run.pk,
                    "task": run.task_id,
                    "title": run.task.title if run.task_id else "",
                    "role": run.role,
                    "attempt": run.attempt,
                    "agent": run.agent_backend,
                },
                (
                    f"▶ run #{run.pk} {run.role} task #{run.task_id}: "
                    f"{run.task.title if run.task_id else run.prompt[:60]}"
                ),
            )
            execute_run(run.pk)
            done = ExecutionRun.objects.select_related("task").get(pk=run.pk)
            task_status = Task.objects.filter(pk=done.task_id).values_list("status", flat=True).first()
            say(
                {
                    "event": "finish",
                    "run": done.pk,
                    "task": done.task_id,
                    "status": done.status,
                    "reason": done.status_reason,
                    "cost_usd": done.cost_usd,
                    "task_status": task_status,
                },
                (
                    f"■ run #{done.pk} {done.status} (${done.cost_usd:.4f}) — "
                    f"task #{done.task_id} → {task_status}: {done.status_reason}"
                ),
            )
        finally:
            connection.close()

    with inline_ticks(project.pk):
        for _round in range(MAX_ROUNDS):
            if budget is not None and _spent(started_ids) >= budget:
                stopped_because = "budget spent"
                break
            report = tick_project(
                project, reason="drive", actor=actor, enqueue=False, mode_override=AutonomyMode.FULL_AUTO
            )
            queued = list(
                ExecutionRun.objects.filter(project=project, status=ExecutionRun.Status.QUEUED)
                .select_related("task")
                .order_by(*QUEUE_ORDER)
            )
            if not queued:
                result = report.projects.get(project.pk)
                note = result.note if result else ""
                if until_empty and result and Code.RETRY_BACKOFF in result.skipped:
                    if not waiting:
                        say(
                            {"event": "waiting", "reason": "retry backoff"},
                            "… waiting for a retry backoff to pass",
                        )
                    waiting = True
                    time.sleep(BACKOFF_POLL_SECONDS)
                    continue
                runnable = ranking.runnable_tasks([project.pk]).exists()
                stopped_because = "no ready task remains" if not runnable else (note or "nothing could start")
                break
            if budget is not None:
                left = budget - _spent(started_ids)
                for run in queued:
                    if run.budget_usd > left:
                        ExecutionRun.objects.filter(pk=run.pk).update(budget_usd=max(left, Decimal("0")))
            waiting = False
            started_ids.extend(r.pk for r in queued)
            workers = max(1, min(project.max_parallel_runs, len(queued)))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drive") as pool:
                list(pool.map(execute, queued))
            project.refresh_from_db()
            if project.paused:
                stopped_because = "project paused"
                break
            if not until_empty and not _follow_ups(project):
                stopped_because = "one round done (use --until-empty to continue)"
                break
        else:
            stopped_because = "round limit"

    for status, n in (
        ExecutionRun.objects.filter(pk__in=started_ids)
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    ):
        totals["runs"] += n
        ended = (ExecutionRun.Status.SUCCEEDED, ExecutionRun.Status.CANCELLED)
        key = "failed" if status in ExecutionRun.FAILED else status if status in ended else None
        if key:
            totals[key] += n
    totals["cost_usd"] = _spent(started_ids)
    remaining = ranking.runnable_tasks([project.pk]).count()
    summary = {
        "event": "summary",
        "project": project.pk,
        **totals,
        "remaining_ready": remaining,
        "stopped_because": stopped_because,
        "max_budget_usd": budget,
    }
    say(
        summary,
        f"done: {totals['runs']} run(s), {totals['succeeded']} succeeded, {totals['failed']} failed, "
        f"${totals['cost_usd']:.4f} spent; {remaining} ready task(s) left — {stopped_because}",
    )
    return summary


def _spent(run_ids: list[int]) -> Decimal:
    if not run_ids:
        return Decimal("0")
    return ExecutionRun.objects.filter(pk__in=run_ids).aggregate(c=Sum("cost_usd"))["c"] or Decimal("0")


def _follow_ups(project: Project) -> bool:
    """Runs the outcomes queued by themselves (a test run after a code run) belong to this round."""
    return ExecutionRun.objects.filter(
        project=project, status=ExecutionRun.Status.QUEUED, role="test"
    ).exists()
