"""Learning metrics of a project, and `refine_plan`, which turns them into learned priorities.

Definitions:
- cycle time: a done task's started_at (its first run started) → completed_at.
- difficulty: per plan node, the moving average kept by the outcomes (attempts needed per task);
  the project figure is the mean over nodes that have a signal.
- fragile areas: plan nodes and files with the most failures + reworks.
- plan deviation rate: share of finished tasks (done or in review) that were reworked or that
  finished before a task placed earlier in the plan (plan_order) — i.e. the work did not go as planned.
- cost per task: total cost of the project's task runs / number of tasks that had runs.
- learned priority (refine_plan): 1.0 × open tasks it unblocks directly + 0.5 × its plan node's
  difficulty (hard parts early, while there is time to retry) − 0.75 × its rework count.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import Count, F, Sum

from autopilot import locks
from autopilot.events import record_event
from autopilot.manager.models import FileStat
from autopilot.manager.requests import request_tick
from autopilot.models import Project
from blueprints.models import PlanNode, Task, TaskDependency
from runs.models import ExecutionRun

UNBLOCK_WEIGHT = 1.0
DIFFICULTY_WEIGHT = 0.5
REWORK_WEIGHT = 0.75
TOP = 10


def learning_metrics(project: Project) -> dict:
    finished = list(
        Task.objects.filter(project=project, kind=Task.Kind.WORK, status__in=Task.DELIVERED).values(
            "pk",
            "status",
            "plan_order",
            "started_at",
            "completed_at",
            "updated_at",
            "rework_count",
            "attempts",
        )
    )
    cycle = [
        (t["completed_at"] - t["started_at"]).total_seconds()
        for t in finished
        if t["status"] == Task.Status.DONE and t["started_at"] and t["completed_at"]
    ]
    deviating = _deviations(finished)
    nodes = PlanNode.objects.filter(project=project, archived_at__isnull=True)
    difficulties = list(nodes.filter(difficulty__gt=0).values_list("difficulty", flat=True))
    fragile_nodes = [
        {
            "id": n.pk,
            "title": n.title,
            "anchor": n.anchor,
            "failures": n.failure_count,
            "reworks": n.rework_count,
            "difficulty": n.difficulty,
            "score": n.failure_count + n.rework_count,
        }
        for n in nodes.annotate(score=F("failure_count") + F("rework_count"))
        .filter(score__gt=0)
        .order_by("-score", "-difficulty", "order")[:TOP]
    ]
    fragile_files = [
        {
            "path": f.path,
            "failures": f.failures,
            "reworks": f.reworks,
            "runs": f.runs,
            "score": f.failures + f.reworks,
        }
        for f in FileStat.objects.filter(project=project)
        .annotate(score=F("failures") + F("reworks"))
        .filter(score__gt=0)
        .order_by("-score", "path")[:TOP]
    ]
    runs = ExecutionRun.objects.filter(project=project, task__isnull=False).aggregate(
        cost=Sum("cost_usd"), tasks=Count("task", distinct=True), runs=Count("pk")
    )
    cost = runs["cost"] or Decimal("0")
    attempts = [t["attempts"] for t in finished if t["attempts"]]
    return {
        "project": project.pk,
        "finished_tasks": len(finished),
        "done_tasks": sum(1 for t in finished if t["status"] == Task.Status.DONE),
        "avg_cycle_time_s": round(sum(cycle) / len(cycle), 3) if cycle else None,
        "cycle_times_s": sorted(round(c, 3) for c in cycle)[-50:],
        "avg_difficulty": round(sum(difficulties) / len(difficulties), 3) if difficulties else None,
        "avg_attempts": round(sum(attempts) / len(attempts), 3) if attempts else None,
        "fragile_nodes": fragile_nodes,
        "fragile_files": fragile_files,
        "plan_deviation_rate": round(len(deviating) / len(finished), 4) if finished else None,
        "deviating_tasks": sorted(deviating)[:50],
        "cost_total_usd": str(cost),
        "runs": runs["runs"],
        "tasks_with_runs": runs["tasks"],
        "cost_per_task_usd": str((cost / runs["tasks"]).quantize(Decimal("0.000001")))
        if runs["tasks"]
        else None,
        "definitions": {
            "cycle_time": "first run started → task done",
            "difficulty": "moving average of attempts per task, per plan node",
            "plan_deviation_rate": (
                "share of finished tasks reworked or finished before a task earlier in the plan"
            ),
            "cost_per_task": "cost of task runs / tasks that had runs",
        },
    }


def _deviations(finished: list[dict]) -> set[int]:
    """Reworked tasks, and tasks finished while some task earlier in the plan was still unfinished."""
    deviating = {t["pk"] for t in finished if t["rework_count"]}
    ordered = sorted(finished, key=lambda t: (t["completed_at"] or t["updated_at"], t["pk"]))
    # A task deviates when a task finishing after it has a smaller plan_order: scan from the end.
    lowest_later = None
    for t in reversed(ordered):
        if lowest_later is not None and lowest_later < t["plan_order"]:
            deviating.add(t["pk"])
        lowest_later = t["plan_order"] if lowest_later is None else min(lowest_later, t["plan_order"])
    return deviating


def refine_plan(*, project: Project, actor=None) -> dict:
    """Re-rank the open tasks' learned_priority from the learned signals; records what changed."""
    open_statuses = Task.UNSTARTED | {Task.Status.BLOCKED}  # not started yet (blocked ones may come back)
    with transaction.atomic():
        locks.lock_project(project.pk)
        tasks = list(
            Task.objects.filter(project=project, kind=Task.Kind.WORK, status__in=open_statuses)
            .select_related("plan_node")
            .only("pk", "title", "learned_priority", "rework_count", "plan_node__difficulty")
        )
        unblocks = dict(
            TaskDependency.objects.filter(depends_on__project=project)
            .filter(task__status__in=Task.OPEN)
            .values_list("depends_on_id")
            .annotate(n=Count("pk"))
            .order_by()
        )
        changed = []
        for task in tasks:
            difficulty = task.plan_node.difficulty if task.plan_node_id else 0.0
            value = round(
                UNBLOCK_WEIGHT * unblocks.get(task.pk, 0)
                + DIFFICULTY_WEIGHT * difficulty
                - REWORK_WEIGHT * task.rework_count,
                3,
            )
            if abs(value - task.learned_priority) > 1e-9:
                changed.append((task, task.learned_priority, value))
                task.learned_priority = value
        Task.objects.bulk_update([t for t, _, _ in changed], ["learned_priority"], batch_size=500)
        top = sorted(changed, key=lambda c: -abs(c[2] - c[1]))[:50]
        summary = {
            "examined": len(tasks),
            "changed": len(changed),
            "changes": [{"task": t.pk, "title": t.title, "from": old, "to": new} for t, old, new in top],
            "formula": (
                f"{UNBLOCK_WEIGHT}×unblocks + {DIFFICULTY_WEIGHT}×node difficulty − {REWORK_WEIGHT}×reworks"
            ),
        }
        record_event(kind="plan.refined", subject=project, actor=actor, data=summary)
        if changed:
            request_tick(project.pk, reason="plan refined")
    return summary


def learning_report(projects: list[Project]) -> list[dict]:
    """Each project's learning metrics (cycle time, rework), for the projects with finished tasks."""
    out = []
    for project in projects:
        metrics = learning_metrics(project)
        if metrics["finished_tasks"]:
            out.append({"project": project, "name": project.name, **metrics})
    return out
