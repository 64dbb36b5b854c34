"""Reads for the control tower: the dashboard's session cards and the projects table.

Every function here runs a constant number of queries, however many projects and runs there are
(tests/core/test_pages_dashboard.py checks it): the projects a user sees (one query, role annotated),
their active runs (one query, the step waiting for approval annotated), the global queue order (one
query) and the recently finished runs (one query).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db.models import Count, DecimalField, IntegerField, Max, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from autopilot.models import Event, Project, Role
from autopilot.selectors import project_list
from runs.models import AgentBackend, ExecutionRun, ExecutionStep

DEMO_PROJECT_NAME = "Demo"  # the project `autopilot demo` creates (autopilot/management/commands/demo.py)
# The dashboard's status filter: a name -> the run statuses it shows.
STATUS_FILTERS = {
    "waiting": (ExecutionRun.Status.WAITING_APPROVAL,),
    "running": (ExecutionRun.Status.PREPARING, ExecutionRun.Status.RUNNING),
    "queued": (ExecutionRun.Status.QUEUED,),
    "finished": tuple(ExecutionRun.TERMINAL),
}
STATUS_FILTER_LABELS = {
    "waiting": "Waiting for approval",
    "running": "Running",
    "queued": "Queued",
    "finished": "Recently finished",
}
GROUP_ORDER = {
    ExecutionRun.Status.WAITING_APPROVAL: 0,
    ExecutionRun.Status.RUNNING: 1,
    ExecutionRun.Status.PREPARING: 1,
    ExecutionRun.Status.QUEUED: 2,
}
RECENT_LIMIT = 12
ACTIVE_LIMIT = 1000  # cards; the global run cap and the queue size keep the real number far lower


def is_demo_project(project: Project) -> bool:
    """Only the project `autopilot demo` made: its name and a repository in the server's data directory
    (no user may register a repository there, so the label cannot be borrowed)."""
    if project.name != DEMO_PROJECT_NAME:
        return False
    data_dir = Path(settings.DATA_DIR).expanduser().resolve()
    return Path(project.repo_path).expanduser().resolve().is_relative_to(data_dir)


@dataclass
class Board:
    waiting: list = field(default_factory=list)
    running: list = field(default_factory=list)
    queued: list = field(default_factory=list)
    finished: list = field(default_factory=list)
    hidden: int = 0
    total_active: int = 0

    @property
    def active(self) -> list:
        return self.waiting + self.running + self.queued

    @property
    def needs_input(self) -> int:
        return len(self.waiting)


def _waiting_step():
    return (
        ExecutionStep.objects.filter(run=OuterRef("pk"), status=ExecutionStep.Status.NEEDS_APPROVAL)
        .order_by("seq")
        .values("pk")[:1]
    )


def _decorate(run: ExecutionRun, projects: dict[int, Project]) -> ExecutionRun:
    project = projects[run.project_id]
    run.project = project
    run.can_operate = project.my_role in (Role.OPERATOR, Role.OWNER)
    run.is_scripted = run.agent_backend == AgentBackend.SCRIPTED
    run.title = run.task.title if run.task_id and run.task else run.prompt
    budget = run.budget_usd or Decimal("0")
    run.budget_share = min(100, round(float(run.cost_usd / budget) * 100)) if budget > 0 else 0
    run.steps_so_far = run.last_step_seq
    run.since = run.started_at or run.queued_at or run.created_at
    return run


def dashboard_board(*, user, project_id: int | None = None, status: str = "") -> tuple[list[Project], Board]:
    """The projects `user` sees and the session cards, filtered by project and status filter name."""
    projects = list(project_list(user=user).order_by("name"))
    by_pk = {p.pk: p for p in projects}
    board = Board()
    if not projects:
        return projects, board
    active = list(
        ExecutionRun.objects.filter(project_id__in=list(by_pk), status__in=ExecutionRun.OPEN)
        .select_related("task")
        .annotate(waiting_step=Subquery(_waiting_step(), output_field=IntegerField()))
        .order_by("created_at", "id")[:ACTIVE_LIMIT]
    )
    board.total_active = len(active)
    queued_ids = list(
        ExecutionRun.objects.filter(status=ExecutionRun.Status.QUEUED)
        .order_by("-priority", "created_at", "id")
        .values_list("pk", flat=True)[: settings.AUTOPILOT_QUEUE_MAX]
    )
    positions = {pk: i for i, pk in enumerate(queued_ids, start=1)}
    wanted = STATUS_FILTERS.get(status)
    shown = []
    for run in active:
        if project_id and run.project_id != project_id:
            continue
        if wanted and run.status not in wanted:
            continue
        shown.append(_decorate(run, by_pk))
    board.hidden = len(active) - len(shown)
    for run in shown:
        run.position = positions.get(run.pk)
    shown.sort(key=lambda r: (GROUP_ORDER[r.status], r.position or 0, r.created_at, r.pk))
    board.waiting = [r for r in shown if r.status == ExecutionRun.Status.WAITING_APPROVAL]
    board.running = [r for r in shown if r.status in STATUS_FILTERS["running"]]
    board.queued = [r for r in shown if r.status == ExecutionRun.Status.QUEUED]
    if not wanted or status == "finished":
        finished = (
            ExecutionRun.objects.filter(
                project_id__in=[project_id] if project_id else list(by_pk), status__in=ExecutionRun.TERMINAL
            )
            .select_related("task")
            .order_by("-ended_at", "-id")[:RECENT_LIMIT]
        )
        board.finished = [_decorate(run, by_pk) for run in finished if run.project_id in by_pk]
    return projects, board


def needs_input(*, user) -> list[dict]:
    """Runs waiting for a human in the projects `user` sees (the navigation badge): one query."""
    if user is None or not user.is_authenticated:
        return []
    visible = project_list(user=user).values("pk")
    rows = (
        ExecutionRun.objects.filter(project_id__in=visible, status=ExecutionRun.Status.WAITING_APPROVAL)
        .order_by("created_at", "id")
        .values("pk", "project__name")[:100]
    )
    return [{"run": row["pk"], "project": row["project__name"]} for row in rows]


def last_event_id() -> int:
    return Event.objects.order_by("-id").values_list("id", flat=True).first() or 0


def projects_table(*, user) -> list[Project]:
    """Projects `user` sees with active runs, sessions, last activity and today's spend: one query."""
    start_of_day = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    runs = ExecutionRun.objects.filter(project=OuterRef("pk")).order_by().values("project")
    rows = list(
        project_list(user=user)
        .annotate(
            active_runs=Coalesce(
                Subquery(
                    runs.filter(status__in=ExecutionRun.OPEN).annotate(n=Count("pk")).values("n"),
                    output_field=IntegerField(),
                ),
                0,
            ),
            sessions=Coalesce(
                Subquery(runs.annotate(n=Count("pk")).values("n"), output_field=IntegerField()), 0
            ),
            last_run_at=Subquery(runs.annotate(m=Max("created_at")).values("m")),
            spend_today=Coalesce(
                Subquery(
                    runs.filter(created_at__gte=start_of_day).annotate(s=Sum("cost_usd")).values("s"),
                    output_field=DecimalField(max_digits=12, decimal_places=6),
                ),
                Decimal("0"),
                output_field=DecimalField(max_digits=12, decimal_places=6),
            ),
        )
        .order_by("name")
    )
    for project in rows:
        project.is_demo = is_demo_project(project)
        project.last_active = max(filter(None, [project.last_run_at, project.updated_at]), default=None)
        project.can_remove = project.my_role == Role.OWNER
    return rows
