"""Reads the manager decides on: which tasks are runnable, in which order, and with what capacity.

Everything here is set-based: one query answers for a whole project (or for every project at once),
never a query per task.

Ranking (highest first): task priority (0–5), learned priority (refine_plan), then plan order and id.
"""

from __future__ import annotations

import datetime as dt
import heapq
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db.models import (
    BooleanField,
    Case,
    Count,
    DecimalField,
    Exists,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Concat
from django.utils import timezone

from autopilot.models import AutonomyMode, Project, Proposal
from blueprints.models import Task
from blueprints.selectors import unfinished_dependency_exists
from runs.models import ExecutionRun, UsageRecord

OPEN_RUN_STATUSES = ("queued", "preparing", "running", "waiting_approval")
ACTIVE_RUN_STATUSES = ("preparing", "running", "waiting_approval")
FAILED_RUN_STATUSES = ("failed", "timed_out")
RANKING = ("-priority", "-learned_priority", "plan_order", "id")
MONEY = DecimalField(max_digits=14, decimal_places=6)


def undone_dependency() -> Exists:
    """The task (OuterRef pk) has a dependency that is not done: the same rule as blueprints'."""
    return unfinished_dependency_exists()


def open_run() -> Exists:
    return Exists(ExecutionRun.objects.filter(task=OuterRef("pk"), status__in=OPEN_RUN_STATUSES))


def tasks_with_open_runs() -> QuerySet:
    """Task ids that have a queued or active run: few rows (bounded by the queue and the concurrency
    limits), so `pk__in` this non-correlated subquery is evaluated once — much cheaper than a
    correlated NOT EXISTS per task on large graphs."""
    return ExecutionRun.objects.filter(status__in=OPEN_RUN_STATUSES, task__isnull=False).values("task_id")


def pending_proposal() -> Exists:
    return Exists(Proposal.objects.filter(task=OuterRef("pk"), status=Proposal.Status.PENDING))


def dismissed_proposal() -> Exists:
    """A dismissal is remembered until the task changes (its updated_at moves past the decision)."""
    return Exists(
        Proposal.objects.filter(
            task=OuterRef("pk"), status=Proposal.Status.DISMISSED, decided_at__gte=OuterRef("updated_at")
        )
    )


def in_phase() -> Case:
    """True when the task lies in its project's active phase subtree (anchor prefix), or no phase is set."""
    phase_anchor = F("project__active_phase__anchor")
    return Case(
        When(project__active_phase__isnull=True, then=Value(True)),
        When(plan_node__anchor=phase_anchor, then=Value(True)),
        When(plan_node__anchor__startswith=Concat(phase_anchor, Value("/")), then=Value(True)),
        default=Value(False),
        output_field=BooleanField(),
    )


def runnable_tasks(project_ids: list[int] | None = None) -> QuerySet[Task]:
    """Ready work tasks whose dependencies are ALL done and that have no queued or active run."""
    qs = Task.objects.filter(status=Task.Status.READY, kind=Task.Kind.WORK, removed_from_spec=False)
    if project_ids is not None:
        qs = qs.filter(project_id__in=project_ids)
    return qs.filter(~undone_dependency()).exclude(pk__in=tasks_with_open_runs())


def backoff_seconds(attempts: int) -> float:
    """Retry backoff after a failed attempt: base × 2^(attempts-1), capped."""
    base = settings.AUTOPILOT_RETRY_BACKOFF_SECONDS
    cap = settings.AUTOPILOT_RETRY_BACKOFF_MAX_SECONDS
    if attempts <= 0 or base <= 0:
        return 0.0
    return float(min(cap, base * (2 ** (attempts - 1))))


def last_failures(task_ids: list[int]) -> dict[int, dt.datetime]:
    """When each task's most recent failed run ended (one grouped query)."""
    if not task_ids:
        return {}
    rows = (
        ExecutionRun.objects.filter(task_id__in=task_ids, status__in=FAILED_RUN_STATUSES, ended_at__isnull=False)
        .values("task_id")
        .annotate(last=Max("ended_at"))
    )
    return {row["task_id"]: row["last"] for row in rows}


@dataclass
class Capacity:
    """What a project may still start right now, and why not when it may not."""

    max_parallel: int
    project_open: int
    global_max: int
    global_open: int
    queue_size: int
    queue_max: int
    run_budget: Decimal
    daily_budget: Decimal | None
    spent_today: Decimal = Decimal("0")
    reserved: Decimal = Decimal("0")
    pending_proposals: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def project_slots(self) -> int:
        return max(0, self.max_parallel - self.project_open)

    @property
    def global_slots(self) -> int:
        return max(0, self.global_max - self.global_open)

    @property
    def queue_room(self) -> int:
        return max(0, self.queue_max - self.queue_size)

    @property
    def budget_left(self) -> Decimal | None:
        if self.daily_budget is None:
            return None
        return self.daily_budget - self.spent_today - self.reserved

    def budget_slots(self) -> int | None:
        left = self.budget_left
        if left is None:
            return None
        if self.run_budget <= 0:
            return 10**6 if left > 0 else 0
        return max(0, int(left // self.run_budget))

    def as_dict(self) -> dict:
        return {
            "max_parallel_runs": self.max_parallel,
            "project_open_runs": self.project_open,
            "project_slots": self.project_slots,
            "global_max_runs": self.global_max,
            "global_open_runs": self.global_open,
            "global_slots": self.global_slots,
            "queue_size": self.queue_size,
            "queue_max": self.queue_max,
            "run_budget_usd": str(self.run_budget),
            "daily_budget_usd": None if self.daily_budget is None else str(self.daily_budget),
            "spent_today_usd": str(self.spent_today),
            "reserved_usd": str(self.reserved),
            "budget_left_usd": None if self.budget_left is None else str(self.budget_left),
            "pending_proposals": self.pending_proposals,
        }


def today_start(now: dt.datetime | None = None) -> dt.datetime:
    now = timezone.localtime(now or timezone.now())
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def capacities(projects: list[Project], *, now: dt.datetime | None = None) -> dict[int, Capacity]:
    """Capacity of several projects in a constant number of queries (grouped counts and sums)."""
    ids = [p.pk for p in projects]
    global_row = ExecutionRun.objects.aggregate(
        open=Count("pk", filter=Q(status__in=OPEN_RUN_STATUSES)),
        queued=Count("pk", filter=Q(status="queued")),
    )
    per_project = {
        row["project_id"]: row
        for row in ExecutionRun.objects.filter(project_id__in=ids, status__in=OPEN_RUN_STATUSES)
        .values("project_id")
        .annotate(
            open=Count("pk"),
            reserved=Coalesce(Sum(F("budget_usd") - F("cost_usd"), output_field=MONEY), Value(Decimal("0")), output_field=MONEY),
        )
    }
    capped = [p.pk for p in projects if p.daily_budget_usd is not None]
    spent = {}
    if capped:
        spent = {
            row["project_id"]: row["spent"]
            for row in UsageRecord.objects.filter(project_id__in=capped, created_at__gte=today_start(now))
            .values("project_id")
            .annotate(spent=Sum("cost_usd"))
        }
    suggesting = [p.pk for p in projects if p.autonomy_mode == AutonomyMode.SUGGEST]
    pending = {}
    if suggesting:
        pending = {
            row["project_id"]: row["n"]
            for row in Proposal.objects.filter(project_id__in=suggesting, status=Proposal.Status.PENDING)
            .values("project_id")
            .annotate(n=Count("pk"))
        }
    result = {}
    for p in projects:
        row = per_project.get(p.pk, {})
        result[p.pk] = Capacity(
            max_parallel=p.max_parallel_runs,
            project_open=row.get("open", 0),
            global_max=settings.AUTOPILOT_MAX_CONCURRENT_RUNS,
            global_open=global_row["open"],
            queue_size=global_row["queued"],
            queue_max=settings.AUTOPILOT_QUEUE_MAX,
            run_budget=p.default_run_budget_usd,
            daily_budget=p.daily_budget_usd,
            spent_today=Decimal(spent.get(p.pk) or 0),
            reserved=Decimal(row.get("reserved") or 0),
            pending_proposals=pending.get(p.pk, 0),
        )
    return result


def ready_counts(project_ids: list[int]) -> dict[int, int]:
    """Tasks in status ready per project (one grouped query on the status index)."""
    return {
        row["project_id"]: row["n"]
        for row in Task.objects.filter(project_id__in=project_ids, status=Task.Status.READY, kind=Task.Kind.WORK)
        .values("project_id")
        .annotate(n=Count("pk"))
    }


def phase_filter(projects: list[Project]) -> Q:
    """Tasks inside their project's active phase subtree (anchor prefix); every task when no phase.

    Built from the phases' anchors (one lookup of the few phase nodes), so the big task query joins
    the plan nodes only when some project has an active phase."""
    phased = {p.pk: p.active_phase_id for p in projects if p.active_phase_id}
    if not phased:
        return Q()
    from blueprints.models import PlanNode

    anchors = dict(PlanNode.objects.filter(pk__in=phased.values()).values_list("pk", "anchor"))
    condition = ~Q(project_id__in=list(phased))
    for project_id, node_id in phased.items():
        anchor = anchors.get(node_id)
        if anchor is None:
            continue
        condition |= Q(project_id=project_id) & (
            Q(plan_node__anchor=anchor) | Q(plan_node__anchor__startswith=anchor + "/")
        )
    return condition


def candidate_queryset(
    projects: list[Project], *, modes: dict[int, str], include_todo: bool = False, every_project: bool = False
) -> QuerySet[Task]:
    """Runnable tasks of the given projects in their active phase (suggest mode: not already proposed,
    not dismissed since the task last changed). `include_todo`: also to-do tasks whose dependencies
    are done (what the next reconcile makes ready) — for explanations and dry runs."""
    ids = [p.pk for p in projects]
    statuses = [Task.Status.READY, Task.Status.TODO] if include_todo else [Task.Status.READY]
    qs = Task.objects.filter(status__in=statuses, kind=Task.Kind.WORK, removed_from_spec=False)
    if not every_project:  # `every_project`: the list is every project there is (a plain scan is cheaper)
        qs = qs.filter(project_id__in=ids)
    qs = qs.filter(~undone_dependency()).exclude(pk__in=tasks_with_open_runs()).filter(phase_filter(projects))
    suggesting = [pid for pid in ids if modes.get(pid) == AutonomyMode.SUGGEST]
    if suggesting:
        qs = qs.filter(~Q(project_id__in=suggesting) | (~pending_proposal() & ~dismissed_proposal()))
    return qs


def ranked_candidates(
    projects: list[Project], *, modes: dict[int, str], limits: dict[int, int], include_todo: bool = False
) -> dict[int, list[Task]]:
    """The best `limits[project]` candidates of every project (ranked by priority, learned priority,
    plan order, id) in two queries whatever the number of projects and tasks: the runnable tasks'
    ranking keys as plain tuples (a top-k per project in Python: cheaper on SQLite than a ROW_NUMBER
    window over the same rows), then the chosen rows."""
    wanted = [p for p in projects if limits.get(p.pk, 0) > 0]
    if not wanted:
        return {}
    every = len(wanted) >= Project.objects.count()
    keys = candidate_queryset(wanted, modes=modes, include_todo=include_todo, every_project=every).order_by().values_list(
        "pk", "project_id", "priority", "learned_priority", "plan_order"
    )
    grouped: dict[int, list[tuple]] = {}
    for pk, project_id, priority, learned, plan_order in keys.iterator(chunk_size=5000):
        grouped.setdefault(project_id, []).append((-priority, -learned, plan_order, pk))
    chosen: dict[int, list[int]] = {
        project_id: [row[3] for row in heapq.nsmallest(limits[project_id], rows)] for project_id, rows in grouped.items()
    }
    ids = [pk for pks in chosen.values() for pk in pks]
    if not ids:
        return {}
    rows = {
        t.pk: t
        for t in Task.objects.filter(pk__in=ids).only(
            "pk", "project_id", "plan_node_id", "title", "status", "priority", "learned_priority", "plan_order",
            "attempts", "updated_at",
        )
    }
    return {project_id: [rows[pk] for pk in pks if pk in rows] for project_id, pks in chosen.items()}


def candidate_tasks(project: Project, *, mode: str, limit: int | None, only_ids: list[int] | None = None) -> list[Task]:
    """Candidates of one project, best first (re-checked under the tick's locks)."""
    qs = candidate_queryset([project], modes={project.pk: mode})
    if only_ids is not None:
        qs = qs.filter(pk__in=only_ids)
    qs = qs.select_related("plan_node").order_by(*RANKING)
    return list(qs[:limit] if limit is not None else qs)


def explained_tasks(project: Project, *, limit: int = 1000) -> QuerySet[Task]:
    """Every ready (or about to be ready) task of a project with what decides whether it starts."""
    open_runs = ExecutionRun.objects.filter(task=OuterRef("pk"), status__in=OPEN_RUN_STATUSES).order_by("-pk")
    return (
        Task.objects.filter(project=project, kind=Task.Kind.WORK)
        .filter(Q(status=Task.Status.READY) | Q(status=Task.Status.TODO))
        .filter(~undone_dependency())
        .annotate(
            in_phase=in_phase(),
            open_run_id=Subquery(open_runs.values("pk")[:1]),
            open_run_status=Subquery(open_runs.values("status")[:1]),
            has_pending_proposal=pending_proposal(),
            has_dismissed_proposal=dismissed_proposal(),
        )
        .select_related("plan_node")
        .order_by(*RANKING)[:limit]
    )
