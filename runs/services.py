"""Writes for runs: create, stop, retry, resume, approve/reject, advance, message, rollback, reap.

Every function is keyword-only, validates first and writes inside one transaction; status changes go
through autopilot.state.transition; enqueueing and the lifecycle seams (runs.lifecycle) happen on commit.
"""

from __future__ import annotations

import json
import logging
import socket
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from autopilot import queues
from autopilot.errors import ApplicationError, CapacityExceeded, Conflict
from autopilot.events import record_event, record_events
from autopilot.input_limits import (
    MAX_MESSAGE_CHARS,
    MAX_PROMPT_CHARS,
    MAX_RUN_TURNS,
    MAX_RUN_WALL_SECONDS,
    MAX_SETTINGS_CHARS,
    check_length,
)
from autopilot.state import transition
from runs import lifecycle, locks, workspace
from runs.backends import backend_label, backend_status
from runs.backends.scripted import validate_script
from runs.context import pid_alive
from runs.guard import kill_group
from runs.leases import is_local, parse_lease_owner
from runs.models import AgentBackend, ExecutionRun, ExecutionStep, RunMessage, RunRole
from runs.redaction import Redactor

logger = logging.getLogger(__name__)
Status = ExecutionRun.Status
StepStatus = ExecutionStep.Status

DEFAULT_MAX_TURNS = 50
DEFAULT_MAX_WALL_SECONDS = 3600


def _who(actor) -> str:
    if actor is not None and getattr(actor, "is_authenticated", False):
        return actor.get_username()
    return "the system"


def _actor(actor):
    return actor if actor is not None and getattr(actor, "is_authenticated", False) else None


def _decimal(value: Any, name: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ApplicationError(f"{name} must be a number, got '{value}'.") from exc
    if not number.is_finite() or number < 0:
        raise ApplicationError(f"{name} must be zero or more, got '{value}'.")
    return number


def _positive_int(value: Any, name: str, maximum: int | None = None) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ApplicationError(f"{name} must be a whole number, got '{value}'.") from exc
    if number < 1:
        raise ApplicationError(f"{name} must be at least 1, got {number}.")
    if maximum is not None and number > maximum:
        raise ApplicationError(f"{name} must be at most {maximum:,}, got {number}.")
    return number


def _check_run_settings(options: dict[str, Any], *, agent: str, prompt: str) -> None:
    """Refuse run settings a worker would trip over later (with a traceback in the run's error)."""
    try:
        size = len(json.dumps(options))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ApplicationError("settings must be plain JSON data (objects, lists, text, numbers).") from exc
    if size > MAX_SETTINGS_CHARS:
        raise ApplicationError(
            f"settings are at most {MAX_SETTINGS_CHARS:,} characters as JSON (got {size:,})."
        )
    for key in ("stuck_repeat", "stuck_idle_turns"):
        if options.get(key) is not None:
            value = options[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RUN_TURNS:
                raise ApplicationError(f"settings.{key} must be a whole number from 1 to {MAX_RUN_TURNS:,}.")
    if "step_through" in options and not isinstance(options["step_through"], bool):
        raise ApplicationError("settings.step_through must be true or false.")
    scope = options.get("write_scope")
    if scope is not None and not (isinstance(scope, list) and all(isinstance(p, str) for p in scope)):
        raise ApplicationError("settings.write_scope must be a list of path patterns (text).")
    script = options.get("script")
    if script is None and agent == AgentBackend.SCRIPTED and prompt.startswith("["):
        # The scripted backend takes a prompt that is a JSON list as its script: check it now too.
        try:
            script = json.loads(prompt)
        except (ValueError, RecursionError):
            script = None  # not JSON: the backend says so when it runs
        where = "prompt (a scripted run's JSON script)"
    else:
        where = "settings.script"
    if script is not None or "script" in options:
        try:
            validate_script(script)
        except ValueError as exc:
            raise ApplicationError(f"{where}: {exc}.") from exc


def _check_from_ref(project, value: Any, *, task, resumed: bool) -> None:
    """A run's `from_ref` (where a run without a task starts): an existing local branch, by name."""
    if not isinstance(value, str):
        raise ApplicationError("from_ref must be the name of a local branch (text).")
    if task is not None:
        raise ApplicationError(
            "from_ref is only for runs without a task: a task's run starts from the integration branch."
        )
    if resumed:
        raise ApplicationError("from_ref cannot be given when resuming a run: it continues its own branch.")
    try:
        workspace.resolve_from_ref(project, value)
    except workspace.WorkspaceError as exc:
        raise ApplicationError(f"from_ref: {exc}") from exc


def enqueue_run(run_id: int) -> None:
    """Hand a run to the runs cluster (call on commit). The task claims the row; duplicates do nothing."""
    from django_q.tasks import async_task

    async_task("runs.tasks.execute_run", run_id, task_name=f"run-{run_id}", group="runs", cluster=queues.RUNS)


# --- Create, retry, resume ------------------------------------------------------------------------


def _build_run(
    *,
    project,
    prompt: str,
    task=None,
    role: str = "code",
    agent_backend: str | None = None,
    model: str | None = None,
    budget_usd: Decimal | float | str | None = None,
    max_turns: int | None = None,
    max_wall_seconds: int | None = None,
    priority: int = 2,
    actor=None,
    run_settings: dict[str, Any] | None = None,
    retry_of: ExecutionRun | None = None,
    resumed_from: ExecutionRun | None = None,
    attempt: int = 1,
    autonomy_mode: str | None = None,
) -> ExecutionRun:
    """Validate a run's inputs and apply the defaults: an unsaved ExecutionRun (prompt not yet redacted)."""
    prompt = (prompt or "").strip()
    check_length(prompt, "prompt", MAX_PROMPT_CHARS)
    if task is not None:
        if task.project_id != project.pk:
            raise ApplicationError(f"Task #{task.pk} belongs to another project.")
        prompt = prompt or task.title
    if not prompt:
        raise ApplicationError("A run needs a prompt (or a task).")
    if role not in RunRole.values:
        raise ApplicationError(f"Unknown role '{role}'; choose from {', '.join(RunRole.values)}.")
    default_agent, default_model = project.agent_for(role)
    agent = agent_backend or default_agent
    if agent not in AgentBackend.values:
        raise ApplicationError(
            f"Unknown agent backend '{agent}'; choose from {', '.join(AgentBackend.values)}."
        )
    if agent == AgentBackend.SCRIPTED:
        model = model or "scripted"
    elif model is None or model == "":
        model = default_model if not agent_backend or agent == default_agent else ""
    if agent == AgentBackend.TEST_WORKER:
        model = ""
    budget = _decimal(project.default_run_budget_usd if budget_usd is None else budget_usd, "budget_usd")
    turns = _positive_int(
        max_turns
        if max_turns is not None
        else getattr(settings, "AUTOPILOT_DEFAULT_MAX_TURNS", DEFAULT_MAX_TURNS),
        "max_turns",
        MAX_RUN_TURNS,
    )
    wall = _positive_int(
        max_wall_seconds
        if max_wall_seconds is not None
        else getattr(settings, "AUTOPILOT_DEFAULT_MAX_WALL_SECONDS", DEFAULT_MAX_WALL_SECONDS),
        "max_wall_seconds",
        MAX_RUN_WALL_SECONDS,
    )
    try:
        priority = int(priority)
    except (TypeError, ValueError) as exc:
        raise ApplicationError(f"priority must be a whole number 0–5, got '{priority}'.") from exc
    if not 0 <= priority <= 5:
        raise ApplicationError(f"priority must be 0–5, got {priority}.")
    if not isinstance(run_settings or {}, dict):
        raise ApplicationError("settings must be an object.")
    options = dict(run_settings or {})
    _check_run_settings(options, agent=agent, prompt=prompt)
    if options.get("from_ref") not in (None, ""):
        _check_from_ref(project, options["from_ref"], task=task, resumed=resumed_from is not None)
    else:
        options.pop("from_ref", None)
    return ExecutionRun(
        project=project,
        task=task,
        role=role,
        agent_backend=agent,
        model=model or "",
        prompt=prompt,
        autonomy_mode=autonomy_mode or project.autonomy_mode,
        priority=priority,
        settings=options,
        budget_usd=budget,
        max_turns=turns,
        max_wall_seconds=wall,
        attempt=attempt,
        retry_of=retry_of,
        resumed_from=resumed_from,
        created_by=_actor(actor),
    )


def _redact_run(run: ExecutionRun, redactor: Redactor) -> None:
    """Redact what a new run stores from its caller: the prompt and the settings (the scripted backend
    then follows the redacted script). Call it before opening the write transaction."""
    run.prompt = redactor(run.prompt)
    run.settings = redactor.data(run.settings or {})


def _created_event_data(run: ExecutionRun) -> dict:
    return {
        "task": run.task_id,
        "agent": run.agent_backend,
        "model": run.model,
        "role": run.role,
        "attempt": run.attempt,
        "retry_of": run.retry_of_id,
        "resumed_from": run.resumed_from_id,
    }


def _check_queue_room(adding: int) -> None:
    queued = ExecutionRun.objects.filter(status=Status.QUEUED).count()
    if queued + adding > settings.AUTOPILOT_QUEUE_MAX:
        if adding == 1:
            raise CapacityExceeded(f"The run queue is full ({queued} queued runs); try again later.")
        raise CapacityExceeded(
            f"The run queue has room for {max(0, settings.AUTOPILOT_QUEUE_MAX - queued)} more runs "
            f"({queued} queued), not {adding}; try again later."
        )


def run_create(
    *,
    project,
    prompt: str,
    task=None,
    role: str = "code",
    agent_backend: str | None = None,
    model: str | None = None,
    budget_usd: Decimal | float | str | None = None,
    max_turns: int | None = None,
    max_wall_seconds: int | None = None,
    priority: int = 2,
    actor=None,
    enqueue: bool = True,
    run_settings: dict[str, Any] | None = None,
    retry_of: ExecutionRun | None = None,
    resumed_from: ExecutionRun | None = None,
    attempt: int = 1,
    from_ref: str | None = None,
) -> ExecutionRun:
    """Queue a run. Defaults come from project.agent_for(role) and project.default_run_budget_usd.

    `from_ref`: a run without a task starts from this existing local branch instead of the base branch
    (stored in the run's settings; a task's run always starts from the integration branch).

    `run_settings` is the run's backend settings (e.g. {"script": [...]} for scripted; "step_through",
    "write_scope", "stuck_repeat", "stuck_idle_turns"). With enqueue=False the caller executes it
    (e.g. `autopilot run` in the foreground calls runs.worker.execute_run itself). Many runs at once
    (the manager's tick): `runs_create_many`.
    Validation and redaction happen before the write transaction opens (redaction reads the project's
    .env files and scans the whole prompt: never while holding the database's write lock).
    """
    if from_ref not in (None, ""):
        run_settings = {**(run_settings or {}), "from_ref": from_ref}
    run = _build_run(
        project=project,
        prompt=prompt,
        task=task,
        role=role,
        agent_backend=agent_backend,
        model=model,
        budget_usd=budget_usd,
        max_turns=max_turns,
        max_wall_seconds=max_wall_seconds,
        priority=priority,
        actor=actor,
        run_settings=run_settings,
        retry_of=retry_of,
        resumed_from=resumed_from,
        attempt=attempt,
    )
    ready, missing = backend_status(run.agent_backend, run.model)
    if not ready:  # refuse now, not fail later with the agent's own words ("Not logged in")
        raise ApplicationError(f"{backend_label(run.agent_backend)} cannot run here: {missing}.")
    _redact_run(run, Redactor.for_project(project))
    with transaction.atomic():
        _check_queue_room(1)
        run.queued_at = timezone.now()
        try:
            with transaction.atomic():  # a savepoint: the caller's transaction stays usable
                run.save(force_insert=True)
        except IntegrityError as exc:
            open_statuses = {Status.QUEUED, *ExecutionRun.ACTIVE}
            if (
                task is None
                or not ExecutionRun.objects.filter(
                    task=task, role=RunRole.CODE, status__in=open_statuses
                ).exists()
            ):
                raise
            raise Conflict(
                f"Task #{task.pk} already has a queued or active code run; stop it or wait for it."
            ) from exc
        record_event(kind="executionrun.created", subject=run, actor=actor, data=_created_event_data(run))
        if enqueue:
            run_id = run.pk
            transaction.on_commit(lambda: enqueue_run(run_id))
    return run


def runs_create_many(*, specs: list[dict[str, Any]], actor=None, enqueue: bool = True) -> list[ExecutionRun]:
    """Queue many runs at once, all or nothing (the manager's tick): the same validation, defaults and
    redaction as `run_create` for each spec (a dict of run_create's keyword arguments, plus an optional
    `autonomy_mode`), ONE queue-size check for the batch (CapacityExceeded when the batch doesn't fit),
    ONE INSERT of the runs, ONE INSERT of their `executionrun.created` events; pushes and worker
    enqueues happen on commit. The DB guard (one open code run per task) refuses the whole batch with
    IntegrityError; the INSERT runs in a savepoint, so the caller's transaction stays usable."""
    if not specs:
        return []
    runs = [_build_run(actor=actor, **spec) for spec in specs]
    redactors: dict[int, Redactor] = {}
    now = timezone.now()
    for run in runs:
        project = run.project
        if project.pk not in redactors:
            redactors[project.pk] = Redactor.for_project(project)
        _redact_run(run, redactors[project.pk])
        run.queued_at = now
    with transaction.atomic():
        _check_queue_room(len(runs))
        ExecutionRun.objects.bulk_create(runs)
        record_events(
            [
                {
                    "kind": "executionrun.created",
                    "subject": run,
                    "project": run.project_id,
                    "data": _created_event_data(run),
                }
                for run in runs
            ],
            actor=actor,
        )
    if enqueue:
        ids = [run.pk for run in runs]
        transaction.on_commit(lambda: [enqueue_run(run_id) for run_id in ids])
    return runs


def run_retry(*, run: ExecutionRun, actor=None, enqueue: bool = True) -> ExecutionRun:
    """A new attempt of a finished run (same project, task, prompt, backend, limits)."""
    run.refresh_from_db()
    if not run.is_terminal:
        raise Conflict(f"Run #{run.pk} is still {run.status}; stop it before retrying.")
    return run_create(
        project=run.project,
        prompt=run.prompt,
        task=run.task,
        role=run.role,
        agent_backend=run.agent_backend,
        model=run.model,
        budget_usd=run.budget_usd,
        max_turns=run.max_turns,
        max_wall_seconds=run.max_wall_seconds,
        priority=run.priority,
        actor=actor,
        enqueue=enqueue,
        run_settings=run.settings,
        retry_of=run,
        attempt=run.attempt + 1,
    )


def run_resume(
    *,
    run: ExecutionRun,
    prompt: str,
    actor=None,
    enqueue: bool = True,
    run_settings: dict | None = None,
    budget_usd: Decimal | float | str | None = None,
) -> ExecutionRun:
    """Continue a finished or interrupted run: a new run with the backend session id and a new prompt,
    in the same worktree and branch when they still exist (budget: the original's unless given)."""
    run.refresh_from_db()
    if not run.is_terminal:
        raise Conflict(f"Run #{run.pk} is still {run.status}; send it a message instead, or stop it first.")
    if not (prompt or "").strip():
        raise ApplicationError("Resuming needs a prompt (what the agent should do next).")
    inherited = {k: v for k, v in (run.settings or {}).items() if k not in ("script", "from_ref")}
    inherited.update(run_settings or {})
    return run_create(
        project=run.project,
        prompt=prompt,
        task=run.task,
        role=run.role,
        agent_backend=run.agent_backend,
        model=run.model,
        budget_usd=run.budget_usd if budget_usd is None else budget_usd,
        max_turns=run.max_turns,
        max_wall_seconds=run.max_wall_seconds,
        priority=run.priority,
        actor=actor,
        enqueue=enqueue,
        run_settings=inherited,
        resumed_from=run,
        attempt=run.attempt,
    )


# --- Stop -----------------------------------------------------------------------------------------


def _local_pid_alive(owner: str, pid: int | None) -> bool:
    host, owner_pid = parse_lease_owner(owner)
    return host == socket.gethostname() and pid_alive(owner_pid or pid)


def _kill_children(run: ExecutionRun) -> list[int]:
    host, _ = parse_lease_owner(run.lease_owner)
    if host and host != socket.gethostname():
        return []
    return [pid for pid in (run.child_pids or []) if isinstance(pid, int) and kill_group(pid)]


def _finish_fields(reason: str) -> dict:
    return {
        "status_reason": reason,
        "ended_at": timezone.now(),
        "lease_owner": "",
        "lease_expires_at": None,
        "child_pids": [],
    }


def run_stop(*, run: ExecutionRun, actor=None, reason: str = "", force: bool = False) -> ExecutionRun:
    """Ask a run to stop. Queued → cancelled at once. Running → the worker notices within about a
    second, interrupts the agent and ends the run cancelled; with force it also kills the agent's
    process groups after a grace period. A forced stop of a run whose worker is gone (lease expired
    or its process dead) cancels it here and now."""
    who = _who(actor)
    reason = Redactor.for_project(run.project)(reason or "")
    text = f"stopped by {who}" + (f": {reason}" if reason else "")
    finished = False
    with transaction.atomic():
        locked = locks.lock_run(run.pk)
        if locked.is_terminal:
            raise Conflict(f"Run #{locked.pk} already ended ({locked.status}).")
        if locked.status == Status.QUEUED:
            transition(
                locked,
                Status.CANCELLED,
                actor=actor,
                reason=f"cancelled by {who} before it started",
                fields=_finish_fields(
                    f"cancelled by {who} before it started" + (f": {reason}" if reason else "")
                ),
            )
            finished = True
        else:
            now = timezone.now()
            changes = {"stop_force": locked.stop_force or force}
            if locked.stop_requested_at is None:
                changes.update(stop_requested_at=now, status_reason=text)
            ExecutionRun.objects.filter(pk=locked.pk).update(**changes)
            record_event(
                kind="executionrun.stop_requested",
                subject=locked,
                actor=actor,
                data={"force": force, "reason": reason},
            )
            worker_gone = (
                locked.lease_expires_at is None
                or locked.lease_expires_at < now
                or not _local_pid_alive(locked.lease_owner, locked.pid)
                and is_local(locked.lease_owner)
            )
            if force and worker_gone:
                _kill_children(locked)
                transition(
                    locked,
                    Status.CANCELLED,
                    actor=actor,
                    reason=text,
                    fields=_finish_fields(text + " (forced)"),
                )
                finished = True
        if finished:
            lifecycle.publish_run_finished(locked.pk)
    run.refresh_from_db()
    return run


# --- Approvals, advance, messages -----------------------------------------------------------------


def _decide(*, step: ExecutionStep, actor, approve: bool, text: str) -> ExecutionStep:
    who = _who(actor)
    project = ExecutionStep.objects.select_related("run__project").get(pk=step.pk).run.project
    note = Redactor.for_project(project)(text or "")
    with transaction.atomic():
        run, locked = locks.lock_step(step.pk)  # the run first, then the step: the lock order
        if locked.status != StepStatus.NEEDS_APPROVAL:
            raise Conflict(
                f"Step {locked.seq} of run #{locked.run_id} is {locked.status}, not waiting for approval."
            )
        fields = {"decided_by": _actor(actor), "decision_note": note, "decided_at": timezone.now()}
        if approve:
            transition(
                locked,
                StepStatus.RUNNING,
                actor=actor,
                reason=f"approved by {who}",
                fields=fields,
                event_data={"run": locked.run_id},
            )
        else:
            fields.update(output=f"Rejected by {who}: {note}", ended_at=timezone.now())
            transition(
                locked,
                StepStatus.SKIPPED,
                actor=actor,
                reason=f"rejected by {who}",
                fields=fields,
                event_data={"run": locked.run_id},
            )
        record_event(
            kind="executionstep.approved" if approve else "executionstep.rejected",
            subject=run,
            actor=actor,
            data={"step": locked.pk, "seq": locked.seq, "by": who, "note": note},
        )
        waiting = ExecutionStep.objects.filter(run_id=run.pk, status=StepStatus.NEEDS_APPROVAL).exists()
        if run.status == Status.WAITING_APPROVAL and not waiting:
            transition(
                run,
                Status.RUNNING,
                actor=actor,
                reason=f"{'approved' if approve else 'rejected'} by {who}",
                fields={"status_reason": ""},
            )
    return locked


def _step_of(run: ExecutionRun, seq: int | None, status: str) -> ExecutionStep:
    steps = ExecutionStep.objects.filter(run=run)
    if seq is not None:
        step = steps.filter(seq=seq).first()
        if step is None:
            raise ApplicationError(f"Run #{run.pk} has no step {seq}.")
        return step
    step = steps.filter(status=status).order_by("seq").first()
    if step is None:
        raise Conflict(f"Run #{run.pk} has no step {status.replace('_', ' ')}.")
    return step


def run_approve(
    *,
    step: ExecutionStep | None = None,
    run: ExecutionRun | None = None,
    seq: int | None = None,
    actor=None,
    note: str = "",
) -> ExecutionStep:
    """Approve a step waiting for approval (by step, or by run + seq / the run's oldest waiting step)."""
    step = step or _step_of(run, seq, StepStatus.NEEDS_APPROVAL)
    return _decide(step=step, actor=actor, approve=True, text=note)


def run_reject(
    *,
    step: ExecutionStep | None = None,
    run: ExecutionRun | None = None,
    seq: int | None = None,
    actor=None,
    message: str = "",
) -> ExecutionStep:
    """Reject a step; `message` goes back to the agent as the tool's result."""
    if not (message or "").strip():
        raise ApplicationError("A rejection needs a message for the agent (what to do instead).")
    step = step or _step_of(run, seq, StepStatus.NEEDS_APPROVAL)
    return _decide(step=step, actor=actor, approve=False, text=message.strip())


def run_advance(*, run: ExecutionRun, actor=None) -> ExecutionStep:
    """Step-through mode (settings.step_through): release the run's next pending step.

    The backend creates each step as `pending` and waits; advancing moves the oldest pending step to
    `running`, the agent performs it and prepares the next one. A step waiting for approval must be
    approved or rejected instead.
    """
    with transaction.atomic():
        locked = locks.lock_run(run.pk)
        if locked.is_terminal:
            raise Conflict(f"Run #{locked.pk} already ended ({locked.status}).")
        if ExecutionStep.objects.filter(run=locked, status=StepStatus.NEEDS_APPROVAL).exists():
            raise Conflict(
                f"Run #{locked.pk} is waiting for an approval; approve or reject the step instead."
            )
        step = locks.lock_first_step(locked, status=StepStatus.PENDING)
        if step is None:
            hint = "" if (locked.settings or {}).get("step_through") else " (it does not run step by step)"
            raise Conflict(f"Run #{locked.pk} has no pending step to advance{hint}.")
        transition(
            step,
            StepStatus.RUNNING,
            actor=actor,
            reason=f"advanced by {_who(actor)}",
            event_data={"run": locked.pk},
        )
        record_event(
            kind="executionrun.advanced", subject=locked, actor=actor, data={"step": step.pk, "seq": step.seq}
        )
    return step


def run_message(*, run: ExecutionRun, body: str, actor=None) -> RunMessage:
    """A human's message; delivered to a running agent between turns without stopping it. The body is
    redacted before the write transaction opens (a long message never holds the write lock)."""
    body = (body or "").strip()
    if not body:
        raise ApplicationError("A message needs a body.")
    check_length(body, "body", MAX_MESSAGE_CHARS)
    current = ExecutionRun.objects.select_related("project").get(pk=run.pk)
    body = Redactor.for_project(current.project, current.worktree_path or None)(body)
    with transaction.atomic():
        locked = locks.lock_run(run.pk)
        message = RunMessage.objects.create(
            run=locked,
            author=_actor(actor),
            body=body,
            delivered_at=timezone.now() if locked.is_terminal else None,
        )
        record_event(
            kind="executionrun.message",
            subject=locked,
            actor=actor,
            data={
                "message": message.pk,
                "body": message.body[:500],
                "delivered": message.delivered_at is not None,
            },
        )
    return message


# --- Rollback -------------------------------------------------------------------------------------


def run_rollback(*, run: ExecutionRun, actor=None) -> dict:
    """Put the run's worktree and branch back to its base commit, verified byte for byte."""
    with transaction.atomic():
        locked = locks.lock_run(run.pk, related=("project",))
        if not locked.is_terminal:
            raise Conflict(f"Run #{locked.pk} is {locked.status}; stop it before rolling it back.")
        if not locked.base_commit or not locked.branch:
            raise ApplicationError(f"Run #{locked.pk} never got a workspace; nothing to roll back.")
        previous = locked.head_commit
        path = Path(locked.worktree_path) if locked.worktree_path else None
        if path is not None and workspace.is_worktree(path):
            differences = workspace.rollback_worktree(path, locked.base_commit)
            if differences:
                raise ApplicationError(
                    f"Rollback of run #{locked.pk} could not be verified; "
                    "these files differ from the base commit: " + ", ".join(differences[:20])
                )
        else:
            workspace.git(locked.project.repo_path, "branch", "-f", locked.branch, locked.base_commit)
        ExecutionStep.objects.filter(
            run=locked,
            status=StepStatus.COMPLETED,
            kind__in=[ExecutionStep.Kind.WRITE_FILE, ExecutionStep.Kind.EDIT_FILE],
        ).update(status=StepStatus.ROLLED_BACK)
        ExecutionRun.objects.filter(pk=locked.pk).update(
            head_commit=locked.base_commit, diff_summary={"files": [], "added": 0, "removed": 0}
        )
        record_event(
            kind="executionrun.rolled_back",
            subject=locked,
            actor=actor,
            data={"base_commit": locked.base_commit, "previous_head": previous, "verified": True},
        )
    run.refresh_from_db()
    return {"run": run.pk, "base_commit": run.base_commit, "previous_head": previous, "verified": True}


def step_rollback(*, step: ExecutionStep, actor=None) -> dict:
    """Restore the file a native/scripted step changed to its previous bytes (or remove it if it did not
    exist), verify, and commit the restore on the run's branch."""
    with transaction.atomic():
        run, locked = locks.lock_step(step.pk, related=("project",))
        if not run.is_terminal:
            raise Conflict(f"Run #{run.pk} is {run.status}; stop it before rolling back one of its steps.")
        data = locked.rollback or {}
        if locked.status != StepStatus.COMPLETED or not data.get("path"):
            raise Conflict(
                f"Step {locked.seq} of run #{run.pk} has nothing to roll back "
                f"({locked.status}, {locked.kind})."
            )
        if not run.worktree_path or not workspace.is_worktree(run.worktree_path):
            raise ApplicationError(f"Run #{run.pk}'s worktree was removed; roll back the whole run instead.")
        later = (
            ExecutionStep.objects.filter(
                run=run, seq__gt=locked.seq, status=StepStatus.COMPLETED, rollback__path=data["path"]
            )
            .order_by("-seq")
            .values_list("seq", flat=True)
            .first()
        )
        if later is not None:
            raise Conflict(f"Step {later} changed {data['path']} later; roll that step back first.")
        root = Path(run.worktree_path).resolve()
        target = (root / data["path"]).resolve()
        if not target.is_relative_to(root):
            raise ApplicationError("The step's rollback path is outside the worktree.")
        ok = workspace.restore_snapshot(target, data)
        if not ok:
            raise ApplicationError(f"Could not verify the restored bytes of {data['path']}.")
        head = (
            workspace.commit_all(root, f"autopilot: roll back step {locked.seq} of run #{run.pk}")
            or run.head_commit
        )
        summary = workspace.diff_summary(root, run.base_commit, head)
        transition(
            locked,
            StepStatus.ROLLED_BACK,
            actor=actor,
            reason=f"rolled back by {_who(actor)}",
            event_data={"run": run.pk},
        )
        ExecutionRun.objects.filter(pk=run.pk).update(head_commit=head, diff_summary=summary)
        record_event(
            kind="executionstep.rolled_back",
            subject=run,
            actor=actor,
            data={"step": locked.pk, "seq": locked.seq, "path": data["path"], "verified": True},
        )
    return {"step": locked.pk, "path": data["path"], "verified": True, "head_commit": head}


# --- Leases and retention -------------------------------------------------------------------------


def reap_expired_leases(now=None) -> list[int]:
    """Fail active runs whose lease expired (worker killed, machine lost); kill leftover agent processes
    when they are on this machine. The manager decides whether to retry."""
    now = now or timezone.now()
    reaped = []
    candidates = list(
        ExecutionRun.objects.filter(
            status__in=list(ExecutionRun.ACTIVE), lease_expires_at__lt=now
        ).values_list("pk", flat=True)
    )
    for run_id in candidates:
        with transaction.atomic():
            locked = locks.lock_run_if_exists(run_id)
            if locked is None or locked.status not in ExecutionRun.ACTIVE:
                continue
            if locked.lease_expires_at is None or locked.lease_expires_at >= now:
                continue
            killed = _kill_children(locked)
            reason = "worker lost: lease expired"
            transition(
                locked,
                Status.FAILED,
                reason=reason,
                fields=_finish_fields(reason),
                event_data={"lease_owner": locked.lease_owner, "killed": killed},
            )
            lifecycle.publish_run_finished(run_id)
        reaped.append(run_id)
    return reaped


def _run_messages(now) -> tuple[set[int], dict[int, list]]:
    """The runs queue's stored messages by run: (runs with a message on its way — waiting, or fetched
    less than a lease period ago —, {run: ids of stranded messages fetched longer ago than that})."""
    lease = timedelta(seconds=int(settings.AUTOPILOT_LEASE_SECONDS))
    live: set[int] = set()
    stranded: dict[int, list] = {}
    for message in queues.pending(queues.RUNS):
        if not message.name.startswith("run-") or not message.name[4:].isdigit():
            continue
        run_id = int(message.name[4:])
        if message.fetched_at is None or message.fetched_at > now - lease:
            live.add(run_id)
        else:
            stranded.setdefault(run_id, []).append(message.ack_id)
    return live, stranded


def enqueue_next_runs(*, now=None, min_age_seconds: float | None = None) -> list[int]:
    """Give the best queued runs that fit in the free slots of AUTOPILOT_MAX_CONCURRENT_RUNS a message
    in the runs queue, unless one is on its way. Called when a run ends (a slot freed) and by the
    reconciler (`min_age_seconds`: only runs queued that long, at most once per lease period each), which
    also drops the messages a dead cluster fetched and never claimed (the ORM broker would hand them
    out again only after Q_CLUSTER["retry"], hours later). Runs waiting for capacity get no message:
    nothing piles up in the queue. Idempotent: a duplicate delivery is refused by the claim."""
    now = now or timezone.now()
    active = ExecutionRun.objects.filter(status__in=list(ExecutionRun.ACTIVE)).count()
    free = int(settings.AUTOPILOT_MAX_CONCURRENT_RUNS) - active
    if free <= 0:
        return []
    queued = ExecutionRun.objects.filter(status=Status.QUEUED, lease_owner="")
    if min_age_seconds is not None:
        queued = queued.filter(queued_at__lte=now - timedelta(seconds=min_age_seconds))
    best = list(queued.order_by("-priority", "queued_at", "pk").values_list("pk", "project_id")[:free])
    if not best:
        return []
    live, stranded = _run_messages(now)
    lease = int(settings.AUTOPILOT_LEASE_SECONDS)
    enqueued = []
    for run_id, project_id in best:
        if run_id in live:
            continue
        if min_age_seconds is not None and not cache.add(
            f"autopilot:run-requeued:{run_id}", 1, timeout=lease
        ):
            continue  # requeued less than a lease period ago (its message may be in a live cluster's hands)
        dropped = queues.drop(queues.RUNS, stranded.get(run_id, []))
        enqueue_run(run_id)
        enqueued.append(run_id)
        if min_age_seconds is not None:
            record_event(
                kind="executionrun.requeued",
                subject=ExecutionRun(pk=run_id, project_id=project_id),
                data={"stranded_messages_dropped": dropped, "reason": "queued run had no live message"},
            )
    return enqueued


def reconcile_runs(*, now=None) -> dict:
    """One pass of the reconciler: fail runs whose lease expired, then re-enqueue queued runs whose
    message is lost or stranded (queued for more than a lease period, within the global cap)."""
    now = now or timezone.now()
    reaped = reap_expired_leases(now=now)
    requeued = enqueue_next_runs(now=now, min_age_seconds=int(settings.AUTOPILOT_LEASE_SECONDS))
    return {"reaped": reaped, "requeued": requeued}


def cleanup_worktrees(*, older_than_days: int | None = None, keep_last: int | None = None, now=None) -> dict:
    """Remove worktrees of finished runs older than N days, keeping each project's last N (branches are
    kept). A path still used by an unfinished run (a resume) is never removed. Reports disk use."""
    now = now or timezone.now()
    days = (
        older_than_days
        if older_than_days is not None
        else getattr(settings, "AUTOPILOT_WORKTREE_RETENTION_DAYS", 7)
    )
    keep = keep_last if keep_last is not None else getattr(settings, "AUTOPILOT_WORKTREE_KEEP_LAST", 20)
    cutoff = now - timedelta(days=days)
    with_path = ExecutionRun.objects.exclude(worktree_path="").filter(worktree_removed_at__isnull=True)
    unfinished = ExecutionRun.objects.exclude(status__in=list(ExecutionRun.TERMINAL))
    in_use = set(unfinished.exclude(worktree_path="").values_list("worktree_path", flat=True))
    in_use |= set(
        unfinished.filter(resumed_from__isnull=False).values_list("resumed_from__worktree_path", flat=True)
    )
    removed, freed_paths = [], set()
    finished = (
        with_path.filter(status__in=list(ExecutionRun.TERMINAL))
        .select_related("project")
        .order_by("project_id", "-ended_at", "-pk")
    )
    seen: dict[int, int] = {}
    for run in finished:
        seen[run.project_id] = seen.get(run.project_id, 0) + 1
        if seen[run.project_id] <= keep or run.ended_at is None or run.ended_at > cutoff:
            continue
        if run.worktree_path in in_use or run.worktree_path in freed_paths:
            continue
        newer_active = ExecutionRun.objects.filter(
            worktree_path=run.worktree_path, ended_at__gt=cutoff
        ).exists()
        if newer_active:
            continue
        workspace.remove_worktree(run.project.repo_path, run.worktree_path)
        freed_paths.add(run.worktree_path)
    if freed_paths:
        removed = list(
            ExecutionRun.objects.filter(worktree_path__in=freed_paths).values_list("pk", flat=True)
        )
        ExecutionRun.objects.filter(worktree_path__in=freed_paths).update(worktree_removed_at=now)
    return {
        "removed_runs": sorted(removed),
        "removed_paths": sorted(freed_paths),
        "disk_bytes": workspace.disk_usage(),
    }
