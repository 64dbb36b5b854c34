"""Guarded tools: path confinement, command policy, risk classification and guarded execution.

Used by the native backend's tools and, through RunContext.authorize(), by the Claude Code
permission callback and the Codex backend, so every backend obeys the same rules (DESIGN.md §4).

Paths
    Resolved against the confinement root (the worktree, or its monorepo subdirectory) with symlinks
    followed; anything that resolves outside is refused, as are NUL bytes and anything inside `.git`.

Commands
    Parsed with shlex and executed WITHOUT a shell unless project.allow_shell. Without a shell, shell
    syntax is refused outright rather than passed along as text: operators (; && || | & > < >>),
    command substitution ($(...) and backticks), variable expansion ($VAR, ${VAR}), and leading
    VAR=value assignments. The program must be a bare name (no path).

    A command is *risky* (approval in semi_auto, refused in full_auto) unless its program is in the
    safe default set or the project's command_allowlist (entries are a program, or a program plus a
    subcommand such as "git push"), and it is always risky when it is a network tool, deletes files,
    pushes, or escalates (sudo, su). SAFE_PROGRAMS is the documented default set: read-only file and
    text tools, python/pytest, and read-only git subcommands (GIT_SAFE_SUBCOMMANDS).

Execution
    A scrubbed environment (PATH, HOME=<private dir>, LANG, LC_ALL, TMPDIR + explicit vars; nothing
    inherited), a timeout that kills the whole process group, an output cap (full output written to
    an artifact file under settings.AUTOPILOT_ARTIFACT_ROOT), and bubblewrap when `bwrap` is installed:
    the whole filesystem read-only, the worktree and the private HOME writable, a fresh /tmp, no
    network (--unshare-net), its own PID namespace. Without bwrap the result says "unsandboxed".
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from runs import agent_mcp
from runs.backends.base import CommandResult, GuardRefused, Verdict

SAFE_PROGRAMS = frozenset(
    {
        "ls", "cat", "head", "tail", "wc", "grep", "rg", "find", "pwd", "echo", "printf", "diff", "sort",
        "uniq", "cut", "tr", "stat", "file", "tree", "true", "false", "test", "mkdir", "touch", "basename",
        "dirname", "realpath", "python", "python3", "pytest", "git",
    }
)
GIT_SAFE_SUBCOMMANDS = frozenset(
    {"status", "diff", "log", "show", "rev-parse", "ls-files", "blame", "grep", "branch", "shortlog", "describe"}
)
NETWORK_PROGRAMS = frozenset(
    {"curl", "wget", "ssh", "scp", "sftp", "nc", "ncat", "netcat", "telnet", "ftp", "rsync", "socat", "http",
     "https", "aria2c", "nmap", "dig", "nslookup", "ping"}
)
DELETE_PROGRAMS = frozenset({"rm", "rmdir", "shred", "unlink"})
ESCALATION_PROGRAMS = frozenset({"sudo", "su", "doas", "chroot", "nsenter", "env", "xargs", "nohup", "setsid"})
SHELLS = frozenset({"sh", "bash", "zsh", "dash", "fish", "ksh", "csh", "tcsh"})
SHELL_OPERATORS = frozenset({";", "&&", "||", "|", "&", ">", "<", ">>", "<<", ";;", "|&", ">&", "<&", "(", ")"})
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
EXPANSION = re.compile(r"\$[A-Za-z_{(]|`")

DEFAULT_TIMEOUT = 120.0
DEFAULT_OUTPUT_CAP = 20_000


def bwrap_path() -> str | None:
    if getattr(settings, "AUTOPILOT_SANDBOX", "auto") == "off":
        return None
    return shutil.which("bwrap")


# --- Paths ----------------------------------------------------------------------------------------


def confine(root: Path | str, path: str | os.PathLike, *, write: bool = False) -> Path:
    """Resolve `path` (relative to `root`, or absolute) and refuse anything outside `root`.

    Symlinks are followed (a link pointing out is an escape); `.git` is off limits; NUL bytes refused.
    """
    root = Path(root).resolve()
    text = os.fspath(path)
    if not text:
        raise GuardRefused("Empty path.")
    if "\x00" in text:
        raise GuardRefused("Path contains a NUL byte.")
    candidate = Path(text).expanduser() if text.startswith("~") else Path(text)
    if text.startswith("~"):
        raise GuardRefused(f"Path '{text}' points outside the workspace (home directory).")
    joined = candidate if candidate.is_absolute() else root / candidate
    resolved = joined.resolve()
    if resolved != root and not resolved.is_relative_to(root):
        raise GuardRefused(f"Path '{text}' resolves outside the workspace ({resolved}); refused.")
    rel = resolved.relative_to(root)
    if rel.parts and rel.parts[0] == ".git":
        raise GuardRefused(f"Path '{text}' is inside .git; refused.")
    if write and joined.is_symlink():
        # Writing through a link replaces the target; the target was checked above, but a dangling
        # link could later be re-pointed. Refuse to write through links at all.
        raise GuardRefused(f"Path '{text}' is a symbolic link; writing through links is refused.")
    return resolved


# --- Commands -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCommand:
    argv: list[str]
    shell: bool
    text: str


def parse_command(command: str | Sequence[str], *, allow_shell: bool) -> ParsedCommand:
    """Split a command. Without a shell, refuse every piece of shell syntax (GuardRefused)."""
    if isinstance(command, (list, tuple)):
        argv = [str(a) for a in command]
        text = shlex.join(argv)
        if not argv:
            raise GuardRefused("Empty command.")
        if "\x00" in text:
            raise GuardRefused("Command contains a NUL byte.")
        return ParsedCommand(argv=argv, shell=False, text=text)
    text = str(command or "").strip()
    if not text:
        raise GuardRefused("Empty command.")
    if "\x00" in text:
        raise GuardRefused("Command contains a NUL byte.")
    if "\n" in text and not allow_shell:
        raise GuardRefused("Multi-line commands need a shell, and this project does not allow one.")
    if allow_shell:
        try:
            argv = shlex.split(text)
        except ValueError as exc:
            raise GuardRefused(f"Could not parse the command: {exc}.") from exc
        return ParsedCommand(argv=argv or [text], shell=True, text=text)
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise GuardRefused(f"Could not parse the command: {exc}.") from exc
    for token in tokens:
        if token in SHELL_OPERATORS or (token and set(token) <= set(";&|<>()")):
            raise GuardRefused(
                f"Shell operator '{token}' refused: commands run without a shell (project.allow_shell is off)."
            )
    # Expansion is checked on the raw text outside single quotes: "$(x)" and `x` and $VAR.
    if EXPANSION.search(_outside_single_quotes(text)):
        raise GuardRefused(
            "Command substitution or variable expansion ($(...), `...`, $VAR) refused: commands run without a shell."
        )
    argv = shlex.split(text)
    if not argv:
        raise GuardRefused("Empty command.")
    if ASSIGNMENT.match(argv[0]):
        raise GuardRefused(f"Environment assignment '{argv[0]}' before the command refused.")
    return ParsedCommand(argv=argv, shell=False, text=text)


def _outside_single_quotes(text: str) -> str:
    out, quoted = [], False
    for ch in text:
        if ch == "'":
            quoted = not quoted
            continue
        if not quoted:
            out.append(ch)
    return "".join(out)


def _allowlisted(argv: list[str], allowlist: Sequence[str]) -> bool:
    for entry in allowlist or ():
        words = shlex.split(entry) if isinstance(entry, str) else list(entry)
        if words and argv[: len(words)] == words:
            return True
    return False


def classify_command(argv: list[str], *, allowlist: Sequence[str] = (), shell: bool = False) -> tuple[bool, str]:
    """(risky, reason) for a parsed command. An explicit allowlist entry makes it not risky."""
    if not argv:
        return True, "empty command"
    program = argv[0]
    name = os.path.basename(program)
    if _allowlisted(argv, allowlist):
        return False, ""
    if "/" in program:
        return True, f"program given by path ({program}) is not allowlisted"
    if name in NETWORK_PROGRAMS:
        return True, f"network tool '{name}'"
    if name in DELETE_PROGRAMS:
        return True, f"'{name}' deletes files"
    if name in ESCALATION_PROGRAMS:
        return True, f"'{name}' runs other programs or escalates privileges"
    if name in SHELLS:
        return True, f"'{name}' starts a shell"
    if name == "git":
        sub = next((a for a in argv[1:] if not a.startswith("-")), "")
        if sub == "push":
            return True, "git push"
        if sub in {"rm", "clean"}:
            return True, f"git {sub} deletes files"
        if sub not in GIT_SAFE_SUBCOMMANDS:
            return True, f"git {sub or '(no subcommand)'} is not a read-only git command"
        if any(a.startswith("--exec") or a.startswith("-c") for a in argv[1:]):
            return True, "git with configuration overrides"
        return False, ""
    if name == "find" and any(a in {"-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint"} for a in argv[1:]):
        return True, "find with -delete/-exec"
    if name not in SAFE_PROGRAMS:
        return True, f"'{name}' is not in the allowlist"
    if shell:
        return True, "runs through a shell"
    return False, ""


# --- The policy for one run -----------------------------------------------------------------------

READ_TOOLS = {"read_file", "Read", "NotebookRead", "list_dir", "LS", "Glob", "Grep", "search", "read"}
WRITE_TOOLS = {"write_file", "edit_file", "Write", "Edit", "MultiEdit", "NotebookEdit", "write", "edit", "apply_patch"}
COMMAND_TOOLS = {"run_terminal", "Bash", "exec_command", "shell", "local_shell", "BashOutput"}
NETWORK_TOOLS = {"WebFetch", "WebSearch", "web_search", "fetch"}
HARMLESS_TOOLS = {"finish", "TodoWrite", "Task", "ExitPlanMode", "KillShell", "KillBash"}
PATH_KEYS = ("path", "file_path", "notebook_path", "dir", "directory")


@dataclass
class Policy:
    """The guard rules of one run. `root` is the confinement root (worktree or its subdirectory)."""

    root: Path
    autonomy_mode: str = "semi_auto"
    allow_shell: bool = False
    allowlist: tuple[str, ...] = ()
    write_scope: tuple[str, ...] = ()
    allow_risky: bool = False

    @classmethod
    def for_run(cls, *, project, run, root: Path) -> Policy:
        run_settings = run.settings or {}
        return cls(
            root=Path(root).resolve(),
            autonomy_mode=run.autonomy_mode or project.autonomy_mode,
            allow_shell=project.allow_shell,
            allowlist=tuple(project.command_allowlist or ()),
            write_scope=tuple(run_settings.get("write_scope") or ()),
            allow_risky=bool(run_settings.get("allow_risky", False)),
        )

    def path(self, path: str, *, write: bool = False) -> Path:
        return confine(self.root, path, write=write)

    def _write_risk(self, resolved: Path) -> str:
        rel = resolved.relative_to(self.root).as_posix() if resolved != self.root else "."
        if self.write_scope and not any(fnmatch.fnmatch(rel, pattern) for pattern in self.write_scope):
            return f"write to '{rel}' is outside the task's scope ({', '.join(self.write_scope)})"
        name = resolved.name
        if name == ".env" or name.startswith(".env."):
            return f"write to secrets file '{rel}'"
        return ""

    def _decide(self, risky_reason: str) -> Verdict:
        if not risky_reason:
            return Verdict("allow")
        if self.allow_risky:
            return Verdict("allow", risky_reason, risky=True)
        if self.autonomy_mode == "full_auto":
            return Verdict("deny", f"Refused in full_auto: {risky_reason}.", risky=True)
        return Verdict("ask", f"Needs approval: {risky_reason}.", risky=True)

    def command(self, command: str | Sequence[str]) -> tuple[Verdict, ParsedCommand | None]:
        try:
            parsed = parse_command(command, allow_shell=self.allow_shell)
        except GuardRefused as exc:
            return Verdict("deny", str(exc), risky=True), None
        risky, reason = classify_command(parsed.argv, allowlist=self.allowlist, shell=parsed.shell)
        return self._decide(reason if risky else ""), parsed

    def authorize(self, tool_name: str, tool_input: dict[str, Any]) -> Verdict:
        """Verdict for one tool call of any backend (native or CLI tool names)."""
        tool_input = tool_input or {}
        if tool_name in HARMLESS_TOOLS or tool_name.startswith(agent_mcp.TOOL_PREFIX):
            return Verdict("allow")  # (Autopilot's own MCP tools act only within the run's project)
        if tool_name in NETWORK_TOOLS:
            return self._decide(f"network access ({tool_name})")
        if tool_name in COMMAND_TOOLS:
            command = tool_input.get("command", tool_input.get("cmd", ""))
            if tool_name == "BashOutput":
                return Verdict("allow")
            verdict, _ = self.command(command)
            return verdict
        paths = [tool_input[k] for k in PATH_KEYS if isinstance(tool_input.get(k), str) and tool_input.get(k)]
        if tool_name in READ_TOOLS:
            for p in paths:
                try:
                    self.path(p)
                except GuardRefused as exc:
                    return Verdict("deny", str(exc), risky=True)
            return Verdict("allow")
        if tool_name in WRITE_TOOLS:
            if not paths and tool_name != "apply_patch":
                return Verdict("deny", f"{tool_name} without a path.", risky=True)
            for p in paths:
                try:
                    resolved = self.path(p, write=True)
                except GuardRefused as exc:
                    return Verdict("deny", str(exc), risky=True)
                reason = self._write_risk(resolved)
                if reason:
                    return self._decide(reason)
            return Verdict("allow")
        if tool_name in {"delete_file", "remove"}:
            return self._decide("deletes a file")
        return self._decide(f"unknown tool '{tool_name}'")


# --- Execution ------------------------------------------------------------------------------------


def scrubbed_env(home: Path | str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The only environment a child process gets: no inherited secrets."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": os.environ.get("LANG", "C.UTF-8") or "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": "/tmp",
        "GIT_TERMINAL_PROMPT": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra or {})
    return env


def sandbox_argv(argv: list[str], *, cwd: Path, writable: Sequence[Path]) -> tuple[list[str], str]:
    """Wrap argv in bubblewrap when available: (argv, sandbox label)."""
    bwrap = bwrap_path()
    if not bwrap:
        return argv, "unsandboxed"
    wrapped = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for path in writable:
        wrapped += ["--bind", str(path), str(path)]
    wrapped += ["--unshare-net", "--unshare-pid", "--die-with-parent", "--new-session", "--chdir", str(cwd), "--"]
    return wrapped + argv, "bwrap (no network, read-only outside the worktree)"


def kill_group(pid: int, sig: int = signal.SIGKILL) -> bool:
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False


def execute(
    parsed: ParsedCommand,
    *,
    cwd: Path,
    home: Path,
    writable: Sequence[Path],
    env_extra: dict[str, str] | None = None,
    timeout: float | None = None,
    output_cap: int | None = None,
    artifact_dir: Path | None = None,
    redact=None,
    on_start=None,
    on_exit=None,
) -> CommandResult:
    """Run a parsed command: scrubbed env, sandbox, timeout (kills the process group), output cap."""
    timeout = timeout or getattr(settings, "AUTOPILOT_COMMAND_TIMEOUT", DEFAULT_TIMEOUT)
    cap = output_cap or getattr(settings, "AUTOPILOT_STEP_OUTPUT_CAP", DEFAULT_OUTPUT_CAP)
    argv = ["/bin/sh", "-c", parsed.text] if parsed.shell else list(parsed.argv)
    argv, sandbox = sandbox_argv(argv, cwd=cwd, writable=writable)
    env = scrubbed_env(home, env_extra)
    try:
        proc = subprocess.Popen(
            argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError:
        return CommandResult(exit_code=127, output=f"{parsed.argv[0]}: command not found", sandbox=sandbox)
    if on_start:
        on_start(proc.pid)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc.pid)
        out, _ = proc.communicate()
    finally:
        if on_exit:
            on_exit(proc.pid)
    text = out.decode("utf-8", errors="replace")
    if redact:
        text = redact(text)
    if timed_out:
        text += f"\n[timed out after {timeout:g}s; process group killed]"
    truncated = len(text) > cap
    artifact = ""
    if truncated:
        if artifact_dir is not None:
            artifact_dir.mkdir(parents=True, exist_ok=True)
            path = artifact_dir / f"output-{int(time.time())}-{uuid.uuid4().hex[:8]}.txt"
            path.write_text(text)
            artifact = str(path)
        text = text[:cap] + f"\n[output truncated: {len(text)} characters; full output in the step's artifact]"
    return CommandResult(
        exit_code=None if timed_out else proc.returncode,
        output=text,
        truncated=truncated,
        timed_out=timed_out,
        artifact_path=artifact,
        sandbox=sandbox,
    )
