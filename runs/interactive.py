"""Interactive sessions: a human in a terminal (tmux) in a run's worktree, recorded as asciicast v2.

An interactive session is an ExecutionRun of kind `interactive`. It gets a fresh worktree on its own
branch like any task run (runs.workspace.create), and a tmux server of its own:

- One tmux server per run, on a private socket `<AUTOPILOT_INTERACTIVE_SOCKET_DIR>/run-<id>.sock`
  (default `<data dir>/tmux`; a directory whose socket paths would exceed the kernel's 107 bytes is
  replaced by one under the system's temp directory), with one session `autopilot-run-<id>`. One
  server per run makes every session independent (its environment, its end) and the orphan sweep
  simple: a socket names its run. `attach_argv(run)` is the argv that attaches a terminal to it.
- The pane runs the shell (or, with `agent`, the agent CLI's own TUI, then a shell) INSIDE the same
  sandbox as agent commands (runs.guard.sandbox_argv: the worktree and the run's private HOME
  writable, system read-only, no network unless an agent CLI needs its API) with a scrubbed env.
- The pane's output is recorded by `tmux pipe-pane` into runs/cast_recorder.py (asciicast v2, times
  relative to the start) at `recording_path(run)` under the run's artifacts. The shell starts only
  once the recorder is attached (`tmux wait-for`), so the recording begins with the first prompt.
  `recording_events(run)` serves it redacted.
- The session ends (`finish`) with a commit of what changed on the run's branch, an ExecutionStep of
  kind commit with its diff, and the run `succeeded` (nothing changed: `cancelled`), so the
  integration flow takes it like any task's work. It ends when asked (`stop`), when the shell exits,
  and after AUTOPILOT_INTERACTIVE_IDLE_SECONDS without activity (tmux's session_activity) — the last
  two by `sweep()`, which the reconciler runs every pass.
- Interactive runs never get a lease (the reaper ignores them) and are not counted against the
  global cap of running agents nor the manager's per-project parallelism; their own limits are
  AUTOPILOT_INTERACTIVE_MAX_PER_USER and _PER_PROJECT open sessions.

Take-over of an autonomous run (`takeover` / `handback`): a pending APPROVAL step named
`takeover` asks the worker to pause at its next step boundary (runs.context.check() waits on it as on
any approval, the run `waiting_approval`); once paused, the run's worktree opens in a tmux session
like above (the same socket naming). `handback` closes the terminal, records each file the human
changed as a step with its diff and the bytes before (step rollback restores them), sends the agent
the note plus a summary (files, diff stat) as a message, and releases the pause.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from autopilot.errors import ApplicationError, CapacityExceeded, Conflict
from autopilot.events import record_event
from autopilot.input_limits import MAX_MESSAGE_CHARS, check_length
from autopilot.state import transition
from runs import lifecycle, locks, services, workspace
from runs.backends import backend_label, backend_status
from runs.backends.claude_code import bundled_cli
from runs.backends.codex import codex_cli, codex_install_dirs
from runs.context import TAKEOVER_TOOL, create_step
from runs.guard import sandbox_argv, sandbox_path_variable, sandbox_readonly_paths, scrubbed_env
from runs.models import AgentBackend, ExecutionRun, ExecutionStep, RunKind
from runs.redaction import Redactor

Status = ExecutionRun.Status
StepStatus = ExecutionStep.Status
TAKEOVER = TAKEOVER_TOOL
AGENTS = (AgentBackend.CLAUDE_CODE, AgentBackend.CODEX)
SOCKET_NAME = re.compile(r"^run-(\d+)\.sock$")
MAX_SOCKET_PATH = 100
WIDTH, HEIGHT = 200, 50
DIFF_CAP = 200_000
RECORDER = Path(__file__).with_name("cast_recorder.py")


class TerminalError(ApplicationError):
    """tmux could not start or answer (the message names the command and tmux's words)."""


# --- Naming ---------------------------------------------------------------------------------------


def socket_dir() -> Path:
    configured = getattr(settings, "AUTOPILOT_INTERACTIVE_SOCKET_DIR", "") or ""
    directory = Path(configured) if configured else Path(settings.DATA_DIR) / "tmux"
    if len(str(directory / "run-9999999999.sock")) > MAX_SOCKET_PATH:
        digest = hashlib.sha1(str(directory).encode()).hexdigest()[:12]
        directory = Path(tempfile.gettempdir()) / f"autopilot-tmux-{os.getuid()}-{digest}"
    return directory


def socket_path(run: ExecutionRun | int) -> Path:
    return socket_dir() / f"run-{getattr(run, 'pk', run)}.sock"


def session_name(run: ExecutionRun | int) -> str:
    return f"autopilot-run-{getattr(run, 'pk', run)}"


def tmux_binary() -> str:
    return getattr(settings, "AUTOPILOT_TMUX", "") or shutil.which("tmux") or "tmux"


def attach_argv(run: ExecutionRun | int) -> list[str]:
    """The argv that attaches a terminal to the run's tmux session (exec it with a TTY)."""
    return [tmux_binary(), "-S", str(socket_path(run)), "attach-session", "-t", session_name(run)]


def recording_path(run: ExecutionRun | int) -> Path:
    """The run's terminal recording (asciicast v2, raw: serve it through recording_events)."""
    return Path(settings.AUTOPILOT_ARTIFACT_ROOT) / "runs" / str(getattr(run, "pk", run)) / "terminal.cast"


def _tmux(run: ExecutionRun | int, *args: str, check: bool = True, timeout: float = 10) -> str:
    argv = [tmux_binary(), "-S", str(socket_path(run)), *args]
    try:
        result = subprocess.run(argv, capture_output=True, timeout=timeout, env=_client_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TerminalError(f"tmux {args[0]} failed: {exc}") from exc
    if check and result.returncode != 0:
        words = result.stderr.decode(errors="replace").strip() or f"exit {result.returncode}"
        raise TerminalError(f"tmux {args[0]} failed: {words}")
    return result.stdout.decode(errors="replace").strip() if result.returncode == 0 else ""


def _client_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm-256color", "LANG": "C.UTF-8"}


def is_live(run: ExecutionRun | int) -> bool:
    """True while the run's tmux session exists (its server answers on the run's socket)."""
    if not socket_path(run).exists():
        return False
    try:
        _tmux(run, "has-session", "-t", session_name(run), timeout=5)
    except TerminalError:
        return False
    return True


def last_activity(run: ExecutionRun | int) -> float | None:
    """Epoch seconds of the session's last activity (typing or output), None when not live."""
    try:
        text = _tmux(run, "display-message", "-p", "-t", session_name(run), "#{session_activity}", timeout=5)
    except TerminalError:
        return None
    return float(text) if text.isdigit() else None


def server_pid(run: ExecutionRun | int) -> int | None:
    try:
        text = _tmux(run, "display-message", "-p", "-t", session_name(run), "#{pid}", timeout=5)
    except TerminalError:
        return None
    return int(text) if text.isdigit() else None


def kill_server(run: ExecutionRun | int) -> bool:
    """End the run's tmux server (its shell and everything under it); remove the socket."""
    killed = False
    if socket_path(run).exists():
        pid = server_pid(run)
        try:
            _tmux(run, "kill-server", timeout=5)
            killed = True
        except TerminalError:
            killed = False
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        socket_path(run).unlink()
    return killed


@contextlib.contextmanager
def _run_lock(run_id: int):
    """Serialize starting and ending one run's terminal across processes (two sweeps, a stop)."""
    directory = socket_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / f"run-{run_id}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- The terminal ---------------------------------------------------------------------------------


def run_home(run: ExecutionRun) -> Path:
    home = Path(settings.DATA_DIR) / "run-homes" / f"run-{run.pk}"
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home


def _agent_command(agent: str) -> tuple[list[str], list[Path], dict[str, str]]:
    """(argv, read-only dirs the sandbox must show, env) of an agent CLI's own interactive TUI."""
    if agent == AgentBackend.CLAUDE_CODE:
        cli = bundled_cli()
        if cli is None:
            raise ApplicationError("Claude Code's CLI is not installed here.")
        env = {
            "ANTHROPIC_API_KEY": settings.ANTHROPIC_API_KEY,
            "ANTHROPIC_BASE_URL": settings.ANTHROPIC_BASE_URL,
        }
        return [str(cli)], [Path(cli).resolve().parent], {k: v for k, v in env.items() if v}
    cli = codex_cli()
    if not cli:
        raise ApplicationError("The Codex CLI is not installed here.")
    env = {"OPENAI_API_KEY": settings.OPENAI_API_KEY, "OPENAI_BASE_URL": settings.OPENAI_BASE_URL}
    return [str(cli)], list(codex_install_dirs()), {k: v for k, v in env.items() if v}


def pane_argv(run: ExecutionRun, *, cwd: Path, home: Path, agent: str = "") -> tuple[list[str], str, dict]:
    """The sandboxed program of the session's pane: (argv, sandbox label, env)."""
    shell = shutil.which("bash") or "/bin/sh"
    shell_argv = [shell, "--noprofile", "--norc", "-i"] if shell.endswith("bash") else [shell, "-i"]
    readonly: list[Path] = []
    extra = {"TERM": "tmux-256color", "PS1": f"[run #{run.pk}] \\W\\$ ", "AUTOPILOT_RUN": str(run.pk)}
    if agent:
        agent_argv, readonly, agent_env = _agent_command(agent)
        extra.update(agent_env)
        command = f"{shlex.join(agent_argv)}; exec {shlex.join(shell_argv)}"
        argv = ["/bin/sh", "-c", command]
    else:
        argv = shell_argv
    writable = [Path(run.worktree_path).resolve(), home.resolve()]
    wrapped, label = sandbox_argv(argv, cwd=cwd, writable=writable, network=bool(agent), readonly=readonly)
    env = scrubbed_env(home, extra)
    if label != "unsandboxed":
        env["PATH"] = sandbox_path_variable([*sandbox_readonly_paths(), *readonly])
    return wrapped, label, env


def open_terminal(run: ExecutionRun, *, cwd: Path, agent: str = "", title: str = "") -> str:
    """Start the run's tmux server and session in `cwd`, recording; returns the sandbox label."""
    directory = socket_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    if is_live(run):
        raise Conflict(f"Run #{run.pk} already has a terminal (`autopilot session attach {run.pk}`).")
    kill_server(run)  # a stale socket from a crashed server
    home = run_home(run)
    argv, label, env = pane_argv(run, cwd=cwd, home=home, agent=agent)
    ready = f"{session_name(run)}-ready"
    gate = f'{shlex.quote(tmux_binary())} -S {shlex.quote(str(socket_path(run)))} wait-for {ready}; exec "$@"'
    cast = recording_path(run)
    cast.parent.mkdir(parents=True, exist_ok=True)
    recorder = shlex.join(
        [sys.executable, "-I", str(RECORDER), str(cast), str(WIDTH), str(HEIGHT), title or f"run #{run.pk}"]
    )
    new_session = [
        tmux_binary(),
        "-S",
        str(socket_path(run)),
        "-f",
        "/dev/null",
        "new-session",
        "-d",
        "-s",
        session_name(run),
        "-x",
        str(WIDTH),
        "-y",
        str(HEIGHT),
        "-c",
        str(cwd),
        "/bin/sh",
        "-c",
        gate,
        "sh",
        *argv,
    ]
    try:
        result = subprocess.run(new_session, capture_output=True, env=env, cwd=str(cwd), timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TerminalError(f"could not start tmux: {exc}") from exc
    if result.returncode != 0:
        raise TerminalError(f"could not start tmux: {result.stderr.decode(errors='replace').strip()}")
    try:
        _tmux(run, "set-option", "-t", session_name(run), "history-limit", "10000")
        _tmux(run, "pipe-pane", "-o", "-t", session_name(run), recorder)
        _tmux(run, "wait-for", "-S", ready)
    except TerminalError:
        kill_server(run)
        raise
    return label


# --- Starting and ending an interactive session ---------------------------------------------------


def open_sessions() -> Q:
    return Q(kind=RunKind.INTERACTIVE, status__in=ExecutionRun.OPEN)


def _check_limits(*, project, actor) -> None:
    per_project = int(settings.AUTOPILOT_INTERACTIVE_MAX_PER_PROJECT)
    per_user = int(settings.AUTOPILOT_INTERACTIVE_MAX_PER_USER)
    open_runs = ExecutionRun.objects.filter(open_sessions())
    in_project = open_runs.filter(project=project).count()
    if in_project >= per_project:
        raise CapacityExceeded(
            f"Project '{project.name}' already has {in_project} open interactive session(s), the most "
            f"allowed (AUTOPILOT_INTERACTIVE_MAX_PER_PROJECT={per_project}); stop one first."
        )
    if actor is not None and getattr(actor, "is_authenticated", False):
        mine = open_runs.filter(created_by=actor).count()
        if mine >= per_user:
            raise CapacityExceeded(
                f"You already have {mine} open interactive session(s), the most allowed "
                f"(AUTOPILOT_INTERACTIVE_MAX_PER_USER={per_user}); stop one first."
            )


def start(*, task, actor=None, agent: str | None = None, model: str | None = None) -> ExecutionRun:
    """Open an interactive session on a task: a run of kind interactive, its worktree on its own
    branch, a recorded tmux session in it (with `agent`: that agent CLI's own TUI first). The caller
    checked the actor's role (operator)."""
    project = task.project
    agent = (agent or "").strip()
    if agent and agent not in AGENTS:
        raise ApplicationError(
            f"--agent: an interactive session can launch {' or '.join(AGENTS)}, not '{agent}'."
        )
    if agent:
        ready, missing = backend_status(agent, model)
        if not ready:
            raise ApplicationError(f"{backend_label(agent)} cannot run here: {missing}.")
    if not shutil.which(tmux_binary()):
        raise ApplicationError("Interactive sessions need tmux, which is not installed here.")
    with transaction.atomic():
        locks_project(project)
        _check_limits(project=project, actor=actor)
        run = services.run_create(
            project=project,
            prompt=f"Interactive session on task #{task.pk}: {task.title}",
            task=task,
            agent_backend=agent or AgentBackend.SCRIPTED,
            model=model if agent else "interactive",
            actor=actor,
            enqueue=False,
            kind=RunKind.INTERACTIVE,
            run_settings={"agent": agent} if agent else {},
        )
        transition(run, Status.PREPARING, actor=actor, reason="interactive session opening")
    try:
        ws = workspace.create(run)
        ExecutionRun.objects.filter(pk=run.pk).update(
            worktree_path=str(ws.path), branch=ws.branch, base_commit=ws.base_commit
        )
        run.worktree_path, run.branch, run.base_commit = str(ws.path), ws.branch, ws.base_commit
        with _run_lock(run.pk):
            # a new run: nothing on its socket nor in its recording can be its own (a database restored
            # from a backup, or a test database, hands out a run id again)
            kill_server(run)
            recording_path(run).unlink(missing_ok=True)
            label = open_terminal(run, cwd=ws.cwd, agent=agent, title=f"run #{run.pk}: {task.title}")
    except (ApplicationError, workspace.WorkspaceError, OSError) as exc:
        kill_server(run)
        with transaction.atomic():
            locked = locks.lock_run(run.pk)
            reason = f"the interactive session could not start: {exc}"
            if not locked.is_terminal:
                transition(locked, Status.FAILED, actor=actor, reason=reason, fields=_end_fields(reason))
                lifecycle.publish_run_finished(run.pk)
        raise ApplicationError(f"Could not start the interactive session: {exc}") from exc
    with transaction.atomic():
        locked = locks.lock_run(run.pk)
        transition(
            locked,
            Status.RUNNING,
            actor=actor,
            reason="interactive session open",
            fields={"started_at": timezone.now(), "status_reason": ""},
            event_data={"sandbox": label, "agent": agent},
        )
        lifecycle.publish_run_started(run.pk)
    run.refresh_from_db()
    return run


def _fail_unopened(run: ExecutionRun) -> None:
    reason = "the interactive session never opened (the process opening it ended)"
    with transaction.atomic():
        locked = locks.lock_run(run.pk)
        if locked.status == Status.PREPARING:
            transition(locked, Status.FAILED, reason=reason, fields=_end_fields(reason))
            lifecycle.publish_run_finished(locked.pk)


def locks_project(project) -> None:
    """Serialize the limit check and the insert of sessions of one project (two starts at once)."""
    type(project).objects.select_for_update().filter(pk=project.pk).first()


def _end_fields(reason: str) -> dict:
    return {"status_reason": reason, "ended_at": timezone.now()}


def _diff(path: Path | str, base: str, head: str) -> str:
    text = workspace.git(path, "diff", "--no-color", "--no-renames", base, head, check=False)
    if len(text) > DIFF_CAP:
        text = text[:DIFF_CAP] + f"\n[diff truncated: {len(text):,} characters]"
    return text


def finish(run: ExecutionRun, *, actor=None, reason: str = "") -> ExecutionRun:
    """End an interactive session: close its terminal, commit what changed on the run's branch (a
    commit step with its diff) and end the run (succeeded; cancelled when nothing changed). Ending a
    session that already ended is a Conflict."""
    if run.kind != RunKind.INTERACTIVE:
        raise Conflict(f"Run #{run.pk} is not an interactive session.")
    who = services._who(actor)
    reason = reason or f"ended by {who}"
    with _run_lock(run.pk):
        current = ExecutionRun.objects.select_related("project", "task").get(pk=run.pk)
        if current.is_terminal:
            raise Conflict(f"Run #{current.pk} already ended ({current.status}).")
        kill_server(current)
        head, summary, diff = "", {"files": [], "added": 0, "removed": 0}, ""
        if current.worktree_path and workspace.is_worktree(current.worktree_path):
            path = Path(current.worktree_path)
            head = workspace.commit_all(path, workspace.commit_message(current)) or workspace.git(
                path, "rev-parse", "HEAD"
            )
            summary = workspace.diff_summary(path, current.base_commit, head)
            diff = _diff(path, current.base_commit, head) if head != current.base_commit else ""
        redactor = Redactor.for_project(current.project, current.worktree_path or None)
        with transaction.atomic():
            locked = locks.lock_run(current.pk)
            if locked.is_terminal:
                raise Conflict(f"Run #{locked.pk} already ended ({locked.status}).")
            if head and head != current.base_commit:
                create_step(
                    run=locked,
                    kind=ExecutionStep.Kind.COMMIT,
                    redactor=redactor,
                    artifacts_dir=recording_path(locked).parent,
                    tool_name="git commit",
                    input={"branch": current.branch, "message": workspace.commit_message(current)},
                    status=StepStatus.COMPLETED,
                    output=(
                        f"{head[:12]} on {current.branch}: {len(summary['files'])} file(s), "
                        f"+{summary['added']} -{summary['removed']}"
                    ),
                    diff=diff,
                    actor=actor,
                )
                status = Status.SUCCEEDED
            else:
                status = Status.CANCELLED
                reason += " (nothing changed)"
            fields = _end_fields(redactor(reason))
            if head:
                fields.update(head_commit=head, diff_summary=summary)
            transition(locked, status, actor=actor, reason=fields["status_reason"], fields=fields)
            lifecycle.publish_run_finished(locked.pk)
    current.refresh_from_db()
    return current


def stop(run: ExecutionRun, *, actor=None) -> ExecutionRun:
    """`session stop`: end an interactive session (see finish), or ask an autonomous run to stop."""
    if run.kind == RunKind.INTERACTIVE:
        return finish(run, actor=actor, reason=f"stopped by {services._who(actor)}")
    return services.run_stop(run=run, actor=actor, reason="stopped from the command line")


# --- Recording ------------------------------------------------------------------------------------


def recording_events(run: ExecutionRun) -> list:
    """The run's recording as [header, event, …], every text redacted (what may be served)."""
    path = recording_path(run)
    if not path.exists():
        return []
    redactor = Redactor.for_project(run.project, run.worktree_path or None)
    out: list = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed recorder
        if not out:
            if not isinstance(item, dict):
                return []
            out.append(redactor.data(item))
        elif isinstance(item, list) and len(item) == 3 and isinstance(item[2], str):
            out.append([item[0], item[1], redactor(item[2])])
    return out


def recording_text(run: ExecutionRun) -> str:
    """The redacted recording as an asciicast v2 file's text ("" when there is none)."""
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in recording_events(run))


# --- The sweep ------------------------------------------------------------------------------------


def idle_seconds() -> int:
    return int(settings.AUTOPILOT_INTERACTIVE_IDLE_SECONDS)


def _takeover_waiting(run_id: int) -> bool:
    return ExecutionStep.objects.filter(
        run_id=run_id, kind=ExecutionStep.Kind.APPROVAL, tool_name=TAKEOVER, status=StepStatus.NEEDS_APPROVAL
    ).exists()


def sweep(*, now: float | None = None) -> dict:
    """End interactive sessions that were asked to stop, whose shell exited, or that were idle longer
    than AUTOPILOT_INTERACTIVE_IDLE_SECONDS; hand back take-overs idle that long; kill tmux servers
    whose run is unknown, finished, or no longer taken over (a server killed mid-session leaves its
    socket and maybe its tmux behind: this is the recovery). Returns what it did."""
    now = time.time() if now is None else now
    ended: list[int] = []
    handed_back: list[int] = []
    for run in ExecutionRun.objects.filter(kind=RunKind.INTERACTIVE, status__in=ExecutionRun.ACTIVE):
        if run.status == Status.PREPARING:
            # still opening (start() moves it on or fails it) — unless the process that opened it died
            if now - run.created_at.timestamp() > int(settings.AUTOPILOT_LEASE_SECONDS) and not is_live(run):
                _fail_unopened(run)
                ended.append(run.pk)
            continue
        activity = last_activity(run)
        if run.stop_requested_at:
            why = run.status_reason or "stopped by request"
        elif activity is None:
            why = "the terminal's shell exited"
        elif now - activity > idle_seconds():
            why = f"closed after {idle_seconds()}s without activity"
        else:
            continue
        with contextlib.suppress(Conflict):
            finish(run, reason=why)
            ended.append(run.pk)
    for step in ExecutionStep.objects.filter(
        kind=ExecutionStep.Kind.APPROVAL, tool_name=TAKEOVER, status=StepStatus.NEEDS_APPROVAL
    ).select_related("run"):
        activity = last_activity(step.run)
        if activity is None:  # paused, and nobody opened its terminal yet (a take-over from the API)
            with contextlib.suppress(ApplicationError, workspace.WorkspaceError):
                open_takeover(step.run)
        elif now - activity > idle_seconds():
            with contextlib.suppress(ApplicationError):
                handback(step.run, note=f"(the terminal closed after {idle_seconds()}s without activity)")
                handed_back.append(step.run_id)
    killed = []
    directory = socket_dir()
    if directory.is_dir():
        for entry in sorted(directory.iterdir()):
            match = SOCKET_NAME.match(entry.name)
            if not match:
                continue
            run_id = int(match.group(1))
            row = ExecutionRun.objects.filter(pk=run_id).values("status", "kind").first()
            wanted = row is not None and row["status"] in ExecutionRun.ACTIVE
            if wanted and row["kind"] == RunKind.AUTONOMOUS:
                wanted = _takeover_waiting(run_id)
            if wanted:
                continue
            with _run_lock(run_id):
                if is_live(run_id):
                    killed.append(run_id)
                kill_server(run_id)
            with contextlib.suppress(FileNotFoundError):
                (directory / f"run-{run_id}.lock").unlink()
    return {"ended": ended, "handed_back": handed_back, "orphans_killed": killed}


# --- Take-over and hand-back of an autonomous run -------------------------------------------------


def _takeover_step(run: ExecutionRun, statuses) -> ExecutionStep | None:
    return (
        ExecutionStep.objects.filter(
            run_id=run.pk, kind=ExecutionStep.Kind.APPROVAL, tool_name=TAKEOVER, status__in=list(statuses)
        )
        .order_by("-seq")
        .first()
    )


def worktree_tree(path: Path | str) -> str:
    """A tree object of the worktree's files as they are now (untracked included, .gitignore'd not),
    written without touching the worktree's index: what handback compares against."""
    with tempfile.TemporaryDirectory() as scratch:
        env = {**workspace.git_env(), "GIT_INDEX_FILE": str(Path(scratch) / "index")}
        for args in (["add", "-A"], ["write-tree"]):
            result = subprocess.run(
                ["git", *workspace.GIT_IDENTITY, *args],
                cwd=str(path),
                capture_output=True,
                env=env,
                timeout=60,
            )
            if result.returncode != 0:
                words = result.stderr.decode(errors="replace").strip()
                raise workspace.WorkspaceError(f"git {' '.join(args)} failed: {words}")
        return result.stdout.decode().strip()


def takeover(run: ExecutionRun, *, actor=None) -> ExecutionStep:
    """Ask an autonomous run to pause at its next step boundary for a human (the worker waits on a
    `takeover` approval step). The terminal opens once it paused: `open_takeover(run)`."""
    if run.kind != RunKind.AUTONOMOUS:
        raise Conflict(f"Run #{run.pk} is an interactive session already; attach to it instead.")
    with transaction.atomic():
        locked = locks.lock_run(run.pk)
        if locked.status not in ExecutionRun.ACTIVE:
            raise Conflict(f"Run #{locked.pk} is {locked.status}; only a running agent can be taken over.")
        if locked.stop_requested_at:
            raise Conflict(f"Run #{locked.pk} is stopping; it cannot be taken over.")
        existing = _takeover_step(locked, (StepStatus.PENDING, StepStatus.NEEDS_APPROVAL))
        if existing is not None:
            raise Conflict(f"Run #{locked.pk} is already taken over (step {existing.seq}).")
        if not locked.worktree_path:
            raise Conflict(f"Run #{locked.pk} has no worktree yet; try again in a moment.")
        step = create_step(
            run=locked,
            kind=ExecutionStep.Kind.APPROVAL,
            redactor=Redactor(),
            artifacts_dir=None,
            tool_name=TAKEOVER,
            input={"by": services._who(actor)},
            status=StepStatus.PENDING,
            risk_reason=f"taken over by {services._who(actor)}",
            actor=actor,
        )
        record_event(kind="executionrun.takeover", subject=locked, actor=actor, data={"step": step.pk})
    return step


def taken_over(run: ExecutionRun) -> bool:
    """Is the run taken over by a human (asked to pause, or paused) and not handed back yet?"""
    return _takeover_step(run, (StepStatus.PENDING, StepStatus.NEEDS_APPROVAL)) is not None


def paused(run: ExecutionRun) -> bool:
    return _takeover_waiting(run.pk)


def open_takeover(run: ExecutionRun) -> bool:
    """Open the taken-over run's worktree in its terminal once the worker paused (idempotent).
    Returns True when the terminal is live."""
    step = _takeover_step(run, (StepStatus.NEEDS_APPROVAL,))
    if step is None:
        return False
    with _run_lock(run.pk):
        if is_live(run):
            return True
        current = ExecutionRun.objects.select_related("project").get(pk=run.pk)
        if not (step.input or {}).get("tree"):
            earlier = ExecutionStep.objects.filter(
                run_id=run.pk, kind=ExecutionStep.Kind.APPROVAL, tool_name=TAKEOVER, seq__lt=step.seq
            )
            if not earlier.exists():  # the run's first terminal: a fresh recording
                recording_path(current).unlink(missing_ok=True)
            tree = worktree_tree(current.worktree_path)
            ExecutionStep.objects.filter(pk=step.pk).update(input={**(step.input or {}), "tree": tree})
        cwd = Path(current.worktree_path)
        if current.project.subdirectory:
            cwd = cwd / current.project.subdirectory
        open_terminal(current, cwd=cwd, title=f"run #{current.pk} (taken over)")
    return True


def wait_paused(run: ExecutionRun, *, timeout: float, poll: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if paused(run):
            return True
        status = ExecutionRun.objects.values_list("status", flat=True).get(pk=run.pk)
        if status in ExecutionRun.TERMINAL or time.monotonic() > deadline:
            return False
        time.sleep(poll)


def human_changes(path: Path | str, before: str, after: str) -> list[dict]:
    """[{path, added, removed, diff, before: snapshot}] of the files that differ between two trees."""
    out = []
    numstat = workspace.git(path, "diff", "--numstat", "--no-renames", before, after)
    for line in numstat.splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        name = parts[2]
        diff = workspace.git(path, "diff", "--no-color", "--no-renames", before, after, "--", name)
        blob = subprocess.run(
            ["git", "cat-file", "blob", f"{before}:{name}"],
            cwd=str(path),
            capture_output=True,
            env=workspace.git_env(),
            timeout=60,
        )
        if blob.returncode == 0:
            snapshot = {"before_b64": base64.b64encode(blob.stdout).decode(), "absent": False}
        else:
            snapshot = {"before_b64": None, "absent": True}
        out.append(
            {
                "path": name,
                "added": int(parts[0]) if parts[0].isdigit() else 0,
                "removed": int(parts[1]) if parts[1].isdigit() else 0,
                "diff": diff[:DIFF_CAP],
                "before": snapshot,
            }
        )
    return out


def handback(run: ExecutionRun, *, note: str = "", actor=None) -> dict:
    """Give a taken-over run back to its agent: close the terminal, record each file the human
    changed as a step (its diff; the bytes before, so step rollback restores them), send the agent the
    note plus what changed (files and diff stat) as a message, and release the pause."""
    step = _takeover_step(run, (StepStatus.PENDING, StepStatus.NEEDS_APPROVAL))
    if step is None:
        raise Conflict(f"Run #{run.pk} is not taken over.")
    note = (note or "").strip()
    check_length(note, "note", MAX_MESSAGE_CHARS)
    with _run_lock(run.pk):
        kill_server(run)
        current = ExecutionRun.objects.select_related("project").get(pk=run.pk)
        step.refresh_from_db()
        before = (step.input or {}).get("tree")
        changes: list[dict] = []
        if before and current.worktree_path and workspace.is_worktree(current.worktree_path):
            after = worktree_tree(current.worktree_path)
            changes = human_changes(current.worktree_path, before, after)
        redactor = Redactor.for_project(current.project, current.worktree_path or None)
        who = services._who(actor)
        for change in changes:
            create_step(
                run=current,
                kind=ExecutionStep.Kind.EDIT_FILE,
                redactor=redactor,
                artifacts_dir=recording_path(current).parent,
                tool_name="human_edit",
                input={"path": change["path"], "by": who},
                status=StepStatus.COMPLETED,
                output=f"changed by {who} in the terminal: +{change['added']} -{change['removed']}",
                diff=change["diff"],
                rollback={"path": change["path"], **change["before"]},
                actor=actor,
            )
    added = sum(c["added"] for c in changes)
    removed = sum(c["removed"] for c in changes)
    if changes:
        listing = "\n".join(f"- {c['path']} (+{c['added']} -{c['removed']})" for c in changes)
        summary = f"{len(changes)} file(s) changed, +{added} -{removed}:\n{listing}"
    else:
        summary = "no files changed"
    body = (
        f"A human ({who}) took over your work and handed it back.\n"
        f"Note: {note or '(none)'}\nWhat they changed in the worktree: {summary}"
    )
    services.run_message(run=run, body=body, actor=actor)
    if step.status == StepStatus.NEEDS_APPROVAL:
        services.run_approve(step=step, actor=actor, note=note or "handed back")
    else:  # never paused (handed back before the worker reached a step boundary)
        with transaction.atomic():
            locked_run, locked = locks.lock_step(step.pk)
            if locked.status == StepStatus.PENDING:
                transition(locked, StepStatus.SKIPPED, actor=actor, reason="handed back before it paused")
    return {
        "run": run.pk,
        "files": [{"path": c["path"], "added": c["added"], "removed": c["removed"]} for c in changes],
        "added": added,
        "removed": removed,
        "message": body,
    }
