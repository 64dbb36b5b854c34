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

    Path arguments (command_paths): every argument that names a path -- absolute, `~`, anything with
    a `..` component, `--opt=/path` and `NAME=/path` values, a relative name that is a symlink out --
    is resolved against the confinement root. Outside the root it makes the command risky even when
    the program is allowlisted; inside Autopilot's own files (data directory, worktree and artifact
    roots, the server's checkout) it is refused outright in every mode, approved or not. A few
    harmless names (/dev/null, /dev/std*, and /tmp while the sandbox gives each command a private
    /tmp) are not "outside". This is a first gate on what the agent *asks* for; the sandbox below is
    the boundary for what a program can actually reach (`python3 -c "open('/etc/passwd')"` names no
    path argument, and still sees only the sandbox's view).

Execution
    A scrubbed environment (PATH, HOME=<private dir>, LANG, LC_ALL, TMPDIR + explicit vars; nothing
    inherited), a timeout that kills the whole process group, an output cap (full output written to
    an artifact file under settings.AUTOPILOT_ARTIFACT_ROOT), and bubblewrap when `bwrap` is installed
    (sandbox_argv): a minimal filesystem view on an empty root -- the system directories a toolchain
    needs read-only (/usr, /bin, /lib*, /sbin, /opt, a short list of /etc files, the Python
    interpreter in use and its prefix, settings.AUTOPILOT_SANDBOX_READONLY), the worktree and the
    run's private HOME read-write, a fresh /tmp, /dev and /proc; nothing of the data directory, other
    worktrees, the user's home or the server's checkout. Git works inside: the worktree's own admin
    directory (<repo>/.git/worktrees/<name>) is writable (index), the repository's common git dir is
    read-only with the other worktrees' admin directories hidden. So an agent can status/diff/log
    but cannot commit or move any ref (no branch, least of all the base branch, is written from the
    sandbox): the worker commits the run's changes on the run's branch when the run ends. No network
    (--unshare-net) unless the caller asks for it (the project's setup script with
    project.setup_network), its own PID/IPC namespaces. Without bwrap the result says "unsandboxed".
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
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
        "ls",
        "cat",
        "head",
        "tail",
        "wc",
        "grep",
        "rg",
        "find",
        "pwd",
        "echo",
        "printf",
        "diff",
        "sort",
        "uniq",
        "cut",
        "tr",
        "stat",
        "file",
        "tree",
        "true",
        "false",
        "test",
        "mkdir",
        "touch",
        "basename",
        "dirname",
        "realpath",
        "python",
        "python3",
        "pytest",
        "git",
    }
)
GIT_SAFE_SUBCOMMANDS = frozenset(
    {
        "status",
        "diff",
        "log",
        "show",
        "rev-parse",
        "ls-files",
        "blame",
        "grep",
        "branch",
        "shortlog",
        "describe",
    }
)
NETWORK_PROGRAMS = frozenset(
    {
        "curl",
        "wget",
        "ssh",
        "scp",
        "sftp",
        "nc",
        "ncat",
        "netcat",
        "telnet",
        "ftp",
        "rsync",
        "socat",
        "http",
        "https",
        "aria2c",
        "nmap",
        "dig",
        "nslookup",
        "ping",
    }
)
DELETE_PROGRAMS = frozenset({"rm", "rmdir", "shred", "unlink"})
ESCALATION_PROGRAMS = frozenset(
    {"sudo", "su", "doas", "chroot", "nsenter", "env", "xargs", "nohup", "setsid"}
)
SHELLS = frozenset({"sh", "bash", "zsh", "dash", "fish", "ksh", "csh", "tcsh"})
SHELL_OPERATORS = frozenset(
    {";", "&&", "||", "|", "&", ">", "<", ">>", "<<", ";;", "|&", ">&", "<&", "(", ")"}
)
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
                f"Shell operator '{token}' refused: "
                "commands run without a shell (project.allow_shell is off)."
            )
    # Expansion is checked on the raw text outside single quotes: "$(x)" and `x` and $VAR.
    if EXPANSION.search(_outside_single_quotes(text)):
        raise GuardRefused(
            "Command substitution or variable expansion ($(...), `...`, $VAR) refused: "
            "commands run without a shell."
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


GIT_BRANCH_LIST_OPTIONS = frozenset(
    {
        "-a",
        "--all",
        "-r",
        "--remotes",
        "-l",
        "--list",
        "-v",
        "-vv",
        "--verbose",
        "--show-current",
        "--no-color",
        "--color",
        "--column",
        "--no-column",
        "-q",
        "--quiet",
        "-i",
        "--ignore-case",
    }
)
GIT_BRANCH_LIST_PREFIXES = (
    "--contains",
    "--no-contains",
    "--merged",
    "--no-merged",
    "--points-at",
    "--sort=",
    "--format=",
    "--color=",
    "--column=",
    "--abbrev=",
)


def _git_branch_lists_only(argv: list[str]) -> bool:
    """`git branch` only lists branches: no positional argument (it would create one) unless
    --list is given, and no option that deletes, moves, copies, forces or sets upstreams."""
    args = argv[argv.index("branch") + 1 :]
    listing = any(a in {"-l", "--list"} for a in args)
    for arg in args:
        if arg.startswith("-"):
            if arg not in GIT_BRANCH_LIST_OPTIONS and not arg.startswith(GIT_BRANCH_LIST_PREFIXES):
                return False
        elif not listing:
            return False
    return True


def classify_command(
    argv: list[str], *, allowlist: Sequence[str] = (), shell: bool = False
) -> tuple[bool, str]:
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
        if sub == "branch" and not _git_branch_lists_only(argv):
            return True, "git branch that creates, moves or deletes a branch"
        return False, ""
    if name == "find" and any(
        a in {"-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint"} for a in argv[1:]
    ):
        return True, "find with -delete/-exec"
    if name not in SAFE_PROGRAMS:
        return True, f"'{name}' is not in the allowlist"
    if shell:
        return True, "runs through a shell"
    return False, ""


GREP_LIKE = frozenset({"grep", "egrep", "fgrep", "rg", "ag", "git"})
HARMLESS_PATHS = ("/dev/null", "/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/zero", "/dev/urandom")
TMP = Path("/tmp")
REDIRECT_PREFIX = re.compile(r"^\d*[<>]+&?")


def protected_roots() -> list[Path]:
    """Autopilot's own files: no command may name a path inside them (outside the run's worktree)."""
    roots = [
        getattr(settings, "DATA_DIR", None),
        getattr(settings, "AUTOPILOT_WORKTREE_ROOT", None),
        getattr(settings, "AUTOPILOT_ARTIFACT_ROOT", None),
        getattr(settings, "BASE_DIR", None),
    ]
    return _unique([Path(r).resolve() for r in roots if r])


def _unique(paths) -> list[Path]:
    seen: list[Path] = []
    for path in paths:
        if path not in seen:
            seen.append(path)
    return seen


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _pattern_index(argv: list[str]) -> int | None:
    """Index of the search pattern of grep-like commands (a pattern is text, not a path)."""
    name = os.path.basename(argv[0]) if argv else ""
    if name not in GREP_LIKE:
        return None
    options = {"-e", "--regexp", "-f", "--file"}
    if any(a in options or a.startswith(("--regexp=", "--file=")) for a in argv[1:]):
        return None
    positionals = [i for i, a in enumerate(argv) if i > 0 and not a.startswith("-")]
    if name == "git":
        if len(positionals) >= 2 and argv[positionals[0]] == "grep":
            return positionals[1]
        return None
    return positionals[0] if positionals else None


def _path_candidates(argv: list[str], *, shell: bool) -> list[str]:
    """The arguments of a command that may name a path (see the module docstring)."""
    pattern = _pattern_index(argv)
    grep_like = bool(argv) and os.path.basename(argv[0]) in GREP_LIKE
    candidates: list[str] = []
    after_dashdash = False
    for index, arg in enumerate(argv[1:], 1):
        if index == pattern or (grep_like and argv[index - 1] in {"-e", "--regexp"}):
            continue
        if shell:
            arg = REDIRECT_PREFIX.sub("", arg).rstrip(";&|")
        if not arg:
            continue
        if not after_dashdash and arg == "--":
            after_dashdash = True
            continue
        if not after_dashdash and arg.startswith("-"):
            if "=" in arg:
                candidates.append(arg.split("=", 1)[1])
            elif not arg.startswith("--") and len(arg) > 2 and arg[2] in "/~":
                candidates.append(arg[2:])
            continue
        if ASSIGNMENT.match(arg):
            candidates.append(arg.split("=", 1)[1])
            continue
        candidates.append(arg)
    return candidates


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "~")) or ".." in text.split("/")


def command_paths(
    argv: list[str], *, root: Path, shell: bool = False, sandboxed: bool | None = None
) -> tuple[str, str]:
    """("", "") when every path argument stays inside `root`; ("outside", reason) when one points
    outside it; ("protected", reason) when one points into Autopilot's own files (never allowed)."""
    root = Path(root).resolve()
    if sandboxed is None:
        sandboxed = bwrap_path() is not None
    protected = protected_roots()
    outside: list[str] = []
    for text in _path_candidates(argv, shell=shell):
        if "\x00" in text:
            return "protected", "an argument contains a NUL byte"
        if text.startswith("~"):
            outside.append(text)
            continue
        candidate = Path(text) if text.startswith("/") else root / text
        resolved = Path(os.path.abspath(candidate))
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError):
            pass
        if _inside(resolved, root):
            continue
        lexical = Path(os.path.normpath(candidate))
        if any(_inside(p, r) for p in (resolved, lexical) for r in protected):
            reason = f"'{text}' is inside Autopilot's own files ({resolved}); refused in every mode"
            return "protected", reason
        if text in HARMLESS_PATHS or str(resolved) in HARMLESS_PATHS:
            continue
        if sandboxed and _inside(lexical, TMP) and text.startswith("/") and _inside(resolved, TMP):
            continue  # the sandbox's /tmp is private to the command
        outside.append(text)
    if outside:
        shown = ", ".join(outside[:3]) + (" …" if len(outside) > 3 else "")
        return "outside", f"path argument outside the worktree ({shown})"
    return "", ""


# --- The policy for one run -----------------------------------------------------------------------

READ_TOOLS = {"read_file", "Read", "NotebookRead", "list_dir", "LS", "Glob", "Grep", "search", "read"}
WRITE_TOOLS = {
    "write_file",
    "edit_file",
    "Write",
    "Edit",
    "MultiEdit",
    "NotebookEdit",
    "write",
    "edit",
    "apply_patch",
}
COMMAND_TOOLS = {"run_terminal", "Bash", "exec_command", "shell", "local_shell", "BashOutput"}
NETWORK_TOOLS = {"WebFetch", "WebSearch", "web_search", "fetch"}
HARMLESS_TOOLS = {"finish", "TodoWrite", "Task", "ExitPlanMode", "KillShell", "KillBash"}
PATH_KEYS = ("path", "file_path", "notebook_path", "dir", "directory")
GLOB_KEYS = {"Glob": ("pattern",), "Grep": ("glob",)}


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
        where, path_reason = command_paths(parsed.argv, root=self.root, shell=parsed.shell)
        if where == "protected":
            return Verdict("deny", f"Refused: {path_reason}.", risky=True), parsed
        reasons = [r for r in ((reason if risky else ""), path_reason) if r]
        return self._decide("; ".join(reasons)), parsed

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
        for key in GLOB_KEYS.get(tool_name, ()):
            # Glob's pattern and Grep's glob are paths too when absolute, `~` or with a `..` part:
            # the directory before the first wildcard is confined like any path.
            value = tool_input.get(key)
            if isinstance(value, str) and value and _looks_like_path(value):
                fixed = value.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
                keep = fixed.endswith(("/", "..")) or fixed == value
                paths.append(fixed if keep else fixed.rsplit("/", 1)[0] or "/")
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


SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
ETC_ENTRIES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "passwd",
    "group",
    "nsswitch.conf",
    "localtime",
    "timezone",
    "alternatives",
    "hosts",
    "host.conf",
    "gai.conf",
    "services",
    "protocols",
    "mime.types",
    "magic",
    "magic.mime",
    "terminfo",
    "python3",
    f"python{sys.version_info.major}.{sys.version_info.minor}",
)
NETWORK_ETC_ENTRIES = ("resolv.conf",)
SANDBOX_LABEL = "bwrap (minimal view: worktree read-write, system read-only, private /tmp and HOME"


def sandbox_readonly_paths() -> list[Path]:
    """Read-only directories besides the system ones: the Python interpreter in use and its prefix
    (a venv and the installation it points to), and settings.AUTOPILOT_SANDBOX_READONLY. A path that
    contains Autopilot's own files (data directory, server checkout) is left out."""
    extra = settings.AUTOPILOT_SANDBOX_READONLY
    interpreter = Path(os.path.realpath(sys.executable))
    wanted = [Path(sys.prefix), Path(sys.base_prefix), interpreter.parent.parent, *map(Path, extra)]
    protected = protected_roots()
    out: list[Path] = []
    for path in wanted:
        try:
            real = path.resolve()
        except OSError:
            continue
        if not real.is_dir() or real == Path("/"):
            continue
        if any(_inside(r, real) for r in protected):
            continue  # would show Autopilot's own files
        if any(_inside(real, Path(d)) for d in SYSTEM_DIRS) or any(_inside(real, o) for o in out):
            continue
        out.append(real)
    return out


def sandbox_path_variable(readonly: Sequence[Path]) -> str:
    """PATH inside the sandbox: the interpreter's bin directories first, then the visible entries
    of the server's PATH (entries outside the sandbox's view would only slow lookups down)."""
    visible = [Path(d) for d in SYSTEM_DIRS] + list(readonly)
    entries = [os.path.dirname(sys.executable), os.path.join(sys.base_prefix, "bin")]
    entries += os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep)
    out: list[str] = []
    for entry in entries:
        if entry and entry not in out and any(_inside(Path(entry), v) for v in visible):
            out.append(entry)
    return os.pathsep.join(out) or "/usr/bin:/bin"


def git_binds(worktree: Path) -> list[str]:
    """bwrap arguments that let git work in a linked worktree: the repository's common git dir
    read-only (objects, refs, config), the other worktrees' admin dirs hidden, this worktree's own
    admin dir (index, HEAD) writable. Nothing for a worktree without a `.git` file."""
    dotgit = worktree / ".git"
    if not dotgit.is_file():
        return []
    try:
        line = dotgit.read_text().strip()
    except OSError:
        return []
    if not line.startswith("gitdir:"):
        return []
    admin = (worktree / line.split(":", 1)[1].strip()).resolve()
    try:
        common_rel = (admin / "commondir").read_text().strip()
    except OSError:
        return []
    common = (admin / common_rel).resolve()
    if not admin.is_dir() or not common.is_dir() or not _inside(admin, common / "worktrees"):
        return []
    return [
        "--ro-bind",
        str(common),
        str(common),
        "--tmpfs",
        str(common / "worktrees"),
        "--bind",
        str(admin),
        str(admin),
    ]


def sandbox_argv(
    argv: list[str],
    *,
    cwd: Path,
    writable: Sequence[Path],
    network: bool = False,
    readonly: Sequence[Path] = (),
) -> tuple[list[str], str]:
    """Wrap argv in bubblewrap when available: (argv, sandbox label). See the module docstring for
    what the sandbox shows; `writable` are the worktree and the run's private HOME, `readonly` extra
    directories a caller needs (an agent CLI's own installation)."""
    bwrap = bwrap_path()
    if not bwrap:
        return argv, "unsandboxed"
    wrapped = [bwrap]
    for directory in SYSTEM_DIRS:
        if os.path.islink(directory):
            wrapped += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            wrapped += ["--ro-bind", directory, directory]
    for name in ETC_ENTRIES + (NETWORK_ETC_ENTRIES if network else ()):
        source = Path("/etc") / name
        if source.exists():
            wrapped += ["--ro-bind", str(source.resolve()), str(source)]
    wrapped += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for path in _unique([*sandbox_readonly_paths(), *(Path(p).resolve() for p in readonly)]):
        wrapped += ["--ro-bind", str(path), str(path)]
    for path in writable:
        path = Path(path).resolve()
        wrapped += ["--bind", str(path), str(path)]
    for path in writable:
        wrapped += git_binds(Path(path).resolve())
    if not network:
        wrapped.append("--unshare-net")
    wrapped += [
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--die-with-parent",
        "--new-session",
        "--chdir",
        str(cwd),
        "--",
    ]
    label = SANDBOX_LABEL + (", network on)" if network else ", no network)")
    return wrapped + argv, label


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
    network: bool = False,
) -> CommandResult:
    """Run a parsed command: scrubbed env, sandbox, timeout (kills the process group), output cap.
    `network` lets the sandboxed command reach the network (only the project's setup script, when
    project.setup_network allows it)."""
    timeout = timeout or getattr(settings, "AUTOPILOT_COMMAND_TIMEOUT", DEFAULT_TIMEOUT)
    cap = output_cap or getattr(settings, "AUTOPILOT_STEP_OUTPUT_CAP", DEFAULT_OUTPUT_CAP)
    argv = ["/bin/sh", "-c", parsed.text] if parsed.shell else list(parsed.argv)
    argv, sandbox = sandbox_argv(argv, cwd=cwd, writable=writable, network=network)
    env = scrubbed_env(home, env_extra)
    if sandbox != "unsandboxed" and "PATH" not in (env_extra or {}):
        env["PATH"] = sandbox_path_variable(sandbox_readonly_paths())
    try:
        proc = subprocess.Popen(
            argv,
            cwd=str(cwd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
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
        text = (
            text[:cap] + f"\n[output truncated: {len(text)} characters; full output in the step's artifact]"
        )
    return CommandResult(
        exit_code=None if timed_out else proc.returncode,
        output=text,
        truncated=truncated,
        timed_out=timed_out,
        artifact_path=artifact,
        sandbox=sandbox,
    )
