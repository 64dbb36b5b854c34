"""Reads the manager decides on: which tasks are runnable, in which order, and with what capacity.

Everything here is set-based: one query answers for a whole project (or for every project at once),
never a query per task.

Ranking (highest first): task priority (0–5), learned priority (refine_plan), then plan order and id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from django.conf import settings
from django.db import connection
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
from django.db.models.functions import Coalesce
from django.utils import timezone

from autopilot.manager.models import Proposal
from autopilot.models import AutonomyMode, Project
from blueprints.filtersets import subtree_q
from blueprints.models import PlanNode, Task
from blueprints.selectors import unfinished_dependency_exists
from runs.models import ExecutionRun, RunKind, UsageRecord

RANKING = Task.RANKING
MONEY = DecimalField(max_digits=14, decimal_places=6)


def undone_dependency() -> Exists:
    """The task (OuterRef pk) has a dependency that is not done: the same rule as blueprints'."""
    return unfinished_dependency_exists()


def open_run() -> Exists:
    return Exists(ExecutionRun.objects.filter(task=OuterRef("pk"), status__in=ExecutionRun.OPEN))


def tasks_with_open_runs() -> QuerySet:
    """Task ids that have a queued or active run: few rows (bounded by the queue and the concurrency
    limits), so `pk__in` this non-correlated subquery is evaluated once — much cheaper than a
    correlated NOT EXISTS per task on large graphs."""
    return ExecutionRun.objects.filter(status__in=ExecutionRun.OPEN, task__isnull=False).values("task_id")


def pending_proposal() -> Exists:
    return Exists(Proposal.objects.filter(task=OuterRef("pk"), status=Proposal.Status.PENDING))


def dismissed_proposal() -> Exists:
    """A dismissal is remembered until the task changes (its updated_at moves past the decision)."""
    return Exists(
        Proposal.objects.filter(
            task=OuterRef("pk"), status=Proposal.Status.DISMISSED, decided_at__gte=OuterRef("updated_at")
        )
    )


def in_phase(project: Project) -> Value | Case:
    """True when the task lies in the project's active phase subtree (`subtree_q`), or no phase is set."""
    phase = project.active_phase if project.active_phase_id else None
    if phase is None:
        return Value(True, output_field=BooleanField())
    return Case(When(subtree_q(phase), then=Value(True)), default=Value(False), output_field=BooleanField())


def rank_key(task) -> tuple:
    """`Task.RANKING` as a sort key over objects (tasks or candidates) with those attributes."""
    key = []
    for name in RANKING:
        attr = name.lstrip("-")
        value = getattr(task, "pk" if attr == "id" else attr)
        key.append(-value if name.startswith("-") else value)
    return tuple(key)


def runnable_tasks(project_ids: list[int] | None = None) -> QuerySet[Task]:
    """Runnable work tasks whose dependencies are ALL done and that have no open run."""
    qs = Task.objects.filter(status__in=Task.RUNNABLE, kind=Task.Kind.WORK, removed_from_spec=False)
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
        ExecutionRun.objects.filter(
            task_id__in=task_ids, status__in=ExecutionRun.FAILED, ended_at__isnull=False
        )
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
    # Interactive sessions (a human in a terminal) take no agent slot: neither the global cap nor the
    # project's parallelism counts them (runs.interactive has its own limits).
    agent_runs = ExecutionRun.objects.exclude(kind=RunKind.INTERACTIVE)
    global_row = agent_runs.aggregate(
        open=Count("pk", filter=Q(status__in=ExecutionRun.OPEN)),
        queued=Count("pk", filter=Q(status=ExecutionRun.Status.QUEUED)),
    )
    per_project = {
        row["project_id"]: row
        for row in agent_runs.filter(project_id__in=ids, status__in=ExecutionRun.OPEN)
        .values("project_id")
        .annotate(
            open=Count("pk"),
            reserved=Coalesce(
                Sum(F("budget_usd") - F("cost_usd"), output_field=MONEY),
                Value(Decimal("0")),
                output_field=MONEY,
            ),
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
        for row in Task.objects.filter(
            project_id__in=project_ids, status__in=Task.RUNNABLE, kind=Task.Kind.WORK
        )
        .values("project_id")
        .annotate(n=Count("pk"))
    }


def phase_filter(projects: list[Project]) -> Q:
    """Tasks inside their project's active phase subtree (`subtree_q`); every task when no phase.

    Built from the phase nodes (one lookup of the few phase nodes), so the big task query joins the
    plan nodes only when some project has an active phase."""
    phased = {p.pk: p.active_phase_id for p in projects if p.active_phase_id}
    if not phased:
        return Q()
    nodes = PlanNode.objects.in_bulk(list(phased.values()))
    condition = ~Q(project_id__in=list(phased))
    for project_id, node_id in phased.items():
        node = nodes.get(node_id)
        if node is None:
            continue
        condition |= Q(project_id=project_id) & subtree_q(node)
    return condition


def candidate_queryset(
    projects: list[Project], *, modes: dict[int, str], include_todo: bool = False
) -> QuerySet[Task]:
    """Runnable tasks of the given projects in their active phase (suggest mode: not already proposed,
    not dismissed since the task last changed). `include_todo`: also to-do tasks whose dependencies
    are done (what the next reconcile makes ready) — for explanations and dry runs."""
    ids = [p.pk for p in projects]
    statuses = Task.UNSTARTED if include_todo else Task.RUNNABLE
    qs = Task.objects.filter(
        project_id__in=ids, status__in=statuses, kind=Task.Kind.WORK, removed_from_spec=False
    )
    qs = qs.filter(~undone_dependency()).exclude(pk__in=tasks_with_open_runs()).filter(phase_filter(projects))
    suggesting = [pid for pid in ids if modes.get(pid) == AutonomyMode.SUGGEST]
    if suggesting:
        qs = qs.filter(~Q(project_id__in=suggesting) | (~pending_proposal() & ~dismissed_proposal()))
    return qs


class Candidate(NamedTuple):
    """What the tick's pre-pass knows of a candidate task (the fields `decide` reads). The tasks it
    acts on are re-read whole, under the locks."""

    pk: int
    project_id: int
    plan_node_id: int | None
    title: str
    priority: int
    learned_priority: float
    plan_order: int
    attempts: int


def ranked_candidates(
    projects: list[Project], *, modes: dict[int, str], limits: dict[int, int], include_todo: bool = False
) -> dict[int, list[Candidate]]:
    """The best `limits[project]` candidates of every project, best first (priority, learned priority,
    plan order, id), in ONE query whatever the number of projects and tasks: it walks each project's
    candidates in ranking order (the task_project_ready index) and stops at the limit, so it reads a
    few rows per project, not every ready task."""
    wanted = [p for p in projects if limits.get(p.pk, 0) > 0]
    if not wanted:
        return {}
    candidates = (
        candidate_queryset(wanted, modes=modes, include_todo=include_todo)
        .order_by()
        .values(*Candidate._fields)
    )
    grouped: dict[int, list[Candidate]] = {}
    for row in _top_per_project(candidates, [p.pk for p in wanted], max(limits[p.pk] for p in wanted)):
        candidate = Candidate(*row)
        grouped.setdefault(candidate.project_id, []).append(candidate)
    return {
        project_id: sorted(rows, key=rank_key)[: limits[project_id]] for project_id, rows in grouped.items()
    }


def _top_per_project(candidates: QuerySet, project_ids: list[int], depth: int) -> list[tuple]:
    """The first `depth` rows of `candidates` (a values() queryset with pk, project_id and the ranking
    columns, in its values() order) per project, unordered, in one statement: per project row an
    `ORDER BY … LIMIT depth` over its candidates (SQLite: a correlated `IN (…)`; PostgreSQL, whose
    planner would run that once per task: `JOIN LATERAL`). SQL the ORM cannot express (SQLite refuses
    LIMIT inside a UNION's parts; a ROW_NUMBER window ranks every candidate first). The candidate rule
    itself is the ORM's, compiled: one definition for the tick, the dry run and the explanations."""
    sql, params = candidates.query.sql_with_params()
    quote = connection.ops.quote_name
    projects, tasks = quote(Project._meta.db_table), quote(Task._meta.db_table)
    pk, task_pk = quote(Project._meta.pk.column), quote(Task._meta.pk.column)
    meta = Task._meta
    columns = ", ".join(
        f"t.{quote((meta.pk if name == 'pk' else meta.get_field(name)).column)}"
        for name in candidates.query.values_select
    )
    marks = ", ".join(["%s"] * len(project_ids))
    top = (
        f"SELECT c.pk FROM candidate c WHERE c.project_id = p.{pk} "  # noqa: S608 - identifiers only
        f"ORDER BY {_order_sql('c')} LIMIT %s"
    )
    if connection.vendor == "postgresql":
        join = f"JOIN LATERAL ({top}) top ON true JOIN {tasks} t ON t.{task_pk} = top.pk"
    else:
        join = f"JOIN {tasks} t ON t.{task_pk} IN ({top})"
    # Identifiers come from the models; every value is a parameter.
    statement = (
        f"WITH candidate AS ({sql}) SELECT {columns} FROM {projects} p {join} WHERE p.{pk} IN ({marks})"  # noqa: S608
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [*params, depth, *project_ids])
        return cursor.fetchall()


def _order_sql(alias: str) -> str:
    """`Task.RANKING` as an SQL ORDER BY list over the candidate CTE `alias` (whose id column is pk)."""
    columns = []
    for name in RANKING:
        column = name.lstrip("-")
        direction = " DESC" if name.startswith("-") else ""
        columns.append(f"{alias}.{'pk' if column == 'id' else column}{direction}")
    return ", ".join(columns)


def explained_tasks(project: Project, *, limit: int = 1000) -> QuerySet[Task]:
    """Every ready (or about to be ready) task of a project with what decides whether it starts."""
    open_runs = ExecutionRun.objects.filter(task=OuterRef("pk"), status__in=ExecutionRun.OPEN).order_by("-pk")
    return (
        Task.objects.filter(project=project, kind=Task.Kind.WORK)
        .filter(status__in=Task.UNSTARTED)
        .filter(~undone_dependency())
        .annotate(
            in_phase=in_phase(project),
            open_run_id=Subquery(open_runs.values("pk")[:1]),
            open_run_status=Subquery(open_runs.values("status")[:1]),
            has_pending_proposal=pending_proposal(),
            has_dismissed_proposal=dismissed_proposal(),
        )
        .select_related("plan_node")
        .order_by(*RANKING)[:limit]
    )
