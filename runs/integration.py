"""Integration: the merge queue that turns finished tasks into one tested codebase, and reviews.

A task whose code run succeeded (and, when review is required, that a human approved) is queued for
integration: an `Integration` row (runs.models) per merge attempt. `process_queue` takes one queued
item per project at a time and:

1. claims it (MERGING) under a lease, inside a transaction that serializes the project's queue
   (PostgreSQL: a transaction-scoped advisory lock per project; SQLite: IMMEDIATE transactions) and
   re-checks that nothing else of the project is in flight (the database refuses a second one too);
   prerequisites go before dependents, otherwise in queued order;
2. in a private worktree under AUTOPILOT_WORKTREE_ROOT/<slug>/.integration (detached HEAD, never an
   agent's; cleaned with checkout -f + clean, recreated when missing or broken) brings the task's
   branch onto the integration head with the project's strategy: merge commit, squash, or rebase +
   fast-forward;
3. TESTING: runs the integration test command there, sandboxed (workspace.run_script: timeout, output
   cap, redaction), renewing the lease while it runs;
4. only when it passes moves the integration branch with `git update-ref <ref> <new> <old>`
   (compare-and-swap): when the branch moved meanwhile (or was deleted), nothing is clobbered and the
   merge is redone on the new head; then MERGED: the task is done, its dependents' readiness is
   re-derived (the task's transition marks them), the project is told (a tick), and with a remote
   configured the integration branch is pushed (never forced; a push failure is an event, not a
   merge failure).

A worker that dies mid-merge (SIGKILL during the tests) leaves the branch at its old head; its lease
expires and the item goes back to the queue (`release_expired`), to be merged once.

Reactions (each an `integration.reaction` event naming its cause; bounded by the task's max attempts,
follow-up runs by the tick's budgets):
- conflict: the conflicting files and both sides of each hunk are stored on the integration; with
  conflict_policy=agent the task goes back to ready (blocked when out of attempts), so the manager
  starts a follow-up run that continues its branch (brought up to date with the integration head, see
  runs.workspace) and whose prompt shows the conflict; with conflict_policy=human the task stays
  `integrating` with the failed integration until `resolve` (a human fixed the branch), `retry`,
  `skip` or a review;
- integration tests failed: the tail of the output is stored, the task goes back to ready for rework
  (blocked with the reason after max attempts);
- a task whose branch was deleted is a conflict-like failure ("the branch no longer exists").

Reviews (`review`): approved → queued; changes requested (comment required) → a follow-up run of the
task on its branch; rejected → back to todo (the next run starts afresh) or cancelled.

Every change of status goes through autopilot.state.transition (an event each).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from autopilot import seams
from autopilot.errors import ApplicationError, Conflict
from autopilot.events import record_event
from autopilot.input_limits import MAX_MESSAGE_CHARS, MAX_NOTE_CHARS, check_length
from autopilot.models import AutonomyMode, ConflictPolicy, MergeStrategy, Project, Role
from autopilot.permissions import require_role
from autopilot.state import can_transition, transition
from blueprints import locks as task_locks
from blueprints.models import Task, TaskDependency
from runs import workspace
from runs.budget import project_spent_on
from runs.context import TASK_INSTRUCTION
from runs.leases import lease_seconds
from runs.models import ExecutionRun, Integration, RunRole, TaskReview
from runs.redaction import Redactor
from runs.services import run_create

logger = logging.getLogger(__name__)

Status = Integration.Status
QUEUE_LOCK_KEY = 0x696E7467  # "intg": the per-project merge-queue lock on PostgreSQL (with the project id)
TEST_OUTPUT_TAIL = 20_000
MAX_REDO = 3  # merges redone on a moved integration head within one process_queue call
REACTION = "integration.reaction"


def new_owner() -> str:
    """A lease owner for one merge-queue worker: host:pid:token."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def worktree_path(project) -> Path:
    return Path(settings.AUTOPILOT_WORKTREE_ROOT) / project.slug / ".integration"


def review_needed(project, mode: str | None = None) -> bool:
    """Does a human approve each task's work before it is merged? An explicit `review_required` wins;
    else the legacy `auto_complete_on_tests` means "don't wait for review"; else by mode: required in
    suggest and semi_auto, not in full_auto (`Project.needs_review`). `mode`: the mode the run was made
    in when it differs from the project's (`autopilot run --full-auto` drives a project in full_auto)."""
    if project.review_required is not None:
        return project.review_required
    if project.auto_complete_on_tests:
        return False
    if mode:
        return mode != AutonomyMode.FULL_AUTO
    return project.needs_review


def _require_operator(actor, project) -> None:
    if actor is not None:
        require_role(actor, project, Role.OPERATOR)


def _actor(actor):
    return actor if actor is not None and getattr(actor, "is_authenticated", False) else None


def _who(actor) -> str:
    return actor.get_username() if _actor(actor) is not None else "the system"


def _move(integration: Integration, target: str, *, reason: str, actor=None, fields=None, event_data=None):
    """An integration's status change (autopilot.state.transition) that also stores the reason."""
    return transition(
        integration,
        target,
        actor=actor,
        reason=reason,
        fields={"status_reason": reason[:5000], **(fields or {})},
        event_data=event_data,
    )


# --- Queueing -------------------------------------------------------------------------------------


def latest_delivery(task) -> ExecutionRun | None:
    """The task's latest succeeded code run with a branch: the work a review or a merge is about."""
    return (
        ExecutionRun.objects.filter(task=task, role=RunRole.CODE, status=ExecutionRun.Status.SUCCEEDED)
        .exclude(branch="")
        .order_by("-pk")
        .first()
    )


def enqueue(task, run, *, actor=None) -> Integration:
    """Queue the task's branch (its run's) for integration; the task's open integration when it has
    one already (idempotent). The caller moves the task to `integrating` (or calls this from a
    service that does)."""
    if task.kind == Task.Kind.MILESTONE:
        raise ApplicationError(f"Task #{task.pk} is a milestone: milestones have no code to merge.")
    if run is None or not run.branch:
        raise ApplicationError(f"Task #{task.pk} has no delivered branch to integrate.")
    project = task.project
    existing = Integration.objects.filter(task=task, status__in=Integration.OPEN).first()
    if existing is not None:
        return existing
    attempt = Integration.objects.filter(task=task).count() + 1
    try:
        with transaction.atomic():
            integration = Integration.objects.create(
                project=project,
                task=task,
                run=run,
                branch=run.branch,
                head_commit=run.head_commit or "",
                target_branch=project.integration_branch,
                strategy=project.merge_strategy,
                test_command=project.effective_integration_test_command[:1000],
                attempt=attempt,
                created_by=_actor(actor),
            )
            record_event(
                kind="integration.queued",
                subject=integration,
                actor=actor,
                data={"task": task.pk, "run": run.pk, "branch": run.branch, "attempt": attempt},
            )
    except IntegrityError:
        existing = Integration.objects.filter(task=task, status__in=Integration.OPEN).first()
        if existing is None:
            raise
        return existing
    seams.project_changed.send_on_commit(project.pk, f"task #{task.pk} queued for integration")
    return integration


def queue_for(task, run, *, actor=None, reason: str) -> Integration:
    """Move the task to `integrating` and queue its branch (one transaction, the task locked)."""
    with transaction.atomic():
        locked = task_locks.lock_task(task.pk)
        if locked.status != Task.Status.INTEGRATING:
            transition(
                locked, Task.Status.INTEGRATING, actor=actor, reason=reason, event_data={"run": run.pk}
            )
        return enqueue(locked, run, actor=actor)


# --- The queue ------------------------------------------------------------------------------------


def _lock_queue(project_id: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [QUEUE_LOCK_KEY, project_id])


def release_expired(project_id: int | None = None, *, now=None) -> list[int]:
    """In-flight merges whose lease expired (their worker died): back to the queue, to be redone."""
    now = now or timezone.now()
    qs = Integration.objects.filter(status__in=Integration.IN_FLIGHT, lease_expires_at__lt=now)
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    released = []
    for integration in list(qs):
        with transaction.atomic():
            current = Integration.objects.select_for_update().filter(pk=integration.pk).first()
            if (
                current is None
                or current.status not in Integration.IN_FLIGHT
                or current.lease_expires_at is None
                or current.lease_expires_at >= now
            ):
                continue
            _move(
                current,
                Status.QUEUED,
                reason=f"the merge's worker stopped ({current.lease_owner or 'unknown'}: lease expired); "
                "the merge is redone",
                fields={"lease_owner": "", "lease_expires_at": None},
            )
            released.append(current.pk)
    return released


def _eligible(project_id: int):
    """The project's queued items in the order they are taken: those with no queued prerequisite
    first (prerequisites before dependents), each group in queued order."""
    queued = Integration.objects.filter(project_id=project_id, status=Status.QUEUED)
    waiting = TaskDependency.objects.filter(
        depends_on__integrations__project_id=project_id, depends_on__integrations__status=Status.QUEUED
    ).values("task_id")
    first = queued.exclude(task_id__in=waiting).order_by("queued_at", "id").first()
    return first or queued.order_by("queued_at", "id").first()


def _claim(project_id: int, owner: str) -> Integration | None:
    now = timezone.now()
    try:
        with transaction.atomic():
            _lock_queue(project_id)
            project = Project.objects.filter(pk=project_id).first()
            if project is None or project.paused:
                return None
            if Integration.objects.filter(project_id=project_id, status__in=Integration.IN_FLIGHT).exists():
                return None
            candidate = _eligible(project_id)
            if candidate is None:
                return None
            candidate.project = project  # the merge works with the project read under the queue lock
            return _move(
                candidate,
                Status.MERGING,
                reason=f"merging {candidate.branch} into {project.integration_branch}",
                fields={
                    "lease_owner": owner,
                    "lease_expires_at": now + timedelta(seconds=lease_seconds()),
                    "started_at": now,
                    "finished_at": None,
                    "target_branch": project.integration_branch,
                    "strategy": project.merge_strategy,
                    "test_command": project.effective_integration_test_command[:1000],
                },
                event_data={"worker": owner, "task": candidate.task_id},
            )
    except IntegrityError:  # another worker's merge of this project went in flight first
        return None


def process_queue(project_id: int, *, owner: str) -> Integration | None:
    """Merge the project's next queued item (see the module doc); returns it in its final state for
    this call (merged, conflict, tests_failed, or queued again), or None when there was nothing to do
    (empty queue, another merge in flight, project paused)."""
    release_expired(project_id)
    integration = None
    for _ in range(MAX_REDO):
        integration = _claim(project_id, owner)
        if integration is None:
            return None
        keeper = _LeaseKeeper(integration.pk, owner)  # renews the lease while git and the tests work
        keeper.start()
        try:
            redo = _attempt(integration, owner)
        finally:
            keeper.done.set()
            keeper.join(timeout=10)
        if not redo:
            break  # finished (merged or failed)
    if integration is not None:
        integration.refresh_from_db()
    return integration


def drain(project_id: int, *, owner: str | None = None, limit: int = 1000) -> list[Integration]:
    """Process the project's queue until nothing more can be taken (the job and the inline driver)."""
    owner = owner or new_owner()
    done = []
    for _ in range(limit):
        integration = process_queue(project_id, owner=owner)
        if integration is None or integration.status == Status.QUEUED:
            if integration is not None:
                done.append(integration)
            break
        done.append(integration)
    return done


def pending_projects() -> list[int]:
    """Projects (not paused) with queued merges or in-flight ones whose lease expired."""
    now = timezone.now()
    queued = Integration.objects.filter(status=Status.QUEUED)
    stale = Integration.objects.filter(status__in=Integration.IN_FLIGHT, lease_expires_at__lt=now)
    ids = set(queued.values_list("project_id", flat=True)) | set(stale.values_list("project_id", flat=True))
    return sorted(Project.objects.filter(pk__in=ids, paused=False).values_list("pk", flat=True))


@dataclass
class _Merge:
    commit: str = ""  # the new integration head ("" on conflict)
    changed: bool = True
    conflict_files: list | None = None
    conflict_detail: str = ""
    error: str = ""
    summary: dict | None = None  # workspace.diff_summary(onto, commit) of a merge that changed something


class _LeaseKeeper(threading.Thread):
    """Renews an in-flight merge's lease while it works (its own database connection)."""

    def __init__(self, integration_id: int, owner: str):
        super().__init__(name=f"lease-integration-{integration_id}", daemon=True)
        self.integration_id, self.owner = integration_id, owner
        self.done = threading.Event()

    def run(self) -> None:
        every = max(0.5, lease_seconds() / 3)
        try:
            while not self.done.wait(every):
                Integration.objects.filter(pk=self.integration_id, lease_owner=self.owner).update(
                    lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds())
                )
        except Exception:  # noqa: BLE001 - a failed renewal only risks a redo, never a wrong merge
            logger.exception("renewing the lease of integration %s failed", self.integration_id)
        finally:
            connection.close()


IN_PROGRESS = ("MERGE_HEAD", "rebase-merge", "rebase-apply")  # a merge or rebase left half-done


def _prepare_worktree(project, onto: str) -> Path:
    """The project's private integration worktree, clean and detached at `onto`: reused with two git
    processes (`checkout -f` discards tracked changes, `clean -ffd` untracked files and directories,
    nested repositories too; ignored files such as caches stay), recreated when it is missing, broken
    (not a linked worktree, or git refuses to check out there) or a merge or rebase is in progress in
    it (its private git directory is read directly, no git process)."""
    repo = Path(project.repo_path)
    path = worktree_path(project)
    gitdir = workspace.worktree_gitdir(path)
    usable = gitdir is not None and not any((gitdir / name).exists() for name in IN_PROGRESS)
    if usable:
        try:
            workspace.git(path, "checkout", "-q", "--detach", "-f", onto)
            workspace.git(path, "clean", "-q", "-ffd")
        except workspace.WorkspaceError:
            usable = False
    if not usable:
        path.parent.mkdir(parents=True, exist_ok=True)
        workspace.add_detached_worktree(repo, path, onto)
    return path


def _git_ok(path: Path, *args: str, timeout: float = 300) -> tuple[bool, str]:
    try:
        workspace.git(path, *args, timeout=timeout)
    except workspace.WorkspaceError as exc:
        return False, str(exc)
    return True, ""


def _conflict(path: Path, project, branch: str, error: str) -> _Merge:
    files = workspace.conflicted_files(path)
    detail = workspace.conflict_detail(
        path, files, ours=f"{project.integration_branch} (integration)", theirs=f"{branch} (this task)"
    )
    return _Merge(conflict_files=files, conflict_detail=detail, error=error)


def _bring_onto(path: Path, project, integration: Integration, head: str, onto: str) -> _Merge:
    """Apply the task's branch onto the integration head in the worktree with the strategy."""
    task = integration.task
    strategy = integration.strategy or project.merge_strategy
    # A branch already contained in `onto` needs no special case: each strategy then leaves HEAD at
    # `onto` (or stages nothing), which is "no new commit" below.
    if strategy == MergeStrategy.SQUASH:
        ok, error = _git_ok(path, "merge", "--squash", head)
        if not ok:
            return _conflict(path, project, integration.branch, error)
        if not workspace.git(path, "diff", "--cached", "--name-only"):
            return _Merge(commit=onto, changed=False)
        message = f"{task.title} (task #{task.pk}; squashed from {integration.branch})"
        workspace.git(path, "commit", "-q", "--no-verify", "-m", message)
    elif strategy == MergeStrategy.REBASE:
        workspace.git(path, "checkout", "-q", "--detach", head)
        ok, error = _git_ok(path, "-c", "core.editor=true", "rebase", "--no-autosquash", onto)
        if not ok:
            result = _conflict(path, project, integration.branch, error)
            workspace.git(path, "rebase", "--abort", check=False)
            return result
    else:
        message = f"Merge {integration.branch}: {task.title} (task #{task.pk})"
        ok, error = _git_ok(path, "merge", "--no-ff", "--no-edit", "-m", message, head)
        if not ok:
            return _conflict(path, project, integration.branch, error)
    commit = workspace.detached_head(path)
    summary = workspace.diff_summary(path, onto, commit)
    if not summary["files"]:
        # Nothing new (e.g. every rebased commit was already in): no commit is added.
        return _Merge(commit=onto, changed=False)
    return _Merge(commit=commit, summary=summary)


def _reset(path: Path, onto: str) -> None:
    workspace.git(path, "merge", "--abort", check=False)
    workspace.git(path, "reset", "-q", "--hard", onto, check=False)
    workspace.git(path, "clean", "-q", "-fd", check=False)


def _holds_lease(integration_id: int, owner: str) -> bool:
    """Does `owner` still hold the in-flight merge's lease? Locks the row (the caller's transaction):
    nothing can take the lease away (release_expired locks it too) until the caller commits."""
    return (
        Integration.objects.select_for_update()
        .filter(pk=integration_id, lease_owner=owner, status__in=Integration.IN_FLIGHT)
        .exists()
    )


def _attempt(integration: Integration, owner: str) -> bool:
    """Do one claimed merge; True when it must be redone on a moved integration head (requeued)."""
    project = integration.project  # read by _claim under the queue lock
    repo = Path(project.repo_path)
    redactor = Redactor.for_project(project)
    onto = head = None
    try:
        target = workspace.check_branch_name(project.integration_branch, "integration branch")
        heads = workspace.ref_commits(repo, target, integration.branch)  # one git process for both
        onto = heads[target] or workspace.integration_head(project)  # created from the base when absent
        head = heads[integration.branch]
        if head is None:
            _fail(
                integration,
                Status.CONFLICT,
                reason=f"the task's branch {integration.branch} no longer exists",
                fields={"onto_commit": onto},
            )
            return False
        path = _prepare_worktree(project, onto)
        merge = _bring_onto(path, project, integration, head, onto)
    except workspace.WorkspaceError as exc:
        known = {"onto_commit": onto, "head_commit": head} if onto and head else {}
        _fail(integration, Status.CONFLICT, reason=f"git failed: {redactor(str(exc))[:1000]}", fields=known)
        return False
    try:
        return _finish(integration, owner, project, path, onto, head, merge, redactor)
    except workspace.WorkspaceError as exc:
        current = Integration.objects.get(pk=integration.pk)
        failed = Status.TESTS_FAILED if current.status == Status.TESTING else Status.CONFLICT
        if current.status in Integration.IN_FLIGHT and current.lease_owner == owner:
            _fail(current, failed, reason=f"git failed: {redactor(str(exc))[:1000]}", fields={})
        return False


def _finish(integration, owner, project, path: Path, onto: str, head: str, merge: _Merge, redactor) -> bool:
    repo = Path(project.repo_path)
    if merge.conflict_files is not None:
        _reset(path, onto)
        files = merge.conflict_files
        _fail(
            integration,
            Status.CONFLICT,
            reason=(
                f"{integration.branch} conflicts with {project.integration_branch} in "
                f"{len(files)} file(s): {', '.join(files[:10])}"
                if files
                else f"{integration.branch} does not merge into {project.integration_branch}: "
                f"{redactor(merge.error)[:500]}"
            ),
            fields={
                "onto_commit": onto,
                "head_commit": head,
                "conflict_files": files,
                "conflict_detail": redactor(merge.conflict_detail),
            },
        )
        return False
    if not merge.changed:
        _merged(integration, owner, onto=onto, new=onto, head=head, tests=None, output="", summary={})
        return False
    markers = workspace.leftover_conflict_markers(path, onto, merge.commit)
    if markers:
        # A follow-up run committed git's conflict markers instead of resolving them.
        _reset(path, onto)
        _fail(
            integration,
            Status.CONFLICT,
            reason=f"{integration.branch} still has conflict markers in {len(markers)} file(s): "
            f"{', '.join(markers[:10])}",
            fields={"onto_commit": onto, "head_commit": head, "conflict_files": markers[:500]},
        )
        return False
    summary = merge.summary or {}
    command = integration.test_command or project.effective_integration_test_command
    passed, output = None, ""
    if command:
        integration = _move(
            integration,
            Status.TESTING,
            reason=f"running the integration tests: {command[:200]}",
            fields={"diff_summary": summary, "onto_commit": onto, "head_commit": head},
        )
        passed, output = _run_tests(project, integration, owner, path, command, redactor)
        if not passed:
            _reset(path, onto)
            _fail(
                integration,
                Status.TESTS_FAILED,
                reason=f"the integration tests failed on {integration.branch} merged into "
                f"{project.integration_branch}",
                fields={"tests_passed": False, "test_output": output, "diff_summary": summary},
            )
            return False
    # One transaction: the lease is checked with the row locked (nobody can take it before the commit),
    # then the compare-and-swap ref update, then MERGED and the task done.
    with transaction.atomic():
        task = task_locks.lock_task(integration.task_id)  # the lock order: Task, then Integration
        if not _holds_lease(integration.pk, owner):
            logger.warning(
                "integration %s: lease lost before the ref update; not moving the branch", integration.pk
            )
            return False
        if not workspace.update_ref(repo, project.integration_branch, merge.commit, onto):
            _move(
                integration,
                Status.QUEUED,
                reason=f"{project.integration_branch} moved during the merge (it is no longer at "
                f"{onto[:12]}); the merge is redone on the new head",
                fields={"lease_owner": "", "lease_expires_at": None},
            )
            record_event(
                kind="integration.branch_moved",
                subject=integration,
                data={"expected": onto, "now": workspace.ref_commit(repo, project.integration_branch) or ""},
            )
            return True
        _merged(
            integration,
            owner,
            onto=onto,
            new=merge.commit,
            head=head,
            tests=passed,
            output=output,
            summary=summary,
            task=task,
        )
    if project.integration_remote:
        _push(project, integration)
    return False


def _run_tests(project, integration, owner, path: Path, command: str, redactor) -> tuple[bool, str]:
    home = Path(settings.DATA_DIR) / "integration-homes" / project.slug
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Created by run_script only when the output is over the cap (its full text goes there).
    artifacts = Path(settings.AUTOPILOT_ARTIFACT_ROOT) / "integrations" / str(integration.pk)
    cwd = path / project.subdirectory if project.subdirectory else path
    timeout = float(getattr(settings, "AUTOPILOT_TEST_TIMEOUT", 1800))
    result = workspace.run_script(
        command, cwd=cwd, workspace=path, home=home, timeout=timeout, artifact_dir=artifacts, redact=redactor
    )
    output = result.output or ""  # redacted by run_script (redact=)
    if result.timed_out:
        output += f"\n[integration tests timed out after {timeout:g}s]"
    return result.exit_code == 0, output[-TEST_OUTPUT_TAIL:]


_UNLOCKED = object()  # _merged's default: it locks the task itself


def _merged(integration, owner, *, onto, new, head, tests, output, summary, task=_UNLOCKED) -> None:
    """MERGED and the task done (one transaction; `task`: the task when the caller's transaction
    locked it already). Pushes a changed integration branch when the caller did not lock (the caller
    that did pushes after its commit)."""
    project = integration.project
    changed = new != onto
    reason = (
        f"merged into {project.integration_branch} as {new[:12]}"
        + (" (integration tests passed)" if tests else "")
        if changed
        else f"merged with no new commit: the changes of {integration.branch} are already in "
        f"{project.integration_branch}"
    )
    with transaction.atomic(savepoint=False):
        locked_by_caller = task is not _UNLOCKED
        if not locked_by_caller:
            task = task_locks.lock_task(integration.task_id)
        _move(
            integration,
            Status.MERGED,
            reason=reason,
            fields={
                "merge_commit": new,
                "onto_commit": onto,
                "head_commit": head,
                "tests_passed": tests,
                "test_output": output,
                "diff_summary": summary,
                "finished_at": timezone.now(),
                "lease_owner": "",
                "lease_expires_at": None,
            },
            event_data={"task": integration.task_id, "merge_commit": new, "changed": changed},
        )
        if task is not None and task.status == Task.Status.INTEGRATING:
            transition(
                task,
                Task.Status.DONE,
                reason=f"integration #{integration.pk}: {reason}",
                fields={"completed_at": timezone.now()},
                event_data={"integration": integration.pk, "merge_commit": new},
            )
        seams.project_changed.send_on_commit(project.pk, f"task #{integration.task_id} merged")
    if project.integration_remote and changed and not locked_by_caller:
        _push(project, integration)


def _fail(integration, status: str, *, reason: str, fields: dict) -> None:
    """A merge that did not go in: record it, then the reaction for its task (one transaction)."""
    project = integration.project
    with transaction.atomic():
        task = task_locks.lock_task(integration.task_id)
        _move(
            integration,
            status,
            reason=reason,
            fields={**fields, "finished_at": timezone.now(), "lease_owner": "", "lease_expires_at": None},
            event_data={"task": integration.task_id},
        )
        if task is None or task.status != Task.Status.INTEGRATING:
            return
        cause = "conflict" if status == Status.CONFLICT else "tests_failed"
        if cause == "conflict" and project.conflict_policy == ConflictPolicy.HUMAN:
            record_event(
                kind=REACTION,
                subject=task,
                data={
                    "cause": cause,
                    "integration": integration.pk,
                    "action": "wait_for_human",
                    "reason": reason,
                },
            )
            return
        _rework(task, project, cause=cause, integration=integration, reason=reason)


def _rework(task, project, *, cause: str, integration, reason: str, actor=None) -> str:
    """The task goes back for a follow-up run (ready), or is blocked when it has no attempts left."""
    exhausted = task.attempts >= project.max_attempts
    target = Task.Status.BLOCKED if exhausted else Task.Status.READY
    label = {"conflict": "conflict", "tests_failed": "integration tests failed"}.get(cause, cause)
    text = (
        f"{label} (integration #{integration.pk}): {reason}; "
        + (
            f"no attempts left ({task.attempts} of {project.max_attempts})"
            if exhausted
            else f"rework (attempt {task.attempts + 1} of {project.max_attempts})"
        )
        if integration is not None
        else f"{label}: {reason}"
    )
    if task.status != target and can_transition(Task, task.status, target):
        transition(task, target, actor=actor, reason=text[:MAX_NOTE_CHARS], event_data={"cause": cause})
    record_event(
        kind=REACTION,
        subject=task,
        actor=actor,
        data={
            "cause": cause,
            "integration": integration.pk if integration is not None else None,
            "action": "blocked" if exhausted else "rework",
            "reason": reason[:500],
        },
    )
    return target


# --- Remote ---------------------------------------------------------------------------------------


def _push_env() -> dict[str, str]:
    env = workspace.git_env()
    for name in ("GIT_SSH_COMMAND", "GIT_ASKPASS", "SSH_AUTH_SOCK", "GIT_HTTP_EXTRAHEADER"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def _push(project, integration) -> None:
    """Push the integration branch (fast-forward only, never forced) and, when asked, the task's
    branch to the project's remote. A failure is an event; the merge stands."""
    remote = project.integration_remote.strip()
    redactor = Redactor.for_project(project)
    if remote.startswith("-"):
        record_event(
            kind="integration.push_failed",
            subject=integration,
            data={"remote": redactor(remote), "error": "the remote's name cannot start with '-'"},
        )
        return
    refs = [f"refs/heads/{project.integration_branch}:refs/heads/{project.integration_branch}"]
    if project.push_task_branches:
        refs.append(f"refs/heads/{integration.branch}:refs/heads/{integration.branch}")
    result = subprocess.run(
        ["git", *workspace.GIT_IDENTITY, "push", "--porcelain", "--", remote, *refs],
        cwd=project.repo_path,
        capture_output=True,
        env=_push_env(),
        timeout=300,
    )
    output = redactor((result.stdout + result.stderr).decode(errors="replace"))[-2000:]
    kind = "integration.pushed" if result.returncode == 0 else "integration.push_failed"
    record_event(
        kind=kind,
        subject=integration,
        data={"remote": redactor(remote), "refs": [r.split(":")[0] for r in refs], "output": output},
    )


# --- Human actions --------------------------------------------------------------------------------


def _lock_integration(integration: Integration) -> Integration:
    """Lock the integration's task, then the integration (the lock order: Task → Integration, as the
    merge queue's own writes take them)."""
    task_locks.lock_task(integration.task_id)
    return Integration.objects.select_for_update().select_related("project", "task").get(pk=integration.pk)


def cancel_queued(task, old: str, new: str) -> None:
    """After-hook of Task transitions: a task that leaves `integrating` for anything but done (a
    human cancelled it, sent it back, blocked it) takes its queued merge out of the queue. An
    in-flight merge finishes (it never moves a task that is no longer integrating)."""
    if old != Task.Status.INTEGRATING or new == Task.Status.DONE:
        return
    for item in Integration.objects.select_for_update().filter(task_id=task.pk, status=Status.QUEUED):
        _move(
            item,
            Status.CANCELLED,
            reason=f"task #{task.pk} moved from integrating to {new}",
            fields={"finished_at": timezone.now()},
        )


def _requeue(integration: Integration, *, actor, reason: str) -> Integration:
    project = integration.project
    repo = project.repo_path
    if Integration.objects.filter(task_id=integration.task_id, status__in=Integration.OPEN).exists():
        raise Conflict(f"Task #{integration.task_id} is already in the merge queue.")
    if ExecutionRun.objects.filter(
        task_id=integration.task_id, role=RunRole.CODE, status__in=ExecutionRun.OPEN
    ).exists():
        raise Conflict(f"Task #{integration.task_id} has a run in progress; wait for it or stop it first.")
    head = workspace.ref_commit(repo, integration.branch) or ""
    task = task_locks.lock_task(integration.task_id)
    if task.status == Task.Status.DONE or task.status == Task.Status.CANCELLED:
        raise Conflict(f"Task #{task.pk} is {task.status}; there is nothing to merge.")
    _move(
        integration,
        Status.QUEUED,
        actor=actor,
        reason=reason,
        fields={
            "attempt": integration.attempt + 1,
            "head_commit": head,
            "conflict_files": [],
            "conflict_detail": "",
            "tests_passed": None,
            "test_output": "",
            "merge_commit": "",
            "started_at": None,
            "finished_at": None,
        },
    )
    if task.status != Task.Status.INTEGRATING:
        transition(
            task,
            Task.Status.INTEGRATING,
            actor=actor,
            reason=reason,
            event_data={"integration": integration.pk},
        )
    seams.project_changed.send_on_commit(project.pk, f"integration #{integration.pk} queued again")
    return integration


def retry(integration: Integration, *, actor) -> Integration:
    """Queue a failed merge (conflict or failed tests) again, with the branch as it is now."""
    _require_operator(actor, integration.project)
    with transaction.atomic():
        current = _lock_integration(integration)
        if current.status not in Integration.FAILED:
            raise Conflict(
                f"Integration #{current.pk} is {current.status}; "
                "only a conflict or failed tests can be retried."
            )
        _requeue(current, actor=actor, reason=f"retried by {_who(actor)}")
    integration.refresh_from_db()
    return integration


def resolve(integration: Integration, *, actor) -> Integration:
    """A human fixed the task's branch after a conflict: queue it again."""
    _require_operator(actor, integration.project)
    with transaction.atomic():
        current = _lock_integration(integration)
        if current.status != Status.CONFLICT:
            raise Conflict(f"Integration #{current.pk} is {current.status}; only a conflict can be resolved.")
        if workspace.ref_commit(current.project.repo_path, current.branch) is None:
            raise ApplicationError(
                f"The branch {current.branch} no longer exists; fix it (or retry the task) first."
            )
        _requeue(current, actor=actor, reason=f"conflict resolved by {_who(actor)}")
    integration.refresh_from_db()
    return integration


def skip(integration: Integration, *, actor, reason: str) -> Integration:
    """Take an item out of the queue without merging it (queued, or failed); its task is blocked
    with the reason (its dependents stay waiting: its work is not integrated)."""
    _require_operator(actor, integration.project)
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("Skipping a merge needs a reason.")
    check_length(reason, "reason", MAX_NOTE_CHARS)
    reason = Redactor.for_project(integration.project)(reason)
    with transaction.atomic():
        current = _lock_integration(integration)
        if (
            not can_transition(Integration, current.status, Status.SKIPPED)
            or current.status in Integration.IN_FLIGHT
        ):
            raise Conflict(
                f"Integration #{current.pk} is {current.status}; "
                "only a queued or failed merge can be skipped."
            )
        task = task_locks.lock_task(current.task_id)
        text = f"skipped by {_who(actor)}: {reason}"
        _move(
            current,
            Status.SKIPPED,
            actor=actor,
            reason=text,
            fields={"finished_at": timezone.now(), "lease_owner": "", "lease_expires_at": None},
        )
        if task is not None and task.status == Task.Status.INTEGRATING:
            transition(task, Task.Status.BLOCKED, actor=actor, reason=f"integration #{current.pk} {text}")
    integration.refresh_from_db()
    return integration


def _waiting_for_human(task) -> Integration | None:
    """The task's latest integration when it failed and the task waits in `integrating` for a human."""
    if task.status != Task.Status.INTEGRATING:
        return None
    if Integration.objects.filter(task=task, status__in=Integration.OPEN).exists():
        return None
    latest = Integration.objects.filter(task=task).order_by("-queued_at", "-pk").first()
    return latest if latest is not None and latest.status in Integration.FAILED else None


def review(
    task,
    *,
    actor,
    decision: str,
    comment: str = "",
    cancel: bool = False,
    enqueue_follow_up: bool = True,
) -> TaskReview:
    """A human's review of a task's delivered work (a task in review, or one whose merge failed and
    waits for a human): approved → merge queue; changes_requested (comment required) → a follow-up
    run on the task's branch (the prompt carries the comment); rejected → back to todo (the next run
    starts afresh), or cancelled with `cancel=True`. `enqueue_follow_up=False`: the follow-up run is created
    but not handed to the workers (the caller executes it, like run_create's)."""
    project = task.project
    _require_operator(actor, project)
    if decision not in TaskReview.Decision.values:
        raise ApplicationError(
            f"Unknown review decision '{decision}'; choose from {', '.join(TaskReview.Decision.values)}."
        )
    comment = (comment or "").strip()
    check_length(comment, "comment", MAX_MESSAGE_CHARS)
    if decision == TaskReview.Decision.CHANGES_REQUESTED and not comment:
        raise ApplicationError("Requesting changes needs a comment saying what to change.")
    comment = Redactor.for_project(project)(comment)
    rework = False
    with transaction.atomic():
        locked = task_locks.lock_task(task.pk)
        failed = _waiting_for_human(locked)
        if locked.status != Task.Status.REVIEW and failed is None:
            raise Conflict(
                f"Task #{locked.pk} is {locked.status}: only a task in review (or one whose merge failed "
                "and waits for a human) can be reviewed."
            )
        run = latest_delivery(locked)
        entry = TaskReview.objects.create(
            task=locked, run=run, decision=decision, comment=comment, author=_actor(actor)
        )
        record_event(
            kind="task.reviewed",
            subject=locked,
            actor=actor,
            data={
                "review": entry.pk,
                "decision": decision,
                "run": run.pk if run else None,
                "comment": comment[:500],
            },
        )
        who = _who(actor)
        if decision == TaskReview.Decision.APPROVED:
            if run is None:
                raise ApplicationError(f"Task #{locked.pk} has no succeeded run to merge.")
            if failed is not None:
                _requeue(failed, actor=actor, reason=f"approved by {who}")
            else:
                transition(
                    locked,
                    Task.Status.INTEGRATING,
                    actor=actor,
                    reason=f"approved by {who}",
                    event_data={"review": entry.pk},
                )
                enqueue(locked, run, actor=actor)
        elif decision == TaskReview.Decision.CHANGES_REQUESTED:
            target = _rework(
                locked,
                project,
                cause="changes_requested",
                integration=None,
                reason=f"changes requested by {who}: {comment[:300]}",
                actor=actor,
            )
            rework = target == Task.Status.READY
        else:
            target = Task.Status.CANCELLED if cancel else Task.Status.TODO
            transition(
                locked,
                target,
                actor=actor,
                reason=f"rejected by {who}" + (f": {comment[:300]}" if comment else ""),
            )
    if rework:
        _start_follow_up(locked, project, actor=actor, enqueue=enqueue_follow_up)
    seams.project_changed.send_on_commit(project.pk, f"task #{task.pk} reviewed: {decision}")
    return entry


def _start_follow_up(task, project, *, actor, enqueue: bool) -> ExecutionRun | None:
    """The follow-up run asked for by a review (its branch continues the task's; runs.workspace).
    Bounded like every run the manager starts: none when the task is out of attempts or the daily
    budget is spent (then the manager starts it when it can)."""
    task.refresh_from_db()
    if task.status != Task.Status.READY:
        return None
    if project.daily_budget_usd is not None and project_spent_on(project.pk) >= project.daily_budget_usd:
        return None
    if ExecutionRun.objects.filter(task=task, role=RunRole.CODE, status__in=ExecutionRun.OPEN).exists():
        return None
    latest = ExecutionRun.objects.filter(task=task, role=RunRole.CODE).order_by("-pk").first()
    backend, model = project.agent_for("code")
    try:
        return run_create(
            project=project,
            prompt=TASK_INSTRUCTION,
            task=task,
            role=RunRole.CODE,
            agent_backend=backend,
            model=model,
            priority=task.priority,
            actor=actor,
            enqueue=enqueue,
            retry_of=latest,
            attempt=(latest.attempt + 1) if latest else 1,
        )
    except ApplicationError as exc:  # e.g. the run queue is full: the manager starts it later
        logger.info("follow-up run of task %s not started: %s", task.pk, exc)
        return None
