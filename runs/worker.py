"""Executing one run: claim → prepare → run the backend → commit → terminal status.

Shaped like NetBox's JobRunner.handle: `RunWorker.handle()` starts the run, runs the backend and
always terminates it; a known failure (BackendError, WorkspaceError, a limit, a stop) becomes its
status with a reason, anything else becomes `failed` with the traceback in `run.error`.

The database row is the source of truth, never the queue message:
- `claim()` is a compare-and-set UPDATE (status queued and no lease owner → lease owner = this
  worker, lease expiry), preceded on PostgreSQL by `select_for_update(skip_locked=True)`; only the
  winner moves the run to `preparing`. A duplicate delivery or a run already claimed does nothing.
- A heartbeat thread renews the lease every few seconds, notices stop requests within
  STOP_POLL_SECONDS, interrupts the backend, and on a forced stop kills the agent's process groups
  after a grace period. If the lease was taken away (reaped) the worker stops.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from autopilot.errors import InvalidTransition
from autopilot.events import record_event
from autopilot.state import transition
from runs import budget, lifecycle, workspace
from runs.backends import get_backend
from runs.backends.base import BackendError, BackendResult, LimitExceeded, RunStopped
from runs.context import WorkerRunContext, create_step
from runs.leases import lease_seconds, new_lease_owner
from runs.models import ExecutionRun, ExecutionStep
from runs.redaction import Redactor
from runs.services import enqueue_next_runs

logger = logging.getLogger(__name__)

STOP_POLL_SECONDS = 0.25
Status = ExecutionRun.Status


def stop_grace_seconds() -> float:
    return float(getattr(settings, "AUTOPILOT_STOP_GRACE_SECONDS", 3))


CLAIM_LOCK_KEY = 0x61706361  # "apca": the global claim lock on PostgreSQL
NOT_CLAIMED = "not claimed"
AT_CAPACITY = "waiting for capacity"
CAPACITY_POLL_SECONDS = 0.5


def max_concurrent_runs() -> int:
    return int(settings.AUTOPILOT_MAX_CONCURRENT_RUNS)


def _claim_lock() -> None:
    """Serialize claims: the count of claimed runs and the claim happen under one lock. SQLite's
    IMMEDIATE transactions take the write lock at BEGIN already; PostgreSQL takes an advisory lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK_KEY])


def claim(run_id: int, owner: str) -> ExecutionRun | str:
    """Claim a queued run for this worker. Returns the run, or NOT_CLAIMED (not queued, or someone
    else won), or AT_CAPACITY (AUTOPILOT_MAX_CONCURRENT_RUNS runs are claimed already: the run stays
    queued and is enqueued again when a slot frees). The global cap holds for every door (API, CLI,
    tick) because every run goes through here: count and claim happen in one locked transaction."""
    now = timezone.now()
    with transaction.atomic():
        _claim_lock()
        queued = ExecutionRun.objects.filter(pk=run_id, status=Status.QUEUED, lease_owner="")
        if connection.vendor == "postgresql" and queued.select_for_update(skip_locked=True).first() is None:
            return NOT_CLAIMED
        if ExecutionRun.objects.filter(status__in=list(ExecutionRun.ACTIVE)).count() >= max_concurrent_runs():
            return AT_CAPACITY if queued.exists() else NOT_CLAIMED
        won = queued.update(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds()),
            heartbeat_at=now,
            pid=os.getpid(),
        )
        if not won:
            return NOT_CLAIMED
        run = ExecutionRun.objects.select_related("project", "task", "resumed_from").get(pk=run_id)
        transition(run, Status.PREPARING, reason="claimed by a worker", event_data={"worker": owner})
    return run


def execute_run(run_id: int, *, wait_for_capacity: bool = True) -> str:
    """Claim and execute, or do nothing. In-process callers (the CLI in the foreground, the full-auto
    driver) wait for a free slot; the django-q2 task (runs.tasks) does not: its worker is freed and
    the run is enqueued again when a slot frees (see runs.services.enqueue_next_runs)."""
    close_old_connections()
    owner = new_lease_owner()
    run = claim(run_id, owner)
    waited = False
    while run == AT_CAPACITY and wait_for_capacity:
        waited = True
        time.sleep(CAPACITY_POLL_SECONDS)
        run = claim(run_id, owner)
    if not isinstance(run, ExecutionRun):
        logger.info("run %s: %s", run_id, run)
        if waited:  # a worker took it when the slot freed: follow it to its end, as if we ran it
            while (
                ExecutionRun.objects.filter(pk=run_id)
                .exclude(status__in=list(ExecutionRun.TERMINAL))
                .exists()
            ):
                time.sleep(CAPACITY_POLL_SECONDS)
        return run
    RunWorker(run, owner).handle()
    return ExecutionRun.objects.values_list("status", flat=True).get(pk=run_id)


class Heartbeat(threading.Thread):
    def __init__(self, worker: RunWorker):
        super().__init__(name=f"heartbeat-run-{worker.run.pk}", daemon=True)
        self.worker = worker
        self.done = threading.Event()

    def run(self) -> None:  # noqa: C901 - one loop, several duties
        worker = self.worker
        renew_every = max(0.5, min(5.0, lease_seconds() / 3))
        last_renew = time.monotonic()
        stop_seen = False
        kill_at: float | None = None
        try:
            while not self.done.wait(STOP_POLL_SECONDS):
                row = (
                    ExecutionRun.objects.filter(pk=worker.run.pk)
                    .values("lease_owner", "stop_requested_at", "stop_force", "status_reason", "status")
                    .first()
                )
                if row is None:
                    break
                now = time.monotonic()
                if row["lease_owner"] != worker.owner:
                    worker.lease_lost("lease taken over")
                    break
                if row["stop_requested_at"] and not stop_seen:
                    stop_seen = True
                    worker.stop(row["status_reason"] or "stopped by request")
                if row["stop_force"] and kill_at is None and stop_seen:
                    kill_at = now + stop_grace_seconds()
                if kill_at is not None and now >= kill_at:
                    worker.kill_children()
                    kill_at = float("inf")
                if now - last_renew >= renew_every:
                    stamp = timezone.now()
                    renewed = ExecutionRun.objects.filter(pk=worker.run.pk, lease_owner=worker.owner).update(
                        lease_expires_at=stamp + timedelta(seconds=lease_seconds()), heartbeat_at=stamp
                    )
                    last_renew = now
                    if not renewed:
                        worker.lease_lost("lease taken over")
                        break
        except Exception:  # noqa: BLE001 - the heartbeat must never take the worker down
            logger.exception("heartbeat of run %s failed", worker.run.pk)
        finally:
            connection.close()


class RunWorker:
    def __init__(self, run: ExecutionRun, owner: str):
        self.run = run
        self.owner = owner
        self.backend = None
        self.ctx: WorkerRunContext | None = None
        self.ws: workspace.Workspace | None = None
        self.heartbeat = Heartbeat(self)
        self._stop_reason = ""
        self._lost = False

    # -- called from the heartbeat thread -------------------------------------------------------

    def stop(self, reason: str) -> None:
        self._stop_reason = reason
        if self.ctx is not None:
            self.ctx.request_stop(reason)
        if self.backend is not None:
            try:
                self.backend.interrupt()
            except Exception:  # noqa: BLE001
                logger.exception("interrupting run %s failed", self.run.pk)

    def kill_children(self) -> None:
        if self.ctx is not None:
            killed = self.ctx.kill_processes()
            logger.warning("run %s: forced stop killed process groups %s", self.run.pk, killed)

    def lease_lost(self, reason: str) -> None:
        self._lost = True
        if self.ctx is not None:
            self.ctx.lease_lost = True
        self.stop(reason)
        self.kill_children()

    # -- the job --------------------------------------------------------------------------------

    def handle(self) -> None:
        status, reason, error = Status.FAILED, "", ""
        result: BackendResult | None = None
        self.heartbeat.start()
        try:
            self.backend = get_backend(self.run.agent_backend)
            self.prepare()
            self.start()
            result = self.backend.run(self.ctx)
            if result.succeeded:
                status, reason = Status.SUCCEEDED, _summary_reason(result.summary)
            else:
                status, reason = Status.FAILED, result.error or "the agent reported a failure"
        except RunStopped as exc:
            status, reason = Status.CANCELLED, str(exc) or self._stop_reason or "stopped by request"
        except LimitExceeded as exc:
            status, reason = exc.status, exc.reason
        except (BackendError, workspace.WorkspaceError) as exc:
            status, reason = Status.FAILED, str(exc)
        except InvalidTransition as exc:
            status, reason = Status.FAILED, f"run changed state under the worker: {exc.message}"
        except Exception as exc:  # noqa: BLE001 - anything unexpected fails the run with its traceback
            logger.exception("run %s crashed", self.run.pk)
            status, reason, error = (
                Status.FAILED,
                f"unexpected error: {type(exc).__name__}: {exc}",
                traceback.format_exc(),
            )
        finally:
            self.heartbeat.done.set()
            self.heartbeat.join(timeout=5)
        if self._lost:
            logger.warning("run %s: lease lost; leaving the run to whoever holds it", self.run.pk)
            return
        self.terminate(status, reason, error, result)

    def prepare(self) -> None:
        run = self.run
        try:
            self.ws = workspace.create(run, reuse_from=run.resumed_from)
        except OSError as exc:  # full disk, unwritable or missing worktree root: the run fails with why
            where = exc.filename or settings.AUTOPILOT_WORKTREE_ROOT
            raise workspace.WorkspaceError(
                f"could not create the run's worktree under {where}: {exc.strerror or exc}"
            ) from exc
        ExecutionRun.objects.filter(pk=run.pk).update(
            worktree_path=str(self.ws.path),
            branch=self.ws.branch,
            base_commit=self.ws.base_commit,
            start_ref=self.ws.start_ref[:300],
        )
        run.worktree_path, run.branch, run.base_commit, run.start_ref = (
            str(self.ws.path),
            self.ws.branch,
            self.ws.base_commit,
            self.ws.start_ref[:300],
        )
        if self.ws.start_conflict:
            # The integration head did not merge cleanly into the task's branch (workspace.create):
            # the event says which files; the prompt context shows both sides from the integration.
            conflict = self.ws.start_conflict
            record_event(
                kind="executionrun.start_conflict",
                subject=run,
                data={
                    "onto": conflict["onto"],
                    "files": conflict["files"][:100],
                    "resolved_with_ours": conflict["merged"],
                    "detail": Redactor.for_project(run.project)(conflict["detail"]),
                },
            )
        home = Path(settings.DATA_DIR) / "run-homes" / f"run-{run.pk}"
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        artifacts = Path(settings.AUTOPILOT_ARTIFACT_ROOT) / "runs" / str(run.pk)
        artifacts.mkdir(parents=True, exist_ok=True)
        resume_id = run.resumed_from.backend_session_id if run.resumed_from_id else ""
        self.ctx = WorkerRunContext(
            run=run, workspace=self.ws, home=home, artifacts_dir=artifacts, resume_session_id=resume_id
        )
        if self._stop_reason:
            self.ctx.request_stop(self._stop_reason)
        if run.project.setup_script and not self.ws.reused:
            self.setup()

    def setup(self) -> None:
        ctx = self.ctx
        timeout = float(getattr(settings, "AUTOPILOT_SETUP_TIMEOUT", 600))
        handle = ctx.begin_step(
            ExecutionStep.Kind.SETUP, input={"script": self.run.project.setup_script, "timeout": timeout}
        )
        # Sandboxed like agent commands (workspace.run_script); network only with project.setup_network.
        result = workspace.run_setup(
            self.run.project.setup_script,
            cwd=ctx.cwd,
            home=ctx.home,
            timeout=timeout,
            workspace=ctx.workspace,
            network=self.run.project.setup_network,
            artifact_dir=ctx.artifacts_dir,
            on_start=ctx.register_process,
            on_exit=ctx.unregister_process,
        )
        code, output = result.exit_code, result.output
        if code == 0:
            handle.complete(output, extra_input={"exit_code": code, "sandbox": result.sandbox})
            return
        handle.fail(output, extra_input={"exit_code": code, "sandbox": result.sandbox})
        raise BackendError("setup script timed out" if code is None else f"setup script failed (exit {code})")

    def start(self) -> None:
        ctx = self.ctx
        ctx.check()
        with transaction.atomic():
            transition(
                self.run, Status.RUNNING, reason="agent started", fields={"started_at": timezone.now()}
            )
            lifecycle.publish_run_started(self.run.pk)

    def terminate(self, status: str, reason: str, error: str, result: BackendResult | None) -> None:
        run = self.run
        redactor = self.ctx.redactor if self.ctx else Redactor.for_project(run.project)
        fields: dict = {}
        if self.ws is not None:
            try:
                fields.update(self.commit())
            except workspace.WorkspaceError as exc:
                if status == Status.SUCCEEDED:
                    status, reason = Status.FAILED, f"could not commit the run's changes: {exc}"
                error = error or str(exc)
        if result is not None:
            if result.session_id:
                fields["backend_session_id"] = result.session_id[:200]
            if result.summary:
                fields["result_summary"] = redactor(result.summary)
            if result.total_cost_usd is not None:
                recorded = budget.run_cost(run.pk)
                missing = Decimal(str(result.total_cost_usd)) - recorded
                if missing > 0:
                    budget.usage_record(
                        run=run,
                        model=run.model or run.agent_backend,
                        cost_usd=missing,
                        input_tokens=int(result.usage.get("input_tokens", 0)),
                        output_tokens=int(result.usage.get("output_tokens", 0)),
                    )
            if result.turns is not None:
                fields["turns"] = max(
                    result.turns, ExecutionRun.objects.values_list("turns", flat=True).get(pk=run.pk)
                )
        fields.update(
            status_reason=redactor(reason)[:5000],
            error=redactor(error),
            ended_at=timezone.now(),
            lease_owner="",
            lease_expires_at=None,
            child_pids=[],
        )
        with transaction.atomic():
            current = ExecutionRun.objects.select_for_update().get(pk=run.pk)
            if current.is_terminal or current.lease_owner != self.owner:
                # Force-cancelled by a human or reaped meanwhile: keep its status, record the commit.
                keep = {
                    k: v
                    for k, v in fields.items()
                    if k in {"head_commit", "diff_summary", "backend_session_id"}
                }
                if keep:
                    ExecutionRun.objects.filter(pk=run.pk).update(**keep)
                return
            transition(current, status, reason=fields["status_reason"], fields=fields)
            lifecycle.publish_run_finished(run.pk)
            transaction.on_commit(_slot_freed)

    def commit(self) -> dict:
        run, ws = self.run, self.ws
        head = workspace.commit_all(ws.path, workspace.commit_message(run))
        if head is None:
            head = workspace.git(ws.path, "rev-parse", "HEAD")
        summary = workspace.diff_summary(ws.path, ws.base_commit, head)
        if head != ws.base_commit and self.ctx is not None:
            create_step(
                run=run,
                kind=ExecutionStep.Kind.COMMIT,
                redactor=self.ctx.redactor,
                artifacts_dir=self.ctx.artifacts_dir,
                tool_name="git commit",
                input={"branch": ws.branch, "message": workspace.commit_message(run)},
                status=ExecutionStep.Status.COMPLETED,
                output=(
                    f"{head[:12]} on {ws.branch}: {len(summary['files'])} file(s), "
                    f"+{summary['added']} -{summary['removed']}"
                ),
            )
        return {"head_commit": head, "diff_summary": summary}


def _summary_reason(summary: str) -> str:
    first = (summary or "").strip().splitlines()
    return ("agent finished: " + first[0][:300]) if first else "agent finished"


def _slot_freed() -> None:
    """A run ended: hand the next queued runs (as many as there are free slots) to the workers."""
    try:
        enqueue_next_runs()
    except Exception:  # noqa: BLE001 - the reconciler re-enqueues anyway; never undo the run's outcome
        logger.exception("enqueueing the next queued runs failed")
