"""The agent backend interface, and the RunContext the worker hands to a backend.

A backend turns a prompt into work inside a run's git worktree. The worker (runs/worker.py) does
everything around it: claims the run, prepares the worktree, runs the setup script, heartbeats,
enforces limits, commits the result and moves the run to its terminal status. A backend only:

1. reads what it needs from the `RunContext` (prompt, model, cwd, scrubbed env, private HOME…),
2. records every action as a step (`ctx.begin_step(...)` → `handle.complete(...)` / `handle.fail(...)`,
   or `ctx.record_step(...)` for something already finished),
3. records model usage (`ctx.record_usage(...)`; cost is priced from settings.AUTOPILOT_PRICES) and
   counts turns (`ctx.count_turn()`),
4. asks `ctx.authorize(...)` before a tool runs; on "ask" it calls `ctx.await_approval(...)`, on
   "deny" it refuses the tool and tells the agent why,
5. calls `ctx.check()` between model turns (raises `RunStopped` / `LimitExceeded`), delivers human
   messages with `ctx.take_messages()`,
6. returns a `BackendResult` (or raises `BackendError` for a known failure).

Contract for implementers
-------------------------
- Subclass `Backend`, set `name` (a runs.models.AgentBackend value) and `label`, implement `run()`.
  Register the dotted path in runs/backends/__init__.py (`BACKENDS`).
- `run()` executes in the worker's main thread and may block. It is synchronous; an async backend
  wraps itself in `asyncio.run(...)`. RunContext methods are synchronous, thread-safe, and touch the
  database: from async code call them with `await asyncio.to_thread(ctx.method, ...)`.
- `interrupt()` is called from the heartbeat thread when a stop is requested (graceful or forced). It
  must be thread-safe and return quickly (e.g. `loop.call_soon_threadsafe(...)` / client.interrupt).
  After a grace period a forced stop also kills every process group registered with
  `ctx.register_process(...)`, so start agent subprocesses with `start_new_session=True` and
  register them.
- Exceptions from `run()`: `RunStopped` → cancelled; `LimitExceeded` → its `status` (timed_out or
  failed) with its reason; `BackendError` → failed with its message as the reason; anything else →
  failed with the traceback stored in `run.error`.
- Never read secrets from os.environ for a child process: start from `ctx.env` (PATH, HOME=<private
  dir>, LANG, plus explicit variables) and add only what the agent needs
  (`ctx.llm_env("anthropic"|"openai")` gives base URL + key from settings).
- Everything passed to the step recorder is redacted (runs/redaction.py) and capped by the context;
  a backend does not redact by itself.
- Costs: prefer per-call `record_usage`. A backend that only learns a total at the end (Claude Code's
  `total_cost_usd`) sets `BackendResult.total_cost_usd`; the worker records the difference between
  that total and what was already recorded as one usage record.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from runs.models import ExecutionRun, ExecutionStep


# --- Exceptions a backend raises (or receives from ctx.check()) -----------------------------------


class BackendError(Exception):
    """A known failure (bad answer from the model, CLI missing, API error). The run fails with
    `str(exc)` as its status_reason; no traceback is stored."""


class RunStopped(Exception):
    """A human asked the run to stop. Raised by ctx.check()/await_approval(); the run ends cancelled."""


class LimitExceeded(Exception):
    """A limit stopped the run. `status` is "timed_out" (wall time) or "failed" (budget, turns,
    daily cap, stuck loop); `reason` is the status_reason shown to users."""

    def __init__(self, reason: str, *, status: str = "failed"):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class GuardRefused(Exception):
    """A tool call refused by the guard (path escape, injection, not allowed in this mode). The
    message is meant to be returned to the agent as the tool's error result."""


# --- Values exchanged with the context ------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The guard's answer for one tool call.

    action: "allow" (run it), "ask" (semi_auto and risky: call ctx.await_approval first),
    "deny" (refuse; tell the agent `reason`). `risky` and `reason` are stored on the step.
    """

    action: Literal["allow", "ask", "deny"]
    reason: str = ""
    risky: bool = False

    @property
    def allowed(self) -> bool:
        return self.action == "allow"


@dataclass(frozen=True)
class Approval:
    """A human's decision on a step that needed approval. `message` is the note (approve) or the
    message to pass back to the agent (reject)."""

    approved: bool
    message: str = ""
    decided_by: int | None = None


@dataclass
class CommandResult:
    """Outcome of ctx.run_command(): exit code (None on timeout), combined output (capped and
    redacted), whether it was truncated, the artifact file holding the full output, sandbox label."""

    exit_code: int | None
    output: str
    truncated: bool = False
    timed_out: bool = False
    artifact_path: str = ""
    sandbox: str = "unsandboxed"

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class BackendResult:
    """What a backend returns when the agent finished on its own.

    succeeded=False with `error` → the run fails with that reason (e.g. the CLI's result had
    is_error). `summary` becomes run.result_summary; `session_id` run.backend_session_id (resume).
    `total_cost_usd` / `turns` / `usage` are totals the backend learned at the end (optional).
    """

    summary: str = ""
    session_id: str = ""
    succeeded: bool = True
    error: str = ""
    total_cost_usd: Decimal | None = None
    turns: int | None = None
    usage: dict[str, int] = field(default_factory=dict)


class StepHandle(abc.ABC):
    """A step in progress (returned by ctx.begin_step). `step_id` and `seq` identify it."""

    step_id: int
    seq: int

    @abc.abstractmethod
    def complete(
        self,
        output: str = "",
        *,
        diff: str = "",
        rollback: dict[str, Any] | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: Decimal | None = None,
        extra_input: dict[str, Any] | None = None,
    ) -> None:
        """Mark the step completed with its (redacted, capped) output, diff and rollback data.
        rollback for a file change: {"path": rel_path, "before_b64": "<base64>" | None (absent)}."""

    @abc.abstractmethod
    def fail(self, output: str = "", **kwargs: Any) -> None:
        """Mark the step failed (same keyword arguments as complete())."""

    @abc.abstractmethod
    def skip(self, output: str = "") -> None:
        """Mark the step skipped (refused by the guard or rejected by a human)."""


class RunContext(abc.ABC):
    """Everything a backend may use. The concrete class is runs.context.WorkerRunContext.

    Attributes (read-only for backends):
        run_id, project_id: ids.
        run: the ExecutionRun as it was when the backend started (do not save it).
        prompt: the task prompt (for a task: title + body + the run's prompt).
        model: the model name ("" → backend default). For native: "anthropic:claude-sonnet-4-6",
            "openai:gpt-5-mini" or a bare name.
        role: "code" | "test" | "docs".
        autonomy_mode: the project's mode at run creation ("semi_auto", "full_auto", ...).
        workspace: the worktree root (Path). cwd: the agent's working directory and confinement
            root (workspace / project.subdirectory).
        resume_session_id: the backend session id to continue ("" for a fresh session).
        settings: the run's free-form settings dict (e.g. {"script": [...]} for scripted).
        home: a private, empty HOME directory for this run (agent CLIs write their config there).
        artifacts_dir: where large outputs and transcripts go.
        env: scrubbed base environment for child processes (PATH, HOME=home, LANG, LC_ALL, TMPDIR).
        max_turns, budget_usd, max_wall_seconds: the run's limits (enforced by check()).
    """

    run_id: int
    project_id: int
    run: ExecutionRun
    prompt: str
    model: str
    role: str
    autonomy_mode: str
    workspace: Path
    cwd: Path
    resume_session_id: str
    settings: dict[str, Any]
    home: Path
    artifacts_dir: Path
    env: dict[str, str]
    max_turns: int
    budget_usd: Decimal
    max_wall_seconds: int

    # -- control --------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def stop_requested(self) -> bool:
        """True once a human asked to stop (graceful or forced). Cheap; no database access."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise RunStopped if a stop was requested, LimitExceeded if wall time, budget, turns,
        the project's daily cap or the stuck-loop detector says so. Call between model turns."""

    @abc.abstractmethod
    def take_messages(self) -> list[str]:
        """Human messages sent to the run and not yet delivered, oldest first. Marks them delivered
        and records a `message` step each. Append them as user turns before the next model call."""

    # -- steps, usage ---------------------------------------------------------------------------

    @abc.abstractmethod
    def begin_step(
        self,
        kind: str,
        *,
        tool_name: str = "",
        input: dict[str, Any] | None = None,
        verdict: Verdict | None = None,
    ) -> StepHandle:
        """Create a running step (kind: an ExecutionStep.Kind value). The input is redacted. The
        stuck-loop detector sees every (tool_name, input) pair begun here."""

    @abc.abstractmethod
    def record_step(
        self,
        kind: str,
        *,
        tool_name: str = "",
        input: dict[str, Any] | None = None,
        output: str = "",
        status: str = "completed",
        diff: str = "",
        rollback: dict[str, Any] | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_usd: Decimal | None = None,
    ) -> ExecutionStep:
        """Record a step that already happened (e.g. an assistant text turn from a stream)."""

    @abc.abstractmethod
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
        """One model call: creates a UsageRecord (cost from the price table unless given), adds the
        tokens and cost to the run. Returns the cost. Budget is enforced by the next check()."""

    @abc.abstractmethod
    def count_turn(self) -> int:
        """Count one agent turn (one model response); returns the run's turn count."""

    @abc.abstractmethod
    def set_session_id(self, session_id: str) -> None:
        """Store the backend's session id on the run as soon as it is known (resume)."""

    @abc.abstractmethod
    def note_progress(self, *, changed_files: bool = False, new_command: bool = False) -> None:
        """Tell the stuck-loop detector a turn made progress (a file changed, a new command ran).
        Guarded tools call this themselves; CLI backends call it from their tool results."""

    # -- guard ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def authorize(self, tool_name: str, input: dict[str, Any]) -> Verdict:
        """The guard policy for a tool call, with the autonomy mode applied: risky → "ask" in
        semi_auto, "deny" in full_auto (unless allowlisted). Understands native tool names
        (read_file, write_file, edit_file, list_dir, search, run_terminal) and Claude Code / Codex
        names (Read, Write, Edit, MultiEdit, Bash, Glob, Grep, LS, WebFetch, exec_command …).
        Paths are resolved against ctx.cwd, symlinks included; escapes are "deny"."""

    @abc.abstractmethod
    def await_approval(self, step: StepHandle, reason: str) -> Approval:
        """Put the step in needs_approval and the run in waiting_approval, block until a human
        decides (API, CLI, UI), then put the run back to running. Raises RunStopped if the run is
        stopped while waiting. A rejection's message is in Approval.message: return it to the agent
        as the tool's error result (e.g. "Rejected by a human: <message>")."""

    def await_advance(self, step: StepHandle) -> None:
        """Step-through mode (run.settings["step_through"]): block until a human "advances" the run
        (POST /api/runs/{id}/advance/), which releases this pending step. No-op otherwise."""
        return None

    @abc.abstractmethod
    def resolve_path(self, path: str, *, write: bool = False) -> Path:
        """Resolve a path inside ctx.cwd (symlinks included); GuardRefused on any escape."""

    @abc.abstractmethod
    def run_command(self, command: str | list[str], *, timeout: float | None = None) -> CommandResult:
        """Run a command the guarded way: shlex-parsed, no shell unless the project allows it,
        scrubbed env, timeout, output cap (full output to an artifact), bubblewrap when available.
        Does not authorize: call authorize() first. Does not record a step."""

    @abc.abstractmethod
    def register_process(self, pid: int) -> None:
        """Register a child process group leader (start it with start_new_session=True) so a
        forced stop or the lease reaper can kill it."""

    @abc.abstractmethod
    def unregister_process(self, pid: int) -> None:
        """Forget a process registered with register_process() once it has exited."""

    @abc.abstractmethod
    def llm_env(self, provider: str) -> dict[str, str]:
        """Base URL and key for "anthropic" or "openai" from settings, as environment variables
        (ANTHROPIC_BASE_URL/ANTHROPIC_API_KEY or OPENAI_BASE_URL/OPENAI_API_KEY; empty ones left out)."""


class Backend(abc.ABC):
    """One agent implementation. Instantiated once per run by the worker (runs.backends.get_backend)."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(usable on this machine, why not). E.g. the codex backend checks its CLI is installed."""
        return True, ""

    @abc.abstractmethod
    def run(self, ctx: RunContext) -> BackendResult:
        """Do the work. See the module docstring for the contract."""

    def interrupt(self) -> None:  # noqa: B027 - optional hook
        """Called from another thread when a stop is requested. Default: nothing (the backend sees
        ctx.stop_requested / ctx.check() between turns)."""
