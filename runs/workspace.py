"""Git worktrees for runs: create, set up, commit, summarize, roll back, clean up.

Every run works in `git worktree add` of its project's repository, on its own branch
(`autopilot/<task-slug>-<run-id>`, or `autopilot/run-<id>` without a task). Where the branch starts
(`start_point`, recorded as the run's start_ref and base_commit):

- a task's first run: the integration branch's head (every integrated prerequisite is in it; the
  branch is created from the base branch's commit when it does not exist yet);
- a task's follow-up run (a retry, a rework after failed integration tests, a conflict or requested
  changes): the task's latest branch, brought up to date by merging the integration head into it. When
  that merge conflicts, it is left in progress the way a developer meets it: git's conflict markers in
  the conflicting files, MERGE_HEAD set. The conflict (files, both sides; `start_conflict`) is
  recorded and the prompt asks the agent to resolve the markers keeping both sides' intent; the run's
  final commit then completes the merge. Nothing of either side is dropped behind the agent's back,
  and a branch that still carries conflict markers is refused by the merge queue as a conflict. A task
  whose latest review rejected the work starts afresh from the integration head;
- a run without a task: the base branch, or the existing local branch its settings' `from_ref` names.

Nothing here ever checks out, commits to or moves the base branch or the integration branch (only the
merge queue, runs.integration, moves the integration branch), and the main worktree's files are never
touched. `git worktree add/remove/prune` on one repository are serialized
by an advisory file lock (several workers share a repository) and retried on git's own lock errors.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.utils.text import slugify

from autopilot.events import record_event
from runs.backends.base import CommandResult
from runs.guard import ParsedCommand, execute
from runs.models import ExecutionRun, Integration, TaskReview

GIT_IDENTITY = [
    "-c",
    "user.name=Autopilot",
    "-c",
    "user.email=autopilot@localhost",
    "-c",
    "commit.gpgsign=false",
]
ZERO_COMMIT = "0" * 40
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
    start_ref: str = ""
    # Set when bringing a follow-up branch up to date conflicted: {onto, files, detail}.
    start_conflict: dict = field(default_factory=dict)


def base_commit_of(project) -> str:
    return git(project.repo_path, "rev-parse", "--verify", f"refs/heads/{project.base_branch}^{{commit}}")


def check_branch_name(name: str, what: str = "branch") -> str:
    """A plain local branch name (never an option, a path outside refs/heads, or a revision
    expression); WorkspaceError naming the problem otherwise."""
    name = (name or "").strip()
    if not name:
        raise WorkspaceError(f"The {what} name is empty.")
    if name.startswith("-") or name.startswith("refs/") or name.startswith("/"):
        raise WorkspaceError(f"'{name}' is not a valid {what} name (a plain branch name, like 'main').")
    if not _is_branch_name(name):
        raise WorkspaceError(f"'{name}' is not a valid {what} name.")
    return name


@functools.lru_cache(maxsize=1024)
def _is_branch_name(name: str) -> bool:
    """git's own verdict on a branch name (a pure function of the name: asked once per process, as
    the merge queue checks its integration branch's name on every merge)."""
    ok = subprocess.run(
        ["git", "check-ref-format", "--branch", name], capture_output=True, env=git_env(), timeout=10
    )
    return ok.returncode == 0 and ok.stdout.decode().strip() == name


def ref_commit(repo: Path | str, branch: str) -> str | None:
    """The commit a local branch points at, or None when it does not exist."""
    out = git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False)
    return out or None


def ref_commits(repo: Path | str, *branches: str) -> dict[str, str | None]:
    """{branch: the commit it points at, or None when it does not exist (or not at a commit)} for
    several local branches with one git process."""
    refs = {f"refs/heads/{branch}": branch for branch in branches}
    out = git(
        repo, "for-each-ref", "--format=%(refname)%00%(objectname)%00%(objecttype)", "--", *refs, check=False
    )
    found: dict[str, str | None] = dict.fromkeys(branches)
    for line in out.splitlines():
        refname, commit, kind = (line.split("\0") + ["", ""])[:3]
        if refname in refs and kind == "commit":  # a pattern also matches refs below it: exact names only
            found[refs[refname]] = commit
    return found


def update_ref(repo: Path | str, branch: str, new: str, expected_old: str) -> bool:
    """Compare-and-swap a local branch: move it to `new` only if it still points at `expected_old`
    (ZERO_COMMIT: only if it does not exist). False when someone else moved it meanwhile."""
    try:
        git(repo, "update-ref", "-m", "autopilot: merge queue", f"refs/heads/{branch}", new, expected_old)
    except WorkspaceError:
        return False
    return True


def integration_head(project) -> str:
    """The integration branch's head commit. When the branch does not exist it is created
    (compare-and-swap against "absent", so two creators agree): at the last merge Autopilot made into
    it when that commit is still in the repository (the branch was deleted behind its back: nothing
    integrated is lost), else at the base branch's commit (the first merge)."""
    repo = project.repo_path
    branch = check_branch_name(project.integration_branch, "integration branch")
    head = ref_commit(repo, branch)
    if head is not None:
        return head
    last = last_merge_commit(project, branch)
    start = last or base_commit_of(project)
    if not update_ref(repo, branch, start, ZERO_COMMIT):
        head = ref_commit(repo, branch)
        if head is None:
            raise WorkspaceError(f"could not create the integration branch '{branch}'.")
        return head
    record_event(
        kind="integration.branch_created",
        subject=project,
        data={"branch": branch, "at": start, "from": "the last merge" if last else "the base branch"},
    )
    return start


def last_merge_commit(project, branch: str) -> str | None:
    """The newest merge commit Autopilot moved `branch` to, when the repository still has it."""
    commit = (
        Integration.objects.filter(project=project, target_branch=branch, status=Integration.Status.MERGED)
        .exclude(merge_commit="")
        .order_by("-finished_at", "-pk")
        .values_list("merge_commit", flat=True)
        .first()
    )
    if not commit:
        return None
    found = git(project.repo_path, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}", check=False)
    return found or None


def resolve_from_ref(project, name: str) -> str:
    """The commit of `name`, an existing local branch of the project's repository (a run's `from_ref`)."""
    name = check_branch_name(name, "from_ref branch")
    commit = ref_commit(project.repo_path, name)
    if commit is None:
        raise WorkspaceError(f"There is no local branch '{name}' in the project's repository.")
    return commit


def previous_branch(run) -> tuple[str, str] | None:
    """(branch, head) of the task's latest earlier run whose branch still exists — what a follow-up
    run continues; None for a first run, or when the latest review rejected the work (start afresh)."""
    if not run.task_id:
        return None
    earlier = ExecutionRun.objects.filter(task_id=run.task_id, pk__lt=run.pk).exclude(branch="")
    rejected = (
        TaskReview.objects.filter(task_id=run.task_id, decision=TaskReview.Decision.REJECTED)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if rejected is not None:
        earlier = earlier.filter(created_at__gt=rejected)
    for branch in earlier.order_by("-pk").values_list("branch", flat=True)[:20]:
        head = ref_commit(run.project.repo_path, branch)
        if head is not None:
            return branch, head
    return None


def start_point(run) -> tuple[str, str, tuple[str, str] | None]:
    """(start_ref, start commit, previous) of a new run's branch; `previous` = (branch, head) when the
    run continues a task's branch (the integration head is then merged into it)."""
    project = run.project
    if not run.task_id:
        from_ref = (run.settings or {}).get("from_ref")
        if from_ref:
            return from_ref, resolve_from_ref(project, str(from_ref)), None
        return project.base_branch, base_commit_of(project), None
    head = integration_head(project)
    previous = previous_branch(run)
    if previous is not None:
        return previous[0], previous[1], previous
    return project.integration_branch, head, None


def is_worktree(path: Path | str) -> bool:
    path = Path(path)
    return path.is_dir() and (path / ".git").exists()


def worktree_gitdir(path: Path | str) -> Path | None:
    """A linked worktree's private git directory (what its `.git` file points at), read without a
    git process; None when `path` is not a linked worktree (no `.git` file, or a broken one)."""
    dotgit = Path(path) / ".git"
    try:
        if not dotgit.is_file():
            return None
        text = dotgit.read_text().strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    gitdir = Path(text[len("gitdir:") :].strip())
    gitdir = gitdir if gitdir.is_absolute() else (Path(path) / gitdir)
    return gitdir if gitdir.is_dir() else None


_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def detached_head(path: Path | str, gitdir: Path | None = None) -> str:
    """The commit checked out at `path`: read from the worktree's HEAD file when it is detached (no
    git process), else `git rev-parse HEAD`."""
    gitdir = gitdir or worktree_gitdir(path)
    if gitdir is not None:
        try:
            head = (gitdir / "HEAD").read_text().strip()
        except OSError:
            head = ""
        if _SHA.match(head):
            return head
    return git(path, "rev-parse", "HEAD")


def create(run, *, reuse_from=None) -> Workspace:
    """A fresh worktree on a new branch from the run's start point (see the module doc); or, for a
    resumed run whose previous worktree still exists, that worktree and branch (its current HEAD
    becomes this run's base)."""
    project = run.project
    if reuse_from is not None and reuse_from.worktree_path and is_worktree(reuse_from.worktree_path):
        path = Path(reuse_from.worktree_path)
        head = git(path, "rev-parse", "HEAD")
        return Workspace(
            path, reuse_from.branch, head, _cwd(project, path), reused=True, start_ref=reuse_from.branch
        )
    repo = Path(project.repo_path)
    path = path_for(run)
    branch = branch_for(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    if reuse_from is not None and reuse_from.branch:
        # The worktree is gone but the branch is kept: check the branch out again.
        exists = git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{reuse_from.branch}", check=False)
        if exists:
            with repo_lock(repo):
                _retrying(lambda: git(repo, "worktree", "add", str(path), reuse_from.branch))
            head = git(path, "rev-parse", "HEAD")
            return Workspace(
                path, reuse_from.branch, head, _cwd(project, path), reused=True, start_ref=reuse_from.branch
            )
    start_ref, base, previous = start_point(run)
    with repo_lock(repo):
        if path.exists():
            # A leftover from a crashed attempt of this same run: start clean.
            git(repo, "worktree", "remove", "--force", str(path), check=False)
            shutil.rmtree(path, ignore_errors=True)
            git(repo, "worktree", "prune", check=False)
            git(repo, "branch", "-D", branch, check=False)
        _retrying(lambda: git(repo, "worktree", "add", "--no-track", "-b", branch, str(path), base))
    conflict: dict = {}
    if previous is not None:
        onto = integration_head(project)
        conflict = bring_up_to_date(path, onto, project.integration_branch)
        base = git(path, "rev-parse", "HEAD")
    return Workspace(path, branch, base, _cwd(project, path), start_ref=start_ref, start_conflict=conflict)


def bring_up_to_date(path: Path | str, onto: str, onto_name: str) -> dict:
    """Merge the integration head `onto` into the worktree's branch (nothing when it is in already).
    A conflicting merge is left in progress with git's markers for the agent to resolve (see the
    module doc); returns the conflict ({onto, files, detail, markers_left}) or {} when it was clean."""
    if is_ancestor(path, onto, "HEAD"):
        return {}
    message = f"autopilot: bring the branch up to date with {onto_name} ({onto[:12]})"
    merged = subprocess.run(
        ["git", *GIT_IDENTITY, "merge", "--no-edit", "-m", message, onto],
        cwd=str(path),
        capture_output=True,
        env=git_env(),
        timeout=300,
    )
    if merged.returncode == 0:
        return {}
    files = conflicted_files(path)
    detail = conflict_detail(path, files, ours=onto_name, theirs="this task's branch", swap=True)
    if not files:
        # Not a content conflict (e.g. a refused merge): start from the branch as it is.
        git(path, "merge", "--abort", check=False)
        git(path, "reset", "-q", "--hard", "HEAD", check=False)
    return {"onto": onto, "files": files, "detail": detail, "markers_left": bool(files)}


def leftover_conflict_markers(path: Path | str, base: str, head: str) -> list[str]:
    """Files in which `head` adds conflict markers over `base` (`git diff --check`)."""
    out = git(path, "diff", "--check", base, head, check=False)
    return sorted({line.split(":", 1)[0] for line in out.splitlines() if "leftover conflict marker" in line})


def is_ancestor(path: Path | str, ancestor: str, descendant: str) -> bool:
    result = subprocess.run(
        ["git", "merge-base", "--is-ancestor", ancestor, descendant],
        cwd=str(path),
        capture_output=True,
        env=git_env(),
        timeout=60,
    )
    return result.returncode == 0


CONFLICT_DETAIL_CAP = 20_000
_MARKER_START, _MARKER_BASE, _MARKER_MID, _MARKER_END = "<<<<<<<", "|||||||", "=======", ">>>>>>>"


def conflicted_files(path: Path | str) -> list[str]:
    """The unmerged paths of a worktree in the middle of a merge, rebase or squash."""
    out = git(path, "diff", "--name-only", "--diff-filter=U", "-z", check=False)
    return sorted({name for name in out.split("\0") if name})[:500]


def conflict_detail(
    path: Path | str,
    files: list[str],
    *,
    ours: str,
    theirs: str,
    swap: bool = False,
    cap: int = CONFLICT_DETAIL_CAP,
) -> str:
    """Both sides of every conflicting hunk of `files` (as git left them in the worktree), labelled
    with `ours` (the side checked out) and `theirs`; capped at `cap` characters. `swap`: the worktree
    had the task's branch checked out, so git's "ours" is the task — shown second, as everywhere else
    the integration side comes first."""
    parts: list[str] = []
    for name in files:
        target = Path(path) / name
        if not target.is_file():
            parts.append(f"--- {name}: deleted on one side, changed on the other")
            continue
        lines = target.read_text(errors="replace").splitlines()
        hunks, current, side = [], None, None
        for number, line in enumerate(lines, 1):
            if line.startswith(_MARKER_START):
                current, side = {"line": number, "ours": [], "theirs": []}, "ours"
            elif current is not None and line.startswith(_MARKER_BASE):
                side = None
            elif current is not None and line.startswith(_MARKER_MID):
                side = "theirs"
            elif current is not None and line.startswith(_MARKER_END):
                hunks.append(current)
                current, side = None, None
            elif current is not None and side is not None:
                current[side].append(line)
        if not hunks:
            parts.append(f"--- {name}: conflicting changes (no text hunks: binary, or added on both sides)")
            continue
        for hunk in hunks:
            first, second = (hunk["theirs"], hunk["ours"]) if swap else (hunk["ours"], hunk["theirs"])
            labels = (ours, theirs)
            parts.append(
                f"--- {name} (near line {hunk['line']})\n<<<<<<< {labels[0]}\n"
                + "".join(f"{x}\n" for x in first)
                + "=======\n"
                + "".join(f"{x}\n" for x in second)
                + f">>>>>>> {labels[1]}"
            )
    text = "\n".join(parts)
    if len(text) > cap:
        text = text[: cap - 40] + "\n[… conflict detail truncated]"
    return text


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


def add_detached_worktree(repo: Path | str, path: Path | str, commit: str) -> None:
    """A fresh worktree at `path` with `commit` checked out detached (no branch); whatever was at
    `path` before is removed first."""
    with repo_lock(repo):
        git(repo, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)
        git(repo, "worktree", "prune", check=False)
        _retrying(lambda: git(repo, "worktree", "add", "--detach", str(path), commit))


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
