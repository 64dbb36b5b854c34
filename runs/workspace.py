"""Git worktrees for runs: create, set up, commit, summarize, roll back, clean up.

Every run works in `git worktree add` of its project's repository, on its own branch
(`autopilot/<task-slug>-<run-id>`, or `autopilot/run-<id>` without a task) created from the base
branch's commit. Nothing here ever checks out, commits to or moves the base branch, and the main
worktree's files are never touched. `git worktree add/remove/prune` on one repository are serialized
by an advisory file lock (several workers share a repository) and retried on git's own lock errors.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils.text import slugify

from runs.backends.base import CommandResult
from runs.guard import ParsedCommand, execute

GIT_IDENTITY = [
    "-c",
    "user.name=Autopilot",
    "-c",
    "user.email=autopilot@localhost",
    "-c",
    "commit.gpgsign=false",
]
LOCK_ERRORS = ("index.lock", "could not lock", "already locked", "Unable to create", "cannot lock ref")


class WorkspaceError(Exception):
    """A git operation on a run's workspace failed (message names the command and git's answer)."""


def git_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(settings.DATA_DIR),
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def git(
    cwd: Path | str, *args: str, check: bool = True, timeout: float = 60, input: bytes | None = None
) -> str:
    result = subprocess.run(
        ["git", *GIT_IDENTITY, *args],
        cwd=str(cwd),
        capture_output=True,
        env=git_env(),
        timeout=timeout,
        input=input,
    )
    if check and result.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args)} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode(errors="replace").strip()


@contextlib.contextmanager
def repo_lock(repo: Path | str):
    """Serialize worktree add/remove/prune on one repository across processes."""
    root = Path(settings.AUTOPILOT_WORKTREE_ROOT) / ".locks"
    root.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(str(Path(repo).resolve()).encode()).hexdigest()[:16]
    with open(root / f"{key}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _retrying(fn, attempts: int = 5):
    for attempt in range(attempts):
        try:
            return fn()
        except WorkspaceError as exc:
            if attempt == attempts - 1 or not any(marker in str(exc) for marker in LOCK_ERRORS):
                raise
            time.sleep(0.2 * (attempt + 1))
    return None


def branch_for(run) -> str:
    if run.task_id:
        slug = slugify(run.task.title)[:40].strip("-") or "task"
        return f"autopilot/{slug}-{run.pk}"
    return f"autopilot/run-{run.pk}"


def path_for(run) -> Path:
    return Path(settings.AUTOPILOT_WORKTREE_ROOT) / run.project.slug / f"run-{run.pk}"


@dataclass
class Workspace:
    path: Path
    branch: str
    base_commit: str
    cwd: Path
    reused: bool = False


def base_commit_of(project) -> str:
    return git(project.repo_path, "rev-parse", "--verify", f"refs/heads/{project.base_branch}^{{commit}}")


def is_worktree(path: Path | str) -> bool:
    path = Path(path)
    return path.is_dir() and (path / ".git").exists()


def create(run, *, reuse_from=None) -> Workspace:
    """A fresh worktree on a new branch from the base branch; or, for a resumed run whose previous
    worktree still exists, that worktree and branch (its current HEAD becomes this run's base)."""
    project = run.project
    if reuse_from is not None and reuse_from.worktree_path and is_worktree(reuse_from.worktree_path):
        path = Path(reuse_from.worktree_path)
        head = git(path, "rev-parse", "HEAD")
        return Workspace(path, reuse_from.branch, head, _cwd(project, path), reused=True)
    repo = Path(project.repo_path)
    path = path_for(run)
    branch = branch_for(run)
    base = base_commit_of(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    if reuse_from is not None and reuse_from.branch:
        # The worktree is gone but the branch is kept: check the branch out again.
        exists = git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{reuse_from.branch}", check=False)
        if exists:
            with repo_lock(repo):
                _retrying(lambda: git(repo, "worktree", "add", str(path), reuse_from.branch))
            head = git(path, "rev-parse", "HEAD")
            return Workspace(path, reuse_from.branch, head, _cwd(project, path), reused=True)
    with repo_lock(repo):
        if path.exists():
            # A leftover from a crashed attempt of this same run: start clean.
            git(repo, "worktree", "remove", "--force", str(path), check=False)
            shutil.rmtree(path, ignore_errors=True)
            git(repo, "worktree", "prune", check=False)
            git(repo, "branch", "-D", branch, check=False)
        _retrying(lambda: git(repo, "worktree", "add", "--no-track", "-b", branch, str(path), base))
    return Workspace(path, branch, base, _cwd(project, path))


def _cwd(project, path: Path) -> Path:
    cwd = path / project.subdirectory if project.subdirectory else path
    cwd.mkdir(parents=True, exist_ok=True)
    return cwd


def changed(path: Path | str) -> bool:
    return bool(git(path, "status", "--porcelain", "--untracked-files=all"))


def commit_all(path: Path | str, message: str) -> str | None:
    """Commit every change in the worktree on its branch; returns the new HEAD or None if clean."""
    if not changed(path):
        return None
    git(path, "add", "-A")
    git(path, "commit", "-q", "--no-verify", "-m", message)
    return git(path, "rev-parse", "HEAD")


def diff_summary(path: Path | str, base: str, head: str) -> dict:
    """{files: [{path, added, removed}], added, removed} between two commits (binary files count 0)."""
    files, added, removed = [], 0, 0
    if not base or not head or base == head:
        return {"files": [], "added": 0, "removed": 0}
    for line in git(path, "diff", "--numstat", "--no-renames", base, head).splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        a = int(parts[0]) if parts[0].isdigit() else 0
        r = int(parts[1]) if parts[1].isdigit() else 0
        files.append({"path": parts[2], "added": a, "removed": r})
        added += a
        removed += r
    return {"files": files, "added": added, "removed": removed}


def commit_message(run) -> str:
    title = run.task.title if run.task_id else (run.prompt.strip().splitlines() or ["ad-hoc run"])[0][:72]
    return f"autopilot: {title} (run #{run.pk})"


# --- Rollback -------------------------------------------------------------------------------------


def verify_tree_matches(path: Path | str, commit: str) -> list[str]:
    """Byte-compare the worktree with `commit`: returns the paths that differ (empty = identical).

    Every file of the commit is hashed from disk with `git hash-object` and compared with the
    commit's blob id; any file on disk not in the commit (untracked, ignored excluded) is a difference.
    """
    path = Path(path)
    expected: dict[str, str] = {}
    for line in git(path, "ls-tree", "-r", "-z", "--full-tree", commit).split("\0"):
        if not line:
            continue
        meta, name = line.split("\t", 1)
        mode, kind, sha = meta.split()
        if kind == "blob":
            expected[name] = sha
    differences = []
    names = sorted(expected)
    existing = [n for n in names if (path / n).is_file() or (path / n).is_symlink()]
    differences += [n for n in names if n not in set(existing)]
    if existing:
        hashes = git(
            path, "hash-object", "--no-filters", "--stdin-paths", input="\n".join(existing).encode()
        ).split()
        for name, sha in zip(existing, hashes, strict=True):
            if (path / name).is_symlink():
                sha = hashlib.sha1(
                    b"blob %d\0" % len(os.readlink(path / name).encode()) + os.readlink(path / name).encode()
                ).hexdigest()
            if sha != expected[name]:
                differences.append(name)
    on_disk = git(path, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")
    differences += [
        n for n in on_disk if n and n not in expected and ((path / n).exists() or (path / n).is_symlink())
    ]
    return sorted(set(differences))


def rollback_worktree(path: Path | str, base: str) -> list[str]:
    """Reset the worktree (and its branch) to `base`, remove untracked files; returns differences
    found by verify_tree_matches afterwards (empty when byte-identical)."""
    git(path, "reset", "-q", "--hard", base)
    git(path, "clean", "-q", "-fd")
    return verify_tree_matches(path, base)


def file_snapshot(path: Path) -> dict:
    """Rollback data for one file: its previous bytes (base64) or "absent"."""
    if path.is_file():
        return {"before_b64": base64.b64encode(path.read_bytes()).decode(), "absent": False}
    return {"before_b64": None, "absent": True}


def restore_snapshot(path: Path, snapshot: dict) -> bool:
    """Put a file back to its snapshot; returns True when the bytes now match exactly."""
    if snapshot.get("absent"):
        if path.exists() or path.is_symlink():
            path.unlink()
        return not path.exists()
    data = base64.b64decode(snapshot["before_b64"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.read_bytes() == data


# --- Setup script and test command ---------------------------------------------------------------


def run_script(
    script: str,
    *,
    cwd: Path,
    workspace: Path | None,
    home: Path,
    timeout: float,
    network: bool = False,
    artifact_dir: Path | None = None,
    redact=None,
    on_start=None,
    on_exit=None,
) -> CommandResult:
    """Run a script the project's owner wrote (setup script, test command) with `/bin/sh -c` in the
    run's sandbox: the same filesystem view as agent commands (runs/guard.py sandbox_argv: the
    worktree and HOME writable, system read-only, private /tmp, nothing of the data directory), a
    scrubbed environment, a timeout that kills the process group and an output cap. The shell is
    allowed whatever project.allow_shell says (a trusted role wrote the script); the network only
    when `network` (project.setup_network, for the setup script). Without bubblewrap it runs as the
    server's user and the result's `sandbox` says "unsandboxed". Returns a CommandResult."""
    root = Path(workspace) if workspace is not None else Path(cwd)
    writable = _unique_paths([root, Path(home)])
    return execute(
        ParsedCommand(argv=["/bin/sh", "-c", script], shell=True, text=script),
        cwd=Path(cwd),
        home=Path(home),
        writable=writable,
        timeout=timeout,
        network=network,
        artifact_dir=artifact_dir,
        redact=redact,
        on_start=on_start,
        on_exit=on_exit,
    )


def _unique_paths(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.resolve() not in out:
            out.append(path.resolve())
    return out


def run_setup(
    script: str,
    *,
    cwd: Path,
    home: Path,
    timeout: float,
    workspace: Path | None = None,
    network: bool = False,
    artifact_dir: Path | None = None,
    on_start=None,
    on_exit=None,
) -> CommandResult:
    """Run the project's setup script in the fresh worktree, sandboxed (see run_script). Returns a
    CommandResult: exit_code (None on timeout), output, sandbox label."""
    result = run_script(
        script,
        cwd=cwd,
        workspace=workspace,
        home=home,
        timeout=timeout,
        network=network,
        artifact_dir=artifact_dir,
        on_start=on_start,
        on_exit=on_exit,
    )
    if result.timed_out:
        result.output += f"\n[setup timed out after {timeout:g}s]"
    return result


# --- Retention ------------------------------------------------------------------------------------


def remove_worktree(repo: Path | str, path: Path | str) -> None:
    with repo_lock(repo):
        git(repo, "worktree", "remove", "--force", str(path), check=False)
        if Path(path).exists():
            shutil.rmtree(path, ignore_errors=True)
        git(repo, "worktree", "prune", check=False)


def disk_usage(root: Path | str | None = None) -> int:
    """Bytes used under the worktree root (du -sb)."""
    root = Path(root or settings.AUTOPILOT_WORKTREE_ROOT)
    if not root.exists():
        return 0
    result = subprocess.run(["du", "-sb", str(root)], capture_output=True, text=True, timeout=300)
    try:
        return int(result.stdout.split()[0])
    except (IndexError, ValueError):
        return 0
