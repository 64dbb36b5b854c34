"""The concrete RunContext the worker hands to a backend (see runs/backends/base.py for the contract)."""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from autopilot.events import record_event
from autopilot.state import transition
from runs import budget, locks
from runs.backends.base import (
    Approval,
    CommandResult,
    GuardRefused,
    LimitExceeded,
    RunContext,
    RunStopped,
    StepHandle,
    Verdict,
)
from runs.guard import Policy, execute, kill_group, scrubbed_env
from runs.models import ExecutionRun, ExecutionStep, RunMessage
from runs.redaction import Redactor

POLL_SECONDS = 0.2
# What the manager's tick asks of an agent for a task (the run's stored prompt; `build_prompt` adds the task).
TASK_INSTRUCTION = "Implement it in this repository, keep the change focused, and make the tests pass."
TIMED_OUT = ExecutionRun.Status.TIMED_OUT


TAKEOVER_TOOL = "takeover"  # the tool name of the approval step a take-over waits on (runs.interactive)


def output_cap() -> int:
    return int(getattr(settings, "AUTOPILOT_STEP_OUTPUT_CAP", 20_000))


def stuck_repeat(run) -> int:
    return int((run.settings or {}).get("stuck_repeat") or getattr(settings, "AUTOPILOT_STUCK_REPEAT", 5))


def stuck_idle_turns(run) -> int:
    return int(
        (run.settings or {}).get("stuck_idle_turns") or getattr(settings, "AUTOPILOT_STUCK_IDLE_TURNS", 10)
    )


def allocate_seq(run_id: int) -> int:
    """Next step number of a run: an F() increment on the run row (serialized by the row lock)."""
    with transaction.atomic():
        ExecutionRun.objects.filter(pk=run_id).update(last_step_seq=F("last_step_seq") + 1)
        return ExecutionRun.objects.filter(pk=run_id).values_list("last_step_seq", flat=True).get()


def create_step(
    *,
    run: ExecutionRun,
    kind: str,
    redactor: Redactor,
    artifacts_dir: Path | None,
    tool_name: str = "",
    input: dict | None = None,
    status: str = ExecutionStep.Status.RUNNING,
    output: str = "",
    diff: str = "",
    rollback: dict | None = None,
    risky: bool = False,
    risk_reason: str = "",
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost_usd: Decimal | None = None,
    actor=None,
) -> ExecutionStep:
    """Create a step (redacted, capped) with a safely allocated seq; stamps run.first_step_at.
    Everything is redacted before the transaction opens."""
    now = timezone.now()
    text, truncated, artifact = cap_output(redactor(output or ""), artifacts_dir)
    risk_reason = redactor(risk_reason or "")[:500]
    input = redactor.data(input or {})
    diff = redactor(diff or "")
    with transaction.atomic():
        seq = allocate_seq(run.pk)
        step = ExecutionStep.objects.create(
            run_id=run.pk,
            seq=seq,
            kind=kind,
            tool_name=tool_name[:200],
            status=status,
            risky=risky,
            risk_reason=risk_reason,
            input=input,
            output=text,
            output_truncated=truncated,
            artifact_path=artifact,
            diff=diff,
            rollback=rollback or {},
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost_usd or Decimal("0"),
            started_at=now,
            ended_at=now if status in ExecutionStep.FINISHED else None,
        )
        ExecutionRun.objects.filter(pk=run.pk, first_step_at__isnull=True).update(first_step_at=now)
        record_event(
            kind="executionstep.created",
            subject=run,
            project=run.project_id,
            actor=actor,
            data={"step": step.pk, "seq": seq, "kind": kind, "tool": step.tool_name, "status": status},
        )
    return step


def cap_output(text: str, artifacts_dir: Path | None) -> tuple[str, bool, str]:
    cap = output_cap()
    if len(text) <= cap:
        return text, False, ""
    artifact = ""
    if artifacts_dir is not None:
        artifacts_dir.mkdir(parents=True, exist_ok=True)
        path = artifacts_dir / f"step-output-{time.time_ns()}.txt"
        path.write_text(text)
        artifact = str(path)
    return text[:cap] + f"\n[output truncated: {len(text)} characters]", True, artifact


class WorkerStepHandle(StepHandle):
    def __init__(self, ctx: WorkerRunContext, step: ExecutionStep):
        self.ctx = ctx
        self.step = step
        self.step_id = step.pk
        self.seq = step.seq

    def _finish(self, status: str, output: str = "", **kwargs: Any) -> None:
        ctx = self.ctx
        text, truncated, artifact = cap_output(ctx.redactor(output or ""), ctx.artifacts_dir)
        fields: dict[str, Any] = {
            "output": text,
            "output_truncated": truncated or kwargs.get("truncated", False),
            "ended_at": timezone.now(),
        }
        if kwargs.get("artifact_path") or artifact:
            fields["artifact_path"] = kwargs.get("artifact_path") or artifact
        if kwargs.get("diff"):
            fields["diff"] = ctx.redactor(kwargs["diff"])
        if kwargs.get("rollback") is not None:
            fields["rollback"] = kwargs["rollback"]
        for name in ("input_tokens", "output_tokens"):
            if kwargs.get(name):
                fields[name] = kwargs[name]
        if kwargs.get("cost_usd") is not None:
            fields["cost_usd"] = kwargs["cost_usd"]
        if kwargs.get("extra_input"):
            fields["input"] = {**(self.step.input or {}), **ctx.redactor.data(kwargs["extra_input"])}
        with ctx.lock, transaction.atomic():
            current = ExecutionStep.objects.filter(pk=self.step_id).values_list("status", flat=True).get()
            if current == status or current in ExecutionStep.FINISHED:
                # Already decided elsewhere (e.g. skipped by a stop): keep the record, refresh fields.
                ExecutionStep.objects.filter(pk=self.step_id).update(**fields)
            else:
                transition(self.step, status, fields=fields, event_data={"run": ctx.run_id, "seq": self.seq})
            record_event(
                kind="executionstep.updated",
                subject=ctx.run,
                project=ctx.project_id,
                data={"step": self.step_id, "seq": self.seq, "status": status},
            )

    def complete(self, output: str = "", **kwargs: Any) -> None:
        self._finish(ExecutionStep.Status.COMPLETED, output, **kwargs)

    def fail(self, output: str = "", **kwargs: Any) -> None:
        self._finish(ExecutionStep.Status.FAILED, output, **kwargs)

    def skip(self, output: str = "") -> None:
        self._finish(ExecutionStep.Status.SKIPPED, output)

    def refresh(self) -> ExecutionStep:
        self.step.refresh_from_db()
        return self.step


class WorkerRunContext(RunContext):
    """Built by runs.worker.RunWorker once the workspace exists."""

    def __init__(
        self, *, run: ExecutionRun, workspace, home: Path, artifacts_dir: Path, resume_session_id: str = ""
    ):
        self.run = run
        self.run_id = run.pk
        self.project_id = run.project_id
        self.project = run.project
        self.workspace = Path(workspace.path)
        self.redactor = Redactor.for_project(self.project, self.workspace)
        # A task generated from the spec quotes it verbatim; the agent gets it redacted.
        self.prompt = self.redactor(build_prompt(run))
        self.model = run.model
        self.role = run.role
        self.autonomy_mode = run.autonomy_mode or self.project.autonomy_mode
        self.cwd = Path(workspace.cwd)
        self.resume_session_id = resume_session_id
        self.settings = dict(run.settings or {})
        self.home = home
        self.artifacts_dir = artifacts_dir
        self.env = scrubbed_base_env(home)
        self.max_turns = run.max_turns
        self.budget_usd = run.budget_usd
        self.max_wall_seconds = run.max_wall_seconds
        self.policy = Policy.for_run(project=self.project, run=run, root=self.cwd)
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.stop_reason = ""
        self.lease_lost = False
        self.started = time.monotonic()
        self.deadline = self.started + run.max_wall_seconds
        self._pids: set[int] = set()
        self._calls: collections.deque[str] = collections.deque(maxlen=max(stuck_repeat(run), 2))
        self._seen_commands: set[str] = set()
        self._idle_turns = 0
        self._stuck_reason = ""

    # -- control --------------------------------------------------------------------------------

    @property
    def stop_requested(self) -> bool:
        return self.stop_event.is_set()

    def stop_event_wait(self, seconds: float) -> bool:
        """Sleep up to `seconds` (never past the wall-time deadline); True if a stop came meanwhile."""
        remaining = max(0.0, self.deadline - time.monotonic())
        return self.stop_event.wait(min(seconds, remaining))

    def request_stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        self.stop_event.set()

    def check(self) -> None:
        if self.lease_lost:
            raise LimitExceeded("worker lost its lease (another worker or the reaper took the run over)")
        row = (
            ExecutionRun.objects.filter(pk=self.run_id)
            .values("stop_requested_at", "cost_usd", "turns", "status_reason")
            .get()
        )
        if self.stop_event.is_set() or row["stop_requested_at"]:
            raise RunStopped(self.stop_reason or row["status_reason"] or "stopped by request")
        self.await_takeover()
        if time.monotonic() > self.deadline:
            raise LimitExceeded(f"wall time limit reached ({self.max_wall_seconds}s)", status=TIMED_OUT)
        if row["cost_usd"] > 0 and row["cost_usd"] >= self.budget_usd:
            raise LimitExceeded(f"budget exceeded: ${row['cost_usd']:.4f} spent of ${self.budget_usd:.4f}")
        if row["turns"] >= self.max_turns:
            raise LimitExceeded(f"max turns reached ({self.max_turns})")
        cap = self.project.daily_budget_usd
        if cap is not None:
            spent = budget.project_spent_on(self.project_id)
            if spent >= cap:
                raise LimitExceeded(f"project daily budget cap reached: ${spent:.4f} of ${cap:.4f} today")
        if self._stuck_reason:
            raise LimitExceeded(self._stuck_reason)

    def await_takeover(self) -> None:
        """A human asked to take the run over (runs.interactive.takeover: a pending `takeover` approval
        step): pause here, at a step boundary, until they hand it back (the step is approved; their
        note and changes arrive as a message). The pause does not count against the wall-time limit."""
        pending = (
            ExecutionStep.objects.filter(
                run_id=self.run_id,
                kind=ExecutionStep.Kind.APPROVAL,
                tool_name=TAKEOVER_TOOL,
                status=ExecutionStep.Status.PENDING,
            )
            .order_by("seq")
            .first()
        )
        if pending is None:
            return
        handle = WorkerStepHandle(self, pending)
        paused = time.monotonic()
        by = (pending.input or {}).get("by") or "a human"
        decision = self.await_approval(handle, f"taken over by {by}: a human works in the worktree")
        self.deadline += time.monotonic() - paused
        handle.complete(f"handed back: {decision.message}" if decision.message else "handed back")

    def take_messages(self) -> list[str]:
        with self.lock, transaction.atomic():
            pending = list(
                RunMessage.objects.select_for_update()
                .filter(run_id=self.run_id, delivered_at__isnull=True)
                .order_by("created_at", "id")
            )
            if not pending:
                return []
            now = timezone.now()
            RunMessage.objects.filter(pk__in=[m.pk for m in pending]).update(delivered_at=now)
            for message in pending:
                create_step(
                    run=self.run,
                    kind=ExecutionStep.Kind.MESSAGE,
                    redactor=self.redactor,
                    artifacts_dir=self.artifacts_dir,
                    tool_name="human_message",
                    input={"body": message.body, "author": message.author_id},
                    status=ExecutionStep.Status.COMPLETED,
                    output="delivered to the agent",
                )
        self._idle_turns = 0
        return [self.redactor(m.body) for m in pending]

    # -- steps, usage ---------------------------------------------------------------------------

    NOT_TOOL_CALLS = frozenset(
        {
            ExecutionStep.Kind.LLM_TURN,
            ExecutionStep.Kind.MESSAGE,
            ExecutionStep.Kind.SETUP,
            ExecutionStep.Kind.COMMIT,
            ExecutionStep.Kind.TEST,
            ExecutionStep.Kind.APPROVAL,
        }
    )

    def _track_call(self, tool_name: str, input: dict | None, kind: str = "") -> None:
        """The stuck-loop detector sees tool calls only (model turns in between do not break a repeat)."""
        if not tool_name or tool_name in {"finish", "human_message"} or kind in self.NOT_TOOL_CALLS:
            return
        key = tool_name + ":" + json.dumps(input or {}, sort_keys=True, default=str)
        self._calls.append(key)
        limit = stuck_repeat(self.run)
        if len(self._calls) >= limit and len(set(list(self._calls)[-limit:])) == 1:
            self._stuck_reason = f"stuck loop: the same tool call ({tool_name}) was repeated {limit} times"

    def begin_step(
        self, kind: str, *, tool_name: str = "", input: dict | None = None, verdict: Verdict | None = None
    ) -> WorkerStepHandle:
        self._track_call(tool_name, input, kind)
        status = ExecutionStep.Status.RUNNING
        if verdict is not None and verdict.action != "allow":
            status = ExecutionStep.Status.PENDING
        if self.settings.get("step_through") and status == ExecutionStep.Status.RUNNING:
            status = ExecutionStep.Status.PENDING
        with self.lock:
            step = create_step(
                run=self.run,
                kind=kind,
                redactor=self.redactor,
                artifacts_dir=self.artifacts_dir,
                tool_name=tool_name,
                input=input,
                status=status,
                risky=bool(verdict and verdict.risky),
                risk_reason=(verdict.reason if verdict and verdict.risky else ""),
            )
        return WorkerStepHandle(self, step)

    def record_step(
        self,
        kind: str,
        *,
        tool_name: str = "",
        input: dict | None = None,
        output: str = "",
        status: str = "completed",
        diff: str = "",
        rollback: dict | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: Decimal | None = None,
    ) -> ExecutionStep:
        self._track_call(tool_name, input, kind)
        with self.lock:
            return create_step(
                run=self.run,
                kind=kind,
                redactor=self.redactor,
                artifacts_dir=self.artifacts_dir,
                tool_name=tool_name,
                input=input,
                status=status,
                output=output,
                diff=diff,
                rollback=rollback,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=cost_usd,
            )

    def record_usage(
        self,
        *,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cost_usd: Decimal | None = None,
        step_id: int | None = None,
    ) -> Decimal:
        with self.lock:
            record = budget.usage_record(
                run=self.run,
                model=model or self.model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read_tokens,
                cache_write_tokens=cache_write_tokens,
                cost_usd=cost_usd,
                step_id=step_id,
            )
            if step_id:
                ExecutionStep.objects.filter(pk=step_id).update(
                    input_tokens=F("input_tokens") + input_tokens,
                    output_tokens=F("output_tokens") + output_tokens,
                    cost_usd=F("cost_usd") + record.cost_usd,
                )
        return record.cost_usd

    def count_turn(self) -> int:
        with self.lock:
            ExecutionRun.objects.filter(pk=self.run_id).update(turns=F("turns") + 1)
            turns = ExecutionRun.objects.filter(pk=self.run_id).values_list("turns", flat=True).get()
        self._idle_turns += 1
        limit = stuck_idle_turns(self.run)
        if self._idle_turns > limit and not self._stuck_reason:
            self._stuck_reason = f"stuck loop: {limit} turns without a file change or a new command"
        return turns

    def set_session_id(self, session_id: str) -> None:
        if session_id:
            ExecutionRun.objects.filter(pk=self.run_id).update(backend_session_id=session_id[:200])

    def note_progress(self, *, changed_files: bool = False, new_command: bool = False) -> None:
        if changed_files or new_command:
            self._idle_turns = 0

    def note_command(self, text: str) -> None:
        if text not in self._seen_commands:
            self._seen_commands.add(text)
            self.note_progress(new_command=True)

    # -- guard ----------------------------------------------------------------------------------

    def authorize(self, tool_name: str, input: dict[str, Any]) -> Verdict:
        return self.policy.authorize(tool_name, input or {})

    def _wait(self, handle: WorkerStepHandle, waiting_status: str) -> ExecutionStep:
        while True:
            step = (
                ExecutionStep.objects.filter(pk=handle.step_id)
                .only("status", "decided_by_id", "decision_note")
                .get()
            )
            if step.status != waiting_status:
                return step
            if self.stop_event.is_set():
                raise RunStopped(self.stop_reason or "stopped by request")
            if ExecutionRun.objects.filter(pk=self.run_id, stop_requested_at__isnull=False).exists():
                raise RunStopped(self.stop_reason or "stopped by request")
            if time.monotonic() > self.deadline:
                raise LimitExceeded(f"wall time limit reached ({self.max_wall_seconds}s)", status=TIMED_OUT)
            self.stop_event.wait(POLL_SECONDS)

    def await_approval(self, step: StepHandle, reason: str) -> Approval:
        assert isinstance(step, WorkerStepHandle)
        with transaction.atomic():
            run = locks.lock_run(self.run_id)  # the run before its step: the lock order (runs.locks)
            transition(
                step.step, ExecutionStep.Status.NEEDS_APPROVAL, reason=reason, event_data={"run": self.run_id}
            )
            transition(
                run, ExecutionRun.Status.WAITING_APPROVAL, reason=reason, fields={"status_reason": reason}
            )
        try:
            decided = self._wait(step, ExecutionStep.Status.NEEDS_APPROVAL)
        except (RunStopped, LimitExceeded):
            with transaction.atomic():
                current = ExecutionStep.objects.select_for_update().get(pk=step.step_id)
                if current.status == ExecutionStep.Status.NEEDS_APPROVAL:
                    transition(current, ExecutionStep.Status.SKIPPED, reason="run stopped while waiting")
            raise
        step.step.status = decided.status
        self._idle_turns = 0
        return Approval(
            approved=decided.status == ExecutionStep.Status.RUNNING,
            message=decided.decision_note,
            decided_by=decided.decided_by_id,
        )

    def await_advance(self, step: StepHandle) -> None:
        assert isinstance(step, WorkerStepHandle)
        if step.step.status != ExecutionStep.Status.PENDING:
            return
        decided = self._wait(step, ExecutionStep.Status.PENDING)
        step.step.status = decided.status

    def resolve_path(self, path: str, *, write: bool = False) -> Path:
        return self.policy.path(path, write=write)

    def run_command(self, command: str | list[str], *, timeout: float | None = None) -> CommandResult:
        verdict, parsed = self.policy.command(command)
        if parsed is None:
            raise GuardRefused(verdict.reason)
        self.note_command(parsed.text)
        return execute(
            parsed,
            cwd=self.cwd,
            home=self.home,
            writable=[self.workspace, self.home],
            timeout=timeout,
            artifact_dir=self.artifacts_dir,
            redact=self.redactor,
            on_start=self.register_process,
            on_exit=self.unregister_process,
        )

    def register_process(self, pid: int) -> None:
        with self.lock:
            self._pids.add(pid)
            ExecutionRun.objects.filter(pk=self.run_id).update(child_pids=sorted(self._pids))

    def unregister_process(self, pid: int) -> None:
        with self.lock:
            self._pids.discard(pid)
            ExecutionRun.objects.filter(pk=self.run_id).update(child_pids=sorted(self._pids))

    def kill_processes(self) -> list[int]:
        with self.lock:
            pids = sorted(self._pids)
        return [pid for pid in pids if kill_group(pid)]

    def llm_env(self, provider: str) -> dict[str, str]:
        if provider == "anthropic":
            pairs = {
                "ANTHROPIC_BASE_URL": settings.ANTHROPIC_BASE_URL,
                "ANTHROPIC_API_KEY": settings.ANTHROPIC_API_KEY,
            }
        elif provider == "openai":
            pairs = {"OPENAI_BASE_URL": settings.OPENAI_BASE_URL, "OPENAI_API_KEY": settings.OPENAI_API_KEY}
        else:
            raise ValueError(f"unknown provider {provider!r}")
        return {k: v for k, v in pairs.items() if v}


def scrubbed_base_env(home: Path) -> dict[str, str]:
    return scrubbed_env(home)


def build_prompt(run: ExecutionRun) -> str:
    """THE prompt builder: what every backend receives for a run. A task run gets its task (id and
    title), the task's spec section, the task's body, then the run's own instruction (what the tick
    stores, `TASK_INSTRUCTION`, or a human's prompt) unless it only repeats the title or the body. A
    run without a task gets its prompt."""
    if not run.task_id:
        return run.prompt
    task = run.task
    parts = [f"Task #{task.pk}: {task.title}"]
    node = task.plan_node if task.plan_node_id else None
    if node is not None:
        parts.append(f"Spec section: {node.title} ({node.anchor})")
    if task.body.strip():
        parts.append(task.body.strip())
    instruction = (run.prompt or "").strip()
    if instruction and instruction not in (task.title.strip(), task.body.strip()):
        parts.append(instruction)
    return "\n\n".join(parts)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
