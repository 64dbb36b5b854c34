"""The tick: reconcile, then start (or propose) the best ready work within every limit.

One code path serves every trigger (schedule, events, API, CLI, admin, the terminal driver):
`tick_all(project_ids=None)`; `tick_project(project)` is the same for one project.

Safety under concurrency (two ticks at once, threads or processes, SQLite or PostgreSQL):
- the part that starts work runs in one transaction per project that first takes a global tick lock
  (PostgreSQL: a transaction-scoped advisory lock; SQLite: IMMEDIATE transactions already serialize
  writers) and the Project row lock (select_for_update), then re-reads capacity and candidates
  under those locks — so a concurrent tick sees the runs the other one created;
- the database refuses a second queued/active code run for a task (UniqueConstraint on runs).

Queries: a constant number for the whole tick plus a constant number per project that can start
something; nothing per task.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_q.tasks import async_task

from autopilot import locks, queues
from autopilot.errors import CapacityExceeded
from autopilot.events import record_events
from autopilot.manager import ranking
from autopilot.manager.models import Proposal
from autopilot.manager.outcomes import apply_run_finished
from autopilot.models import AutonomyMode, Project
from blueprints.models import Task
from blueprints.readiness import refresh_readiness
from runs import integration
from runs.context import TASK_INSTRUCTION
from runs.models import ExecutionRun
from runs.services import reconcile_runs, runs_create_many

logger = logging.getLogger(__name__)

TICK_LOCK_KEY = 0x6175746F  # "auto": the global tick lock on PostgreSQL
EVENT_TASK_IDS = 50

# --- Reports --------------------------------------------------------------------------------------


class Code:
    """Why a task starts or is skipped. Counters (`ProjectTick.skipped`) are keyed by code; the text a
    human reads is made from the code (`reason_text`), never parsed back."""

    READY = "ready"
    OFF = "off"
    PAUSED = "paused"
    RETRY_BACKOFF = "retry_backoff"
    CAPACITY = "capacity"
    QUEUE_FULL = "queue_full"
    BUDGET = "budget"
    ALREADY_RUNNING = "already_running"
    ALREADY_PROPOSED = "already_proposed"


LABELS = {
    Code.READY: "ready",
    Code.OFF: "autonomy mode is off",
    Code.PAUSED: "project is paused",
    Code.RETRY_BACKOFF: "retry backoff",
    Code.CAPACITY: "capacity",
    Code.QUEUE_FULL: "queue full",
    Code.BUDGET: "budget",
    Code.ALREADY_RUNNING: "already running",
    Code.ALREADY_PROPOSED: "already proposed",
}


def reason_text(code: str, detail: str = "") -> str:
    """The human text of a decision: its code's label, then the detail."""
    return f"{LABELS[code]}: {detail}" if detail else LABELS[code]


@dataclass
class Decision:
    task: Task | ranking.Candidate  # the pre-pass decides on candidates, `_act` on the re-read tasks
    action: str  # start | propose | skip
    code: str  # a `Code`
    detail: str = ""

    @property
    def reasons(self) -> list[str]:
        return [reason_text(self.code, self.detail)]

    def as_dict(self) -> dict:
        return {
            "task": self.task.pk,
            "title": self.task.title,
            "priority": self.task.priority,
            "learned_priority": self.task.learned_priority,
            "plan_order": self.task.plan_order,
            "action": self.action,
            "code": self.code,
            "reasons": self.reasons,
        }


@dataclass
class ProjectTick:
    project_id: int
    mode: str
    paused: bool
    ready: int = 0
    started: list[dict] = field(default_factory=list)
    proposed: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    note: str = ""
    capacity: dict | None = None
    readiness: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """The comparable part (no ids of what started): used to avoid logging identical ticks."""
        return {
            "mode": self.mode,
            "paused": self.paused,
            "ready": self.ready,
            "skipped": self.skipped,
            "note": self.note,
        }

    def as_dict(self) -> dict:
        return {
            "project": self.project_id,
            "mode": self.mode,
            "paused": self.paused,
            "ready": self.ready,
            "started": self.started,
            "proposed": self.proposed,
            "skipped": self.skipped,
            "note": self.note,
            **({"readiness": self.readiness} if self.readiness else {}),
            **({"capacity": self.capacity} if self.capacity is not None else {}),
        }


@dataclass
class TickReport:
    reason: str
    elapsed_s: float = 0.0
    reaped: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    promoted: int = 0
    demoted: int = 0
    completed_milestones: int = 0
    merges: dict[int, list[dict]] = field(default_factory=dict)
    projects: dict[int, ProjectTick] = field(default_factory=dict)

    @property
    def started(self) -> list[dict]:
        return [item for p in self.projects.values() for item in p.started]

    @property
    def proposed(self) -> list[dict]:
        return [item for p in self.projects.values() for item in p.proposed]

    def as_dict(self, *, projects: bool = True) -> dict:
        data = {
            "reason": self.reason,
            "elapsed_s": round(self.elapsed_s, 4),
            "reaped_runs": self.reaped,
            "recovered_tasks": self.recovered,
            "promoted": self.promoted,
            "demoted": self.demoted,
            "completed_milestones": self.completed_milestones,
            "merges": {str(k): v for k, v in self.merges.items()},
            "started": self.started,
            "proposed": self.proposed,
        }
        if projects:
            data["projects"] = [p.as_dict() for p in self.projects.values()]
        return data


# --- Reconcile ------------------------------------------------------------------------------------


def _reap(now) -> list[int]:
    """Fail runs whose lease expired and re-enqueue queued runs whose message is lost (the reconciler's
    pass; `autopilot serve` also runs it every quarter lease)."""
    return list(reconcile_runs(now=now)["reaped"])


def _recover_orphans(project_ids: list[int]) -> list[int]:
    """Tasks left in progress without an open run (a missed on_run_finished): apply the outcome now."""
    orphans = list(
        Task.objects.filter(project_id__in=project_ids, status=Task.Status.IN_PROGRESS)
        .filter(~ranking.open_run())
        .values_list("pk", flat=True)[:100]
    )
    if not orphans:
        return []
    latest = {}
    for run_id, task_id in (
        ExecutionRun.objects.filter(task_id__in=orphans, role="code", status__in=ExecutionRun.TERMINAL)
        .order_by("task_id", "-pk")
        .values_list("pk", "task_id")
    ):
        latest.setdefault(task_id, run_id)
    for run_id in latest.values():
        apply_run_finished(run_id)
    return list(latest)


def _merge_queue(project_ids: list[int], *, enqueue: bool) -> dict[int, list[dict]]:
    """The queue step: merge approved work of every project that is not paused, whatever its mode
    (merging already-approved work needs no autonomy). With `enqueue` each project's queue is handed
    to a control worker (runs.tasks.process_integration_queue, on commit); without it (the terminal
    driver, tests) the queues are drained here, before readiness is refreshed, so dependents of what
    merged are ready in this same tick. Returns the inline results by project."""
    pending = [pk for pk in integration.pending_projects() if pk in set(project_ids)]
    results: dict[int, list[dict]] = {}
    for project_id in pending:
        if enqueue:
            transaction.on_commit(lambda pid=project_id: _enqueue_merges(pid))
            results[project_id] = [{"enqueued": True}]
            continue
        try:
            done = integration.drain(project_id)
        except Exception:  # noqa: BLE001 - one project's merge failure must not stop the tick
            logger.exception("merge queue of project %s failed", project_id)
            continue
        results[project_id] = [{"integration": i.pk, "task": i.task_id, "status": i.status} for i in done]
    return results


def _enqueue_merges(project_id: int) -> None:
    try:
        async_task(
            "runs.tasks.process_integration_queue",
            project_id,
            task_name=f"merge-queue-{project_id}",
            cluster=queues.CONTROL,
        )
    except Exception:  # noqa: BLE001 - the next tick enqueues it again
        logger.exception("could not enqueue the merge queue of project %s", project_id)


def _readiness_summary(changes: dict[str, list[int]] | None) -> dict:
    if not changes:
        return {}
    return {to: {"count": len(ids), "task_ids": ids[:EVENT_TASK_IDS]} for to, ids in changes.items()}


# --- Decisions ------------------------------------------------------------------------------------


def effective_mode(project: Project, mode_override: str | None = None) -> str:
    return mode_override or project.autonomy_mode


def decide(
    project: Project,
    *,
    mode: str,
    capacity: ranking.Capacity,
    candidates: list[Task] | list[ranking.Candidate],
    failures: dict,
    now,
) -> list[Decision]:
    """Pure: what to do with each candidate (best first), with the reasons. The tick and the plan
    explanation both call this, so the explanation is exactly what the next tick would do."""
    if mode == AutonomyMode.OFF:
        return [Decision(t, "skip", Code.OFF) for t in candidates]
    if project.paused:
        return [Decision(t, "skip", Code.PAUSED) for t in candidates]
    proposing = mode == AutonomyMode.SUGGEST
    project_slots = capacity.project_slots - (capacity.pending_proposals if proposing else 0)
    global_slots = capacity.global_slots
    queue_room = capacity.queue_room
    budget_slots = capacity.budget_slots()
    decisions = []
    rank = 0
    for task in candidates:
        rank += 1
        last_failure = failures.get(task.pk)
        if last_failure is not None and task.attempts:
            wait = ranking.backoff_seconds(task.attempts)
            retry_at = last_failure + timezone.timedelta(seconds=wait)
            if retry_at > now:
                decisions.append(
                    Decision(
                        task,
                        "skip",
                        Code.RETRY_BACKOFF,
                        (
                            f"attempt {task.attempts + 1} of {project.max_attempts} "
                            f"not before {retry_at:%H:%M:%S}"
                        ),
                    )
                )
                continue
        if project_slots <= 0:
            used = capacity.project_open + (capacity.pending_proposals if proposing else 0)
            what = "runs and pending proposals" if proposing else "queued/active runs"
            decisions.append(
                Decision(
                    task,
                    "skip",
                    Code.CAPACITY,
                    f"project limit reached ({used}/{capacity.max_parallel} {what})",
                )
            )
            continue
        if not proposing and global_slots <= 0:
            decisions.append(
                Decision(
                    task,
                    "skip",
                    Code.CAPACITY,
                    (
                        "global limit reached "
                        f"({capacity.global_open}/{capacity.global_max} queued/active runs)"
                    ),
                )
            )
            continue
        if not proposing and queue_room <= 0:
            decisions.append(
                Decision(task, "skip", Code.QUEUE_FULL, f"{capacity.queue_size}/{capacity.queue_max} queued")
            )
            continue
        if budget_slots is not None and budget_slots <= 0:
            decisions.append(
                Decision(
                    task,
                    "skip",
                    Code.BUDGET,
                    (
                        f"daily cap ${capacity.daily_budget} reached "
                        f"(spent ${capacity.spent_today:.2f} today, "
                        f"${capacity.reserved:.2f} reserved by open runs, "
                        f"a run reserves ${capacity.run_budget})"
                    ),
                )
            )
            continue
        why = (
            f"rank {rank}, all dependencies done; priority {task.priority}, learned priority "
            f"{task.learned_priority:.2f}, plan order {task.plan_order}"
        )
        decisions.append(Decision(task, "propose" if proposing else "start", Code.READY, why))
        project_slots -= 1
        global_slots -= 1
        queue_room -= 1
        if budget_slots is not None:
            budget_slots -= 1
    return decisions


def wanted_slots(project: Project, mode: str, capacity: ranking.Capacity) -> int:
    """How many tasks the project could start now (0 means: don't bother locking)."""
    if mode == AutonomyMode.OFF or project.paused:
        return 0
    if mode == AutonomyMode.SUGGEST:
        return max(0, capacity.project_slots - capacity.pending_proposals)
    slots = min(capacity.project_slots, capacity.global_slots, capacity.queue_room)
    budget = capacity.budget_slots()
    return slots if budget is None else min(slots, budget)


# --- Acting (under the locks) ---------------------------------------------------------------------


def _global_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [TICK_LOCK_KEY])


def start_run_for_task(
    *,
    project: Project,
    task: Task,
    mode: str,
    actor=None,
    enqueue: bool = True,
    budget_usd=None,
    expire_proposals: bool = True,
    previous=False,
):
    """Create the run of a task (queued; the worker is enqueued on commit). Caller holds the locks.

    `previous`: the task's latest code run (pk, attempt) when the caller fetched it in bulk; a retry
    links to it. The run is created by runs_create_many (the tick's path, with the mode in the INSERT),
    whose INSERT runs in a savepoint, so the DB guard refusing a duplicate (IntegrityError) leaves the
    caller's transaction usable."""
    if previous is False:
        previous = (
            ExecutionRun.objects.filter(task=task, role="code").order_by("-pk").only("pk", "attempt").first()
        )
    (run,) = runs_create_many(
        specs=[_run_spec(project, task, mode, previous, budget_usd)], actor=actor, enqueue=enqueue
    )
    if expire_proposals:
        Proposal.objects.filter(task=task, status=Proposal.Status.PENDING).update(
            status=Proposal.Status.EXPIRED, run=run, updated_at=timezone.now()
        )
    return run


def _latest_runs(task_ids: list[int]) -> dict:
    """Each task's latest code run (pk, attempt), in one query."""
    latest: dict = {}
    if not task_ids:
        return latest
    for run in (
        ExecutionRun.objects.filter(task_id__in=task_ids, role="code")
        .order_by("task_id", "-pk")
        .only("pk", "attempt", "task_id")
    ):
        latest.setdefault(run.task_id, run)
    return latest


@dataclass
class _Plan:
    """What the pre-pass chose for one project (re-checked under the locks by `_act`)."""

    project_id: int
    chosen: list[int]
    readiness: dict
    skipped: dict[str, int]
    ready: int | None = None


def _run_spec(project: Project, task: Task, mode: str, previous, budget_usd=None) -> dict:
    backend, model = project.agent_for("code")
    return {
        "project": project,
        "prompt": TASK_INSTRUCTION,
        "task": task,
        "role": "code",
        "agent_backend": backend,
        "model": model,
        "budget_usd": budget_usd if budget_usd is not None else project.default_run_budget_usd,
        "priority": task.priority,
        "retry_of": previous,
        "attempt": (previous.attempt + 1) if previous is not None else 1,
        "autonomy_mode": mode,
    }


def _create_runs(specs: list[dict], *, actor, enqueue: bool) -> list:
    """The runs of `specs` with one bulk INSERT; when the batch is refused (the DB guard found a run
    created meanwhile outside the tick's lock, or the queue filled up), one by one so the others still
    start. Returns, per spec, the run or the exception that refused it."""
    try:
        return runs_create_many(specs=specs, actor=actor, enqueue=enqueue)
    except (IntegrityError, CapacityExceeded):
        if len(specs) == 1:
            raise
    outcomes: list = []
    for spec in specs:
        try:
            outcomes.append(runs_create_many(specs=[spec], actor=actor, enqueue=enqueue)[0])
        except (IntegrityError, CapacityExceeded) as exc:
            outcomes.append(exc)
    return outcomes


def _act(
    plans: list[_Plan], *, reason: str, actor, enqueue: bool, mode_override: str | None, now
) -> dict[int, ProjectTick]:
    """Start (or propose) the chosen work of several projects in ONE transaction under the locks (the
    global tick lock, then the Project rows in pk order), re-checking everything the pre-pass decided:
    capacity is recounted (runs started for earlier projects of the batch count against the global
    limit and the queue) and the chosen tasks re-validated as runnable. A constant number of queries
    whatever the number of projects and runs: one bulk INSERT of the runs, one of their events."""
    plan_of = {plan.project_id: plan for plan in plans}
    with transaction.atomic():
        _global_lock()
        # FOR NO KEY UPDATE: excludes another tick's `_act` all the same, but not the foreign-key checks
        # (FOR KEY SHARE) of rows other transactions insert for these projects (events, runs, tasks).
        projects = locks.lock_projects(plan_of, no_key=True)
        modes = {p.pk: effective_mode(p, mode_override) for p in projects}
        capacity = ranking.capacities(projects, now=now)
        unknown = [p.pk for p in projects if plan_of[p.pk].ready is None]
        ready = ranking.ready_counts(unknown) if unknown else {}
        acting = [p for p in projects if wanted_slots(p, modes[p.pk], capacity[p.pk]) > 0]
        candidates: dict[int, list[Task]] = {}
        if acting:
            chosen = [pk for p in acting for pk in plan_of[p.pk].chosen]
            for task in (
                ranking.candidate_queryset(acting, modes=modes)
                .filter(pk__in=chosen)
                .select_related("plan_node")
                .order_by(*ranking.RANKING)
            ):
                candidates.setdefault(task.project_id, []).append(task)
        failures = ranking.last_failures([t.pk for tasks in candidates.values() for t in tasks if t.attempts])
        results: dict[int, ProjectTick] = {}
        starts: list[tuple[Project, str, Decision]] = []
        batch_runs = 0  # runs this batch starts: they count against the global limit and the queue
        for project in projects:
            plan, mode = plan_of[project.pk], modes[project.pk]
            result = ProjectTick(
                project_id=project.pk,
                mode=mode,
                paused=project.paused,
                readiness=plan.readiness,
                skipped=dict(plan.skipped or {}),
            )
            cap = capacity[project.pk]
            if batch_runs:
                cap = replace(
                    cap, global_open=cap.global_open + batch_runs, queue_size=cap.queue_size + batch_runs
                )
            result.capacity = cap.as_dict()
            result.ready = ready.get(project.pk, 0) if plan.ready is None else plan.ready
            results[project.pk] = result
            decisions = decide(
                project,
                mode=mode,
                capacity=cap,
                candidates=candidates.get(project.pk, []),
                failures=failures,
                now=now,
            )
            for decision in decisions:
                if decision.action == "skip":
                    result.skipped[decision.code] = result.skipped.get(decision.code, 0) + 1
                elif decision.action == "propose":
                    _propose(project, decision, result)
                else:
                    starts.append((project, mode, decision))
                    batch_runs += 1
        if starts:
            latest = _latest_runs([decision.task.pk for _, _, decision in starts])
            specs = [_run_spec(project, d.task, mode, latest.get(d.task.pk)) for project, mode, d in starts]
            for (project, _, decision), outcome in zip(
                starts, _create_runs(specs, actor=actor, enqueue=enqueue), strict=True
            ):
                result = results[project.pk]
                if isinstance(outcome, IntegrityError):
                    result.skipped[Code.ALREADY_RUNNING] = result.skipped.get(Code.ALREADY_RUNNING, 0) + 1
                elif isinstance(
                    outcome, CapacityExceeded
                ):  # the queue filled up meanwhile (e.g. manual runs)
                    result.skipped[Code.QUEUE_FULL] = result.skipped.get(Code.QUEUE_FULL, 0) + 1
                    result.note = outcome.message
                else:
                    result.started.append(
                        {"task": decision.task.pk, "run": outcome.pk, "reason": decision.reasons[0]}
                    )
            started_tasks = [
                item["task"] for r in results.values() if r.mode != AutonomyMode.SUGGEST for item in r.started
            ]
            if started_tasks:
                Proposal.objects.filter(task_id__in=started_tasks, status=Proposal.Status.PENDING).update(
                    status=Proposal.Status.EXPIRED, updated_at=now
                )
        for project in projects:
            result = results[project.pk]
            if not result.started and not result.proposed and not result.note:
                result.note = _idle_note(project, modes[project.pk], capacity[project.pk], result.ready)
        _finish_acted(projects, results, reason=reason, actor=actor, now=now)
    return results


def _propose(project: Project, decision: Decision, result: ProjectTick) -> None:
    task = decision.task
    backend, model = project.agent_for("code")
    try:
        with transaction.atomic():
            proposal = Proposal.objects.create(
                project=project,
                task=task,
                role="code",
                agent_backend=backend,
                model=model,
                score=float(task.priority * 1000 + task.learned_priority),
                reason=decision.reasons[0],
            )
    except IntegrityError:
        result.skipped[Code.ALREADY_PROPOSED] = result.skipped.get(Code.ALREADY_PROPOSED, 0) + 1
        return
    result.proposed.append({"task": task.pk, "proposal": proposal.pk, "reason": decision.reasons[0]})


def _act_isolated(
    plans: list[_Plan], *, reason: str, actor, enqueue: bool, mode_override: str | None, now
) -> dict[int, ProjectTick | str]:
    """`_act` over every plan at once; when that fails (it rolled back whole), project by project so
    one project's failure doesn't stop the others' tick. Failed projects map to an error note."""
    try:
        return _act(plans, reason=reason, actor=actor, enqueue=enqueue, mode_override=mode_override, now=now)
    except Exception:  # noqa: BLE001 - retried per project below
        if len(plans) == 1:
            logger.exception("tick of project %s failed", plans[0].project_id)
            exc_note = _error_note()
            return {plans[0].project_id: exc_note}
        logger.warning("batched tick failed; retrying project by project", exc_info=True)
    outcomes: dict[int, ProjectTick | str] = {}
    for plan in plans:
        try:
            outcomes.update(
                _act(
                    [plan], reason=reason, actor=actor, enqueue=enqueue, mode_override=mode_override, now=now
                )
            )
        except Exception:  # noqa: BLE001 - one project's failure must not stop the others' tick
            logger.exception("tick of project %s failed", plan.project_id)
            outcomes[plan.project_id] = _error_note()
    return outcomes


def _error_note() -> str:
    import sys

    exc = sys.exc_info()[1]
    return f"error: {type(exc).__name__}: {exc}"[:300]


def _idle_note(project: Project, mode: str, capacity: ranking.Capacity, ready: int) -> str:
    if mode == AutonomyMode.OFF:
        return "autonomy mode is off"
    if project.paused:
        return "project is paused"
    if not ready:
        return "no ready task"
    if mode == AutonomyMode.SUGGEST:
        return "capacity: pending proposals fill the project limit"
    if capacity.project_slots <= 0:
        return "capacity: project limit reached"
    if capacity.global_slots <= 0:
        return "capacity: global limit reached"
    if capacity.queue_room <= 0:
        return "queue full"
    return "budget: daily cap reached"


def _finish_acted(
    projects: list[Project], results: dict[int, ProjectTick], *, reason: str, actor, now
) -> None:
    """Store the acting projects' tick summaries (one UPDATE); log a decision event (one INSERT for all)
    for each that did something or whose reasons changed."""
    events = []
    for project in projects:
        result = results[project.pk]
        summary = result.summary()
        changed = (project.last_tick_summary or {}).get("summary") != summary
        project.last_tick_at = now
        project.last_tick_summary = {
            "summary": summary,
            "started": len(result.started),
            "proposed": len(result.proposed),
            "reason": reason,
        }
        if result.started or result.proposed or result.readiness or changed:
            events.append(
                {"kind": "tick.decision", "subject": project, "data": {"trigger": reason, **result.as_dict()}}
            )
    _store_summaries(projects, now=now)
    record_events(events, actor=actor)


def _store_summaries(projects: list[Project], *, now) -> None:
    """Write each project's last_tick_summary (and last_tick_at = now) with ONE executemany of a
    parameterized UPDATE: the values differ per project, and a bulk_update's CASE over 100 JSON values
    costs more to compile than the writes themselves."""
    if not projects:
        return
    meta = Project._meta
    at_field, summary_field = meta.get_field("last_tick_at"), meta.get_field("last_tick_summary")
    quote = connection.ops.quote_name
    # Identifiers come from the model (quoted); every value is a parameter.
    table, at_col, summary_col, pk_col = (
        quote(n) for n in (meta.db_table, at_field.column, summary_field.column, meta.pk.column)
    )
    sql = f"UPDATE {table} SET {at_col} = %s, {summary_col} = %s WHERE {pk_col} = %s"  # noqa: S608
    at = at_field.get_db_prep_save(now, connection)
    with connection.cursor() as cursor:
        cursor.executemany(
            sql,
            [(at, summary_field.get_db_prep_save(p.last_tick_summary, connection), p.pk) for p in projects],
        )


# --- Entry points ---------------------------------------------------------------------------------


def tick_all(
    *,
    reason: str,
    actor=None,
    project_ids: list[int] | None = None,
    enqueue: bool = True,
    mode_override: str | None = None,
    dry_run: bool = False,
) -> TickReport:
    """One tick over every project (or the given ones). Idempotent; safe to run concurrently.

    1. reconcile: reap expired leases, the merge queue step (`_merge_queue`: approved work of every
       project that is not paused is merged, enqueued or inline), repair tasks whose finish was
       missed, refresh readiness (all set-based);
    2. a pre-pass decides for every project at once (grouped capacity queries and one ranked window
       query for the candidates);
    3. only projects that can start something take the locks and act (re-checking under them).
    `dry_run` computes the decisions only: no writes, and to-do tasks whose dependencies are done
    count as ready."""
    started = time.perf_counter()
    now = timezone.now()
    report = TickReport(reason=reason)
    projects_qs = Project.objects.all() if project_ids is None else Project.objects.filter(pk__in=project_ids)
    if not dry_run:
        projects_qs.filter(tick_pending=True).update(tick_pending=False)
    projects = list(projects_qs.order_by("pk"))
    modes = {p.pk: effective_mode(p, mode_override) for p in projects}
    working = [p for p in projects if modes[p.pk] != AutonomyMode.OFF]

    readiness: dict = {}
    if not dry_run:
        report.reaped = _reap(now)
        report.merges = _merge_queue([p.pk for p in projects if not p.paused], enqueue=enqueue)
        if working:
            ids = [p.pk for p in working]
            report.recovered = _recover_orphans(ids)
            counts = refresh_readiness(ids, now=now)
            report.promoted, report.demoted = counts["promoted"], counts["demoted"]
            report.completed_milestones = counts["milestones"]
            readiness = counts["by_project"]

    active = [p for p in working if not p.paused]
    capacity = ranking.capacities(active, now=now)
    ready = ranking.ready_counts([p.pk for p in active])
    limits = {p.pk: wanted_slots(p, modes[p.pk], capacity[p.pk]) for p in active}
    # A few extra candidates per project: some may be waiting out a retry backoff.
    candidates = ranking.ranked_candidates(
        active, modes=modes, limits={pid: n + 5 for pid, n in limits.items() if n > 0}, include_todo=dry_run
    )
    failures = ranking.last_failures([t.pk for tasks in candidates.values() for t in tasks if t.attempts])
    quiet: list[tuple[Project, ProjectTick]] = []
    plans: list[_Plan] = []
    for project in projects:
        mode = modes[project.pk]
        cap = capacity.get(project.pk)
        changes = _readiness_summary(readiness.get(project.pk))
        result = ProjectTick(
            project_id=project.pk,
            mode=mode,
            paused=project.paused,
            ready=ready.get(project.pk, 0),
            readiness=changes,
        )
        report.projects[project.pk] = result
        decisions = []
        if cap is not None and candidates.get(project.pk):
            decisions = decide(
                project,
                mode=mode,
                capacity=cap,
                candidates=candidates[project.pk],
                failures=failures,
                now=now,
            )
        chosen = [d.task.pk for d in decisions if d.action != "skip"]
        for d in decisions:
            if d.action == "skip":
                result.skipped[d.code] = result.skipped.get(d.code, 0) + 1
        if chosen and not dry_run:
            plans.append(
                _Plan(
                    project_id=project.pk,
                    chosen=chosen,
                    readiness=changes,
                    skipped=result.skipped,
                    ready=result.ready,
                )
            )
            continue
        for d in decisions:
            if d.action == "start":
                result.started.append({"task": d.task.pk, "run": None, "reason": d.reasons[0]})
            elif d.action == "propose":
                result.proposed.append({"task": d.task.pk, "proposal": None, "reason": d.reasons[0]})
        if not chosen:
            result.note = (
                _idle_note(project, mode, cap, result.ready)
                if cap is not None
                else ("autonomy mode is off" if mode == AutonomyMode.OFF else "project is paused")
            )
        quiet.append((project, result))
    if plans:
        by_pk = {p.pk: p for p in projects}
        outcomes = _act_isolated(
            plans, reason=reason, actor=actor, enqueue=enqueue, mode_override=mode_override, now=now
        )
        for plan in plans:
            outcome = outcomes.get(plan.project_id)
            if isinstance(outcome, ProjectTick):
                report.projects[plan.project_id] = outcome
            elif outcome is not None:  # the project failed: its summary is stored like a quiet one's
                result = report.projects[plan.project_id]
                result.note = outcome
                quiet.append((by_pk[plan.project_id], result))
    if not dry_run:
        _finish_quiet(quiet, reason=reason, actor=actor, now=now)
    report.elapsed_s = time.perf_counter() - started
    return report


def _finish_quiet(items: list[tuple[Project, ProjectTick]], *, reason: str, actor, now) -> None:
    """Summaries of projects that start nothing: one UPDATE stamps last_tick_at on all of them; the
    summary (and a decision event) is written only where the reasons changed."""
    if not items:
        return
    changed = []
    for project, result in items:
        summary = result.summary()
        stored = project.last_tick_summary or {}
        if (
            result.readiness
            or stored.get("summary") != summary
            or stored.get("started")
            or stored.get("proposed")
        ):
            project.last_tick_summary = {"summary": summary, "started": 0, "proposed": 0, "reason": reason}
            changed.append((project, result))
    with transaction.atomic():
        # The tick lock first, as `_act` takes it: both write Project rows (and events that lock them
        # FOR KEY SHARE), so without a common first lock two ticks could wait on each other.
        _global_lock()
        changed_ids = {p.pk for p, _ in changed}
        unchanged = [p.pk for p, _ in items if p.pk not in changed_ids]
        if unchanged:
            Project.objects.filter(pk__in=unchanged).update(last_tick_at=now)
        _store_summaries([p for p, _ in changed], now=now)
        record_events(
            [
                {"kind": "tick.decision", "subject": project, "data": {"trigger": reason, **result.as_dict()}}
                for project, result in changed
            ],
            actor=actor,
        )


def tick_project(
    project: Project,
    *,
    reason: str,
    actor=None,
    enqueue: bool = True,
    mode_override: str | None = None,
    dry_run: bool = False,
) -> TickReport:
    """One tick of one project (the same code path as tick_all)."""
    return tick_all(
        reason=reason,
        actor=actor,
        project_ids=[project.pk],
        enqueue=enqueue,
        mode_override=mode_override,
        dry_run=dry_run,
    )
