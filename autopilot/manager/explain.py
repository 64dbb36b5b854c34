"""Why the manager does (or doesn't) start each ready task — the same decision the next tick makes."""

from __future__ import annotations

from django.db.models import Count
from django.utils import timezone

from autopilot.manager import ranking
from autopilot.manager.tick import decide, effective_mode
from autopilot.models import AutonomyMode, Project
from blueprints.models import Task


def manager_plan(project: Project, *, mode_override: str | None = None, limit: int = 1000) -> dict:
    now = timezone.now()
    project = Project.objects.select_related("active_phase").get(pk=project.pk)
    mode = effective_mode(project, mode_override)
    capacity = ranking.capacities([project], now=now)[project.pk]
    tasks = list(ranking.explained_tasks(project, limit=limit))
    phase = project.active_phase
    runnable, blocked = [], []
    for task in tasks:
        reasons = []
        if task.removed_from_spec:
            reasons.append("its section was removed from the spec")
        if not task.in_phase:
            reasons.append(
                f"outside the active phase '{phase.title}' ({phase.anchor})"
                if phase
                else "outside the active phase"
            )
        if task.open_run_id:
            reasons.append(f"already running: run #{task.open_run_id} is {task.open_run_status}")
        if mode == AutonomyMode.SUGGEST and task.has_pending_proposal:
            reasons.append("already proposed: a proposal is pending")
        if mode == AutonomyMode.SUGGEST and task.has_dismissed_proposal:
            reasons.append("proposal dismissed; not proposed again until the task changes")
        (blocked if reasons else runnable).append((task, reasons))
    failures = ranking.last_failures([t.pk for t, _ in runnable if t.attempts])
    decisions = decide(
        project, mode=mode, capacity=capacity, candidates=[t for t, _ in runnable], failures=failures, now=now
    )

    def row(task: Task, action: str, reasons: list[str]) -> dict:
        if task.status == Task.Status.TODO:
            # tick_all refreshes readiness only for projects whose mode is not off (its `working` list).
            reasons = [
                *reasons,
                "dependencies are done: the next tick marks it ready"
                if mode != AutonomyMode.OFF
                else "dependencies are done: marked ready by the first tick once the mode is not off",
            ]
        return {
            "task": task.pk,
            "title": task.title,
            "status": task.status,
            "priority": task.priority,
            "learned_priority": task.learned_priority,
            "plan_order": task.plan_order,
            "plan_node": task.plan_node_id,
            "plan_node_anchor": task.plan_node.anchor if task.plan_node_id else None,
            "attempts": task.attempts,
            "action": action,
            "reasons": reasons,
        }

    would = [row(d.task, d.action, d.reasons) for d in decisions if d.action != "skip"]
    not_started = [row(d.task, "skip", d.reasons) for d in decisions if d.action == "skip"]
    not_started += [row(t, "skip", reasons) for t, reasons in blocked]
    by_status = dict(
        Task.objects.filter(project=project, kind=Task.Kind.WORK)
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {
        "project": project.pk,
        "mode": mode,
        "paused": project.paused,
        "active_phase": None
        if phase is None
        else {"id": phase.pk, "title": phase.title, "anchor": phase.anchor},
        "capacity": capacity.as_dict(),
        "would_start": would,  # action: "start", or "propose" in suggest mode
        "would_start_count": len(would),
        "not_started": not_started,
        "tasks_by_status": by_status,
        "last_tick": project.last_tick_summary,
        "generated_at": now,
    }
