"""The project snapshot ("CEO dashboard"): where a project stands, in one JSON document.

`snapshot_data(project)` computes it, deterministically and with a fixed number of queries whatever
the number of tasks, runs or plan nodes (tests pin the count):

- progress per phase (the top-level sections of the active blueprint's plan tree): work tasks done
  (= integrated: a task is done when its work is merged), integrating, in review, in progress,
  blocked, total; milestones (gates that finish by themselves) are left out;
- in flight: the project's open runs (ExecutionRun.OPEN);
- blocked tasks with the reason of their latest status change (the event log);
- recent merges (Integration merged);
- spend today and in total against the daily cap and the run budgets;
- velocity: work tasks done per day over the last 7 days;
- a projected finish: remaining work tasks × the median cycle time (started → done) ÷ the project's
  max parallel runs, with its assumptions spelled out;
- fragile areas: plan nodes with failures or rework (their learned counters).

`snapshot_refresh` stores one as a ProjectSnapshot (optionally with a narrative from the manager-role
model, runs.manager_model), `snapshot_latest` reads the newest (computing one if there is none) and
`snapshot_text` renders a short plain-text version for agent prompts.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
from decimal import Decimal

from django.db.models import Count, DecimalField, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from autopilot.models import Event, Project, Role
from autopilot.permissions import require_role
from blueprints.models import PlanNode, Task
from blueprints.selectors import active_blueprint, layout_of
from runs.budget import day_bounds
from runs.manager_model import ModelUnavailable, complete
from runs.models import ExecutionRun, Integration, ProjectSnapshot, UsageRecord

SCHEMA_VERSION = 1
VELOCITY_DAYS = 7
CYCLE_SAMPLE = 500  # the most recent done tasks the median cycle time is taken over
LIST_LIMIT = 20  # in flight / blocked rows shown (the counts are complete)
MERGES_SHOWN = 10
FRAGILE_SHOWN = 8
KEEP_SNAPSHOTS = 50  # per project; older ones are deleted on refresh
FRESH_FOR = dt.timedelta(minutes=5)  # snapshot_text reuses a stored snapshot this young
NO_SECTION = "(no plan section)"
ZERO = Decimal("0")

# Buckets shown per phase. Done = integrated (the merge queue moves a task to done when merged).
BUCKETS = {
    Task.Status.DONE: "done",
    Task.Status.INTEGRATING: "integrating",
    Task.Status.REVIEW: "review",
    Task.Status.IN_PROGRESS: "in_progress",
    Task.Status.BLOCKED: "blocked",
    Task.Status.READY: "todo",
    Task.Status.TODO: "todo",
    Task.Status.CANCELLED: "cancelled",
}
COUNT_KEYS = ("done", "integrating", "review", "in_progress", "blocked", "todo", "cancelled")


def _money(value) -> str:
    return str(Decimal(str(value or 0)).quantize(Decimal("0.0001")))


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _empty_counts() -> dict[str, int]:
    return dict.fromkeys(COUNT_KEYS, 0)


def _finish_counts(counts: dict[str, int]) -> dict[str, int]:
    counts["total"] = sum(counts[k] for k in COUNT_KEYS if k != "cancelled")
    counts["remaining"] = counts["total"] - counts["done"]
    counts["percent_done"] = round(100 * counts["done"] / counts["total"]) if counts["total"] else 0
    return counts


# --- the parts -------------------------------------------------------------------------------------


def _phases(project: Project) -> tuple[list[dict], dict[str, int]]:
    """Progress per top-level section (2 queries for the tree, 1 for the task counts)."""
    layout = layout_of(active_blueprint(project))
    top_of: dict[int, int] = {}  # node id → its top-level ancestor's layout index
    phases: dict[int | None, dict] = {}
    if layout is not None:
        top = [0] * len(layout)
        for i, parent in enumerate(layout.parents):  # parents precede their children in document order
            top[i] = i if parent < 0 else top[parent]
            top_of[layout.ids[i]] = top[i]
            if parent < 0:
                phases[i] = {
                    "node": layout.ids[i],
                    "title": layout.titles[i],
                    "anchor": layout.anchors[i],
                    **_empty_counts(),
                }
    rows = (
        Task.objects.filter(project=project, kind=Task.Kind.WORK)
        .values("plan_node_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    totals = _empty_counts()
    for row in rows:
        key = BUCKETS[row["status"]]
        index = top_of.get(row["plan_node_id"])
        if index is None:
            phase = phases.setdefault(
                None, {"node": None, "title": NO_SECTION, "anchor": "", **_empty_counts()}
            )
        else:
            phase = phases[index]
        phase[key] += row["n"]
        totals[key] += row["n"]
    ordered = [phases[i] for i in sorted(k for k in phases if k is not None)]
    if None in phases:
        ordered.append(phases[None])
    return [_finish_counts(p) for p in ordered], _finish_counts(totals)


def _in_flight(project: Project) -> dict:
    runs = list(
        ExecutionRun.objects.filter(project=project, status__in=ExecutionRun.OPEN)
        .order_by("created_at", "id")
        .values(
            "id",
            "task_id",
            "task__title",
            "status",
            "role",
            "agent_backend",
            "model",
            "cost_usd",
            "budget_usd",
            "started_at",
        )[: LIST_LIMIT + 1]
    )
    shown = runs[:LIST_LIMIT]
    return {
        "more": len(runs) > LIST_LIMIT,
        "active": sum(1 for r in shown if r["status"] in ExecutionRun.ACTIVE),
        "runs": [
            {
                "run": r["id"],
                "task": r["task_id"],
                "task_title": r["task__title"] or "",
                "status": r["status"],
                "role": r["role"],
                "agent": r["agent_backend"],
                "model": r["model"],
                "cost_usd": _money(r["cost_usd"]),
                "budget_usd": _money(r["budget_usd"]),
                "started_at": _iso(r["started_at"]),
            }
            for r in shown
        ],
    }


def _blocked(project: Project) -> list[dict]:
    """Blocked work tasks with the reason and time of their latest status change (one query)."""
    latest = Event.objects.filter(
        subject_type="task", subject_id=OuterRef("pk"), kind="task.status"
    ).order_by("-id")
    tasks = (
        Task.objects.filter(project=project, status=Task.Status.BLOCKED)
        .annotate(
            reason=Subquery(latest.values("data__reason")[:1]),
            since=Subquery(latest.values("created_at")[:1]),
        )
        .order_by("-priority", "plan_order", "id")
        .values("id", "title", "reason", "since", "priority")[:LIST_LIMIT]
    )
    return [
        {
            "task": t["id"],
            "title": t["title"],
            "priority": t["priority"],
            "reason": t["reason"] if isinstance(t["reason"], str) else "",
            "since": _iso(t["since"]),
        }
        for t in tasks
    ]


def _merges(project: Project) -> list[dict]:
    rows = (
        Integration.objects.filter(project=project, status=Integration.Status.MERGED)
        .order_by("-finished_at", "-id")
        .values("id", "task_id", "task__title", "merge_commit", "target_branch", "finished_at")[:MERGES_SHOWN]
    )
    return [
        {
            "integration": r["id"],
            "task": r["task_id"],
            "task_title": r["task__title"],
            "merge_commit": r["merge_commit"],
            "target_branch": r["target_branch"],
            "finished_at": _iso(r["finished_at"]),
        }
        for r in rows
    ]


def _spend(project: Project, now: dt.datetime) -> dict:
    start, end = day_bounds(timezone.localdate(now))
    money = DecimalField(max_digits=14, decimal_places=6)
    sums = UsageRecord.objects.filter(project=project).aggregate(
        total=Coalesce(Sum("cost_usd"), Value(ZERO), output_field=money),
        today=Coalesce(
            Sum("cost_usd", filter=Q(created_at__gte=start, created_at__lt=end)),
            Value(ZERO),
            output_field=money,
        ),
    )
    runs = ExecutionRun.objects.filter(project=project).aggregate(
        over_budget=Count("id", filter=Q(budget_usd__gt=0, cost_usd__gte=F("budget_usd"))),
        open_budget=Coalesce(
            Sum("budget_usd", filter=Q(status__in=ExecutionRun.OPEN)), Value(ZERO), output_field=money
        ),
    )
    cap = project.daily_budget_usd
    today = sums["today"]
    return {
        "today_usd": _money(today),
        "total_usd": _money(sums["total"]),
        "daily_cap_usd": _money(cap) if cap is not None else None,
        "daily_remaining_usd": _money(max(cap - today, ZERO)) if cap is not None else None,
        "daily_used_percent": (round(float(100 * today / cap)) if cap else None),
        "over_daily_cap": bool(cap is not None and today >= cap),
        "run_budget_usd": _money(project.default_run_budget_usd),
        "runs_at_budget": runs["over_budget"],
        "in_flight_budget_usd": _money(runs["open_budget"]),
    }


def _velocity(project: Project, now: dt.datetime) -> dict:
    today = timezone.localdate(now)
    first = today - dt.timedelta(days=VELOCITY_DAYS - 1)
    since, _ = day_bounds(first)
    done = Task.objects.filter(
        project=project, kind=Task.Kind.WORK, status__in=Task.SATISFIED, completed_at__gte=since
    ).values_list("completed_at", flat=True)
    by_day = dict.fromkeys((first + dt.timedelta(days=i) for i in range(VELOCITY_DAYS)), 0)
    for completed in done:
        day = timezone.localdate(completed)
        if day in by_day:
            by_day[day] += 1
    total = sum(by_day.values())
    return {
        "days": VELOCITY_DAYS,
        "done": total,
        "per_day": round(total / VELOCITY_DAYS, 2),
        "by_day": [{"date": day.isoformat(), "done": n} for day, n in by_day.items()],
    }


def _projection(project: Project, remaining: int, now: dt.datetime) -> dict:
    cycles = [
        (completed - started).total_seconds()
        for started, completed in Task.objects.filter(
            project=project,
            kind=Task.Kind.WORK,
            status__in=Task.SATISFIED,
            started_at__isnull=False,
            completed_at__isnull=False,
        )
        .order_by("-completed_at", "-id")
        .values_list("started_at", "completed_at")[:CYCLE_SAMPLE]
        if completed >= started
    ]
    parallel = max(1, project.max_parallel_runs)
    assumptions = [
        f"remaining work: {remaining} open work task(s) (milestones and cancelled tasks left out)",
        f"cycle time: the median time from start to done of the last {CYCLE_SAMPLE} done tasks "
        f"({len(cycles)} measured)",
        f"parallelism: max parallel runs = {parallel}, all slots busy, no new tasks, no rework",
    ]
    if remaining == 0:
        return {"status": "finished", "remaining": 0, "assumptions": assumptions}
    if not cycles:
        return {
            "status": "unknown",
            "remaining": remaining,
            "note": "No task has been started and finished yet: no cycle time to project from.",
            "assumptions": assumptions,
        }
    median = statistics.median(cycles)
    seconds = remaining * median / parallel
    return {
        "status": "projected",
        "remaining": remaining,
        "median_cycle_hours": round(median / 3600, 2),
        "parallelism": parallel,
        "eta_hours": round(seconds / 3600, 1),
        "finish_at": (now + dt.timedelta(seconds=seconds)).isoformat(),
        "assumptions": assumptions,
    }


def _fragile(project: Project) -> list[dict]:
    nodes = (
        PlanNode.objects.filter(project=project, archived_at__isnull=True)
        .filter(Q(failure_count__gt=0) | Q(rework_count__gt=0))
        .order_by("-failure_count", "-rework_count", "-difficulty", "id")
        .values("id", "title", "anchor", "failure_count", "rework_count", "difficulty")[:FRAGILE_SHOWN]
    )
    return [
        {
            "node": n["id"],
            "title": n["title"],
            "anchor": n["anchor"],
            "failures": n["failure_count"],
            "rework": n["rework_count"],
            "difficulty": round(n["difficulty"], 2),
        }
        for n in nodes
    ]


# --- the document ----------------------------------------------------------------------------------


def snapshot_data(project: Project, *, now: dt.datetime | None = None) -> dict:
    """The snapshot of `project` as a JSON-ready dict (no writes; a bounded number of queries)."""
    now = now or timezone.now()
    phases, totals = _phases(project)
    in_flight = _in_flight(project)
    in_flight_count = ExecutionRun.objects.filter(project=project, status__in=ExecutionRun.OPEN).count()
    blocked = _blocked(project)
    return {
        "schema": SCHEMA_VERSION,
        "generated_at": now.isoformat(),
        "project": {
            "id": project.pk,
            "name": project.name,
            "autonomy_mode": project.autonomy_mode,
            "paused": project.paused,
            "max_parallel_runs": project.max_parallel_runs,
        },
        "totals": totals,
        "phases": phases,
        "in_flight": {"count": in_flight_count, **in_flight},
        "blocked": {"count": totals["blocked"], "tasks": blocked},
        "recent_merges": _merges(project),
        "spend": _spend(project, now),
        "velocity": _velocity(project, now),
        "projection": _projection(project, totals["remaining"], now),
        "fragile_areas": _fragile(project),
    }


NARRATIVE_SYSTEM = (
    "You are the engineering manager of a software project run by AI coding agents. Given the project's "
    "status snapshot as JSON, write a short status update for the project's lead: 3 to 6 sentences, plain "
    "text, no headings. Say how far along it is, what is at risk (blocked work, budget, fragile areas) "
    "and what should happen next. Use only facts from the snapshot."
)


def snapshot_refresh(project: Project, *, actor=None, narrative: bool = False) -> ProjectSnapshot:
    """Compute and store a snapshot (operators; `actor=None` is the local trusted shell). With
    `narrative`, the manager-role model adds a summary; when it cannot, `narrative_error` says why."""
    if actor is not None:
        require_role(actor, project, Role.OPERATOR)
    data = snapshot_data(project)
    snapshot = ProjectSnapshot(project=project, data=data, created_by=actor)
    if narrative:
        try:
            answer = complete(
                project,
                system=NARRATIVE_SYSTEM,
                prompt=snapshot_text_from(data, limit=8000) + "\n\nJSON:\n" + _json(data),
                purpose="snapshot",
            )
        except ModelUnavailable as exc:
            snapshot.narrative_error = str(exc)
        else:
            snapshot.narrative, snapshot.narrative_model = answer.text, answer.model
            data["narrative_cost_usd"] = _money(answer.usage.cost_usd)
    snapshot.save()
    _prune(project)
    return snapshot


def _prune(project: Project) -> None:
    """Keep the newest KEEP_SNAPSHOTS snapshots of the project."""
    stale = ProjectSnapshot.objects.filter(project=project).order_by("-created_at", "-id")[KEEP_SNAPSHOTS:]
    ProjectSnapshot.objects.filter(pk__in=list(stale.values_list("pk", flat=True))).delete()


def _json(data: dict) -> str:
    return json.dumps(data, sort_keys=True)[:20_000]


def snapshot_latest(project: Project, *, max_age: dt.timedelta | None = None) -> ProjectSnapshot:
    """The newest stored snapshot, or a new one computed and stored now when there is none (or, with
    `max_age`, when the newest is older than that). Readers may call this."""
    latest = ProjectSnapshot.objects.filter(project=project).order_by("-created_at", "-id").first()
    if latest is None or max_age is not None and latest.created_at < timezone.now() - max_age:
        latest = ProjectSnapshot.objects.create(project=project, data=snapshot_data(project))
    return latest


def snapshot_text(project: Project) -> str:
    """A short plain-text snapshot for agent prompts: the newest stored one if younger than FRESH_FOR,
    else computed now and stored (the runs started in the next minutes share it)."""
    latest = (
        ProjectSnapshot.objects.filter(project=project, created_at__gte=timezone.now() - FRESH_FOR)
        .order_by("-created_at", "-id")
        .values_list("data", flat=True)
        .first()
    )
    if latest and latest.get("schema") == SCHEMA_VERSION:
        return snapshot_text_from(latest)
    data = snapshot_data(project)
    ProjectSnapshot.objects.create(project=project, data=data)
    _prune(project)
    return snapshot_text_from(data)


def snapshot_text_from(data: dict, *, limit: int = 2000) -> str:
    """Render a snapshot document as a few lines of plain text (at most `limit` characters)."""
    totals = data["totals"]
    spend = data["spend"]
    velocity = data["velocity"]
    projection = data["projection"]
    lines = [
        f"Project {data['project']['name']}: {totals['done']}/{totals['total']} work tasks done "
        f"({totals['percent_done']}%), {totals['integrating']} integrating, {totals['review']} in review, "
        f"{totals['in_progress']} in progress, {totals['blocked']} blocked.",
    ]
    phases = [p for p in data["phases"] if p["total"]]
    if phases:
        lines.append(
            "Phases: "
            + "; ".join(f"{p['title']} {p['done']}/{p['total']}" for p in phases[:8])
            + (f"; … {len(phases) - 8} more" if len(phases) > 8 else "")
            + "."
        )
    lines.append(f"In flight: {data['in_flight']['count']} run(s).")
    blocked = data["blocked"]["tasks"]
    if blocked:
        lines.append(
            "Blocked: "
            + "; ".join(
                f"#{t['task']} {t['title']}" + (f" ({t['reason']})" if t["reason"] else "")
                for t in blocked[:5]
            )
            + "."
        )
    merges = data["recent_merges"]
    if merges:
        lines.append(
            "Recently merged: " + "; ".join(f"#{m['task']} {m['task_title']}" for m in merges[:5]) + "."
        )
    cap = (
        f" of ${spend['daily_cap_usd']} daily cap"
        if spend["daily_cap_usd"] is not None
        else " (no daily cap)"
    )
    lines.append(f"Spend: ${spend['today_usd']} today{cap}, ${spend['total_usd']} in total.")
    lines.append(f"Velocity: {velocity['per_day']} tasks/day over {velocity['days']} days.")
    if projection["status"] == "projected":
        lines.append(
            f"Projected finish: ~{projection['eta_hours']} h ({projection['remaining']} tasks × median cycle "
            f"{projection['median_cycle_hours']} h ÷ {projection['parallelism']} parallel)."
        )
    fragile = data["fragile_areas"]
    if fragile:
        lines.append(
            "Fragile areas: "
            + "; ".join(f"{f['title']} ({f['failures']} failures, {f['rework']} rework)" for f in fragile[:5])
            + "."
        )
    text = "\n".join(lines)
    return text if len(text) <= limit else text[: limit - 1] + "…"
