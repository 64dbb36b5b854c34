"""Reads of the merge queue (runs.integration writes): what every door shows about integration.

- `queue_status(project)`: the queue with positions, the merge in flight (with its test output so far),
  recent merges with their test results, conflicts and test failures waiting, and the integration
  branch against the base (commits ahead and behind, diff stat), read from the real repository.
- `task_integration(task)`: one task's branch, start commit, merge state, merge commit and runs.
- `pr_body(task)`: a ready pull-request description in Markdown.
- `integration_diff(project)`: `git diff base...integration` (capped, redacted) for the "open diff" page.

Git reads never raise: a missing repository or branch becomes a `problem` the page shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Exists, F, OuterRef, QuerySet, Sum

from autopilot.errors import NotFound
from runs import integration
from runs.models import ExecutionRun, Integration, TaskReview
from runs.redaction import Redactor
from runs.workspace import WorkspaceError, git

RECENT_MERGES = 10
MAX_COMMITS_SHOWN = 50
MAX_DIFF_BYTES = 2_000_000
MAX_SECTION_CHARS = 4000
LATEST_FIRST = F("finished_at").desc(nulls_last=True)  # the same order on SQLite and PostgreSQL


def integrations_of(project) -> QuerySet[Integration]:
    return Integration.objects.filter(project=project).select_related("task", "run", "created_by")


def integration_get(project, integration_id: int) -> Integration:
    found = integrations_of(project).filter(pk=integration_id).first()
    if found is None:
        raise NotFound(f"No integration #{integration_id} in project '{project.name}'.")
    return found


# --- The project's queue --------------------------------------------------------------------------


@dataclass
class BranchComparison:
    """The integration branch against the base branch, from the repository."""

    integration_branch: str
    base_branch: str
    exists: bool = False
    integration_head: str = ""
    base_head: str = ""
    ahead: int = 0
    behind: int = 0
    commits: list[dict[str, str]] = field(default_factory=list)
    diff_stat: dict[str, Any] = field(default_factory=lambda: {"files": [], "added": 0, "removed": 0})
    problem: str = ""


@dataclass
class QueueStatus:
    project: Any
    queue: list[Integration]
    in_flight: Integration | None
    recent: list[Integration]
    waiting: list[Integration]
    head: BranchComparison

    @property
    def review_required(self) -> bool:
        return integration.review_needed(self.project)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "queued": len(self.queue),
            "in_flight": int(self.in_flight is not None),
            "waiting": len(self.waiting),
        }


def _rev(repo: str, ref: str) -> str:
    return git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{ref}^{{commit}}", check=False)


def compare_branches(project) -> BranchComparison:
    """Commits the integration branch has over the base (and behind it), and the diff stat of
    `base...integration` (what merging it into the base would bring)."""
    result = BranchComparison(integration_branch=project.integration_branch, base_branch=project.base_branch)
    repo = project.repo_path
    try:
        result.base_head = _rev(repo, project.base_branch)
        if not result.base_head:
            result.problem = f"The base branch '{project.base_branch}' does not exist in the repository."
            return result
        result.integration_head = _rev(repo, project.integration_branch)
        if not result.integration_head:
            result.problem = (
                f"The integration branch '{project.integration_branch}' does not exist yet "
                "(it is created from the base branch at the first merge)."
            )
            return result
        result.exists = True
        if project.integrates_into_base:
            return result
        base, head = result.base_head, result.integration_head
        counts = git(repo, "rev-list", "--left-right", "--count", f"{base}...{head}").split()
        result.behind, result.ahead = int(counts[0]), int(counts[1])
        log = git(
            repo,
            "log",
            f"--max-count={MAX_COMMITS_SHOWN}",
            "--format=%H%x1f%s%x1f%an%x1f%cI",
            f"{base}..{head}",
        )
        redact = Redactor()
        for line in log.splitlines():
            sha, subject, author, when = (line.split("\x1f") + ["", "", ""])[:4]
            result.commits.append({"sha": sha, "subject": redact(subject), "author": author, "date": when})
        merge_base = git(repo, "merge-base", base, head, check=False)
        if merge_base:
            result.diff_stat = _numstat(repo, merge_base, head)
    except (WorkspaceError, OSError, ValueError) as exc:
        result.exists = False
        result.problem = f"Cannot read the repository at '{repo}': {exc}"
    return result


def _numstat(repo: str, base: str, head: str) -> dict[str, Any]:
    files, added, removed = [], 0, 0
    for line in git(repo, "diff", "--numstat", "--no-renames", base, head).splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        a = int(parts[0]) if parts[0].isdigit() else 0
        r = int(parts[1]) if parts[1].isdigit() else 0
        files.append({"path": parts[2], "added": a, "removed": r})
        added, removed = added + a, removed + r
    return {"files": files, "added": added, "removed": removed}


def _waiting(project) -> QuerySet[Integration]:
    """Failed merges (conflict / tests failed) that nothing newer of the same task has superseded."""
    newer = Integration.objects.filter(task=OuterRef("task"), pk__gt=OuterRef("pk"))
    return (
        integrations_of(project)
        .filter(status__in=Integration.FAILED)
        .filter(~Exists(newer))
        .order_by(LATEST_FIRST, "-id")
    )


def queue_status(project) -> QueueStatus:
    """The project's merge queue right now. Positions: the order the queue takes them (queued_at, id)."""
    queue = list(
        integrations_of(project).filter(status=Integration.Status.QUEUED).order_by("queued_at", "id")
    )
    for position, item in enumerate(queue, start=1):
        item.position = position
    in_flight = integrations_of(project).filter(status__in=Integration.IN_FLIGHT).first()
    recent = list(
        integrations_of(project)
        .filter(status=Integration.Status.MERGED)
        .order_by("-finished_at", "-id")[:RECENT_MERGES]
    )
    return QueueStatus(
        project=project,
        queue=queue,
        in_flight=in_flight,
        recent=recent,
        waiting=list(_waiting(project)[:100]),
        head=compare_branches(project),
    )


def integration_diff(project, *, max_bytes: int = MAX_DIFF_BYTES) -> tuple[str, bool, str]:
    """(diff text, truncated, problem): `git diff base...integration`, redacted and capped."""
    comparison = compare_branches(project)
    if not comparison.exists:
        return "", False, comparison.problem
    if project.integrates_into_base:
        return "", False, "The project integrates straight into its base branch: there is no diff to show."
    try:
        text = git(
            project.repo_path,
            "diff",
            "--no-color",
            "--no-ext-diff",
            f"{comparison.base_head}...{comparison.integration_head}",
        )
    except (WorkspaceError, OSError) as exc:
        return "", False, f"Cannot read the diff: {exc}"
    truncated = len(text) > max_bytes
    if truncated:
        text = text[:max_bytes]
    return Redactor.for_project(project)(text), truncated, ""


# --- One task --------------------------------------------------------------------------------------


@dataclass
class TaskIntegration:
    task: Any
    branch: str
    start_ref: str
    start_commit: str
    merge_state: str  # the latest integration's status, "" when never queued
    merge_commit: str
    latest: Integration | None
    integrations: list[Integration]
    runs: list[ExecutionRun]
    reviews: list[TaskReview]
    review_required: bool
    can_review: bool  # the task is waiting for a human decision (status review)


def _code_runs(task) -> QuerySet[ExecutionRun]:
    return ExecutionRun.objects.filter(task=task).select_related("project").order_by("-created_at", "-id")


def _reviewable(task, latest: Integration | None) -> bool:
    """A task in review, or one whose merge failed and that waits for a human (runs.integration.review
    takes both)."""
    if task.status == task.Status.REVIEW:
        return True
    return (
        task.status == task.Status.INTEGRATING and latest is not None and latest.status in Integration.FAILED
    )


def task_integration(task) -> TaskIntegration:
    runs = list(_code_runs(task)[:50])
    integrations = list(
        Integration.objects.filter(task=task)
        .select_related("run", "created_by")
        .order_by("-queued_at", "-id")
    )
    latest = integrations[0] if integrations else None
    delivering = next((run for run in runs if run.branch), None)
    merged = next((item for item in integrations if item.status == Integration.Status.MERGED), None)
    return TaskIntegration(
        task=task,
        branch=(latest.branch if latest else "") or (delivering.branch if delivering else ""),
        start_ref=delivering.start_ref if delivering else "",
        start_commit=delivering.base_commit if delivering else "",
        merge_state=latest.status if latest else "",
        merge_commit=merged.merge_commit if merged else "",
        latest=latest,
        integrations=integrations,
        runs=runs,
        reviews=list(TaskReview.objects.filter(task=task).select_related("author", "run")[:50]),
        review_required=integration.review_needed(task.project),
        can_review=_reviewable(task, latest),
    )


def _spec_section(task) -> tuple[str, str]:
    """(heading, excerpt) of the plan node the task came from ("", "" when it has none)."""
    node = task.plan_node
    if node is None:
        return "", ""
    try:
        source = node.blueprint.source_text
    except Exception:  # noqa: BLE001 - a missing text must not break a read; the heading still helps
        source = ""
    excerpt = source[node.start : node.end].strip() if source else ""
    if len(excerpt) > MAX_SECTION_CHARS:
        excerpt = excerpt[:MAX_SECTION_CHARS].rstrip() + "\n…"
    return f"{node.title} (#{node.anchor})", excerpt


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def pr_body(task) -> str:
    """A pull-request description of the task's delivered work, in Markdown (redacted)."""
    info = task_integration(task)
    project = task.project
    runs = info.runs
    delivered = next((run for run in runs if run.status == ExecutionRun.Status.SUCCEEDED), None)
    cost = ExecutionRun.objects.filter(task=task).aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
    lines = [f"# {task.title}", ""]
    target = info.latest.target_branch if info.latest else project.integration_branch
    lines.append(
        f"Task #{task.pk} of project **{project.name}** · branch `{info.branch or '—'}` into `{target}`"
        + (
            f" · started from `{info.start_ref or 'base'}` at `{info.start_commit[:12]}`"
            if info.start_commit
            else ""
        )
    )
    lines += ["", "## Task", "", task.body.strip() or "_(no description)_", ""]
    heading, excerpt = _spec_section(task)
    if heading:
        lines += ["## Spec section", "", f"**{heading}**", ""]
        if excerpt:
            lines += [_quote(excerpt), ""]
    lines += ["## Summary", ""]
    if delivered and delivered.result_summary.strip():
        lines += [delivered.result_summary.strip(), ""]
    else:
        lines += ["_(no run of this task has succeeded yet)_" if delivered is None else "_(no summary)_", ""]
    diff = (info.latest.diff_summary if info.latest and info.latest.diff_summary else None) or (
        delivered.diff_summary if delivered else None
    )
    lines += ["## Changes", ""]
    if diff and diff.get("files"):
        lines += ["| File | + | − |", "| --- | ---: | ---: |"]
        for item in diff["files"][:200]:
            lines.append(f"| `{item.get('path', '')}` | {item.get('added', 0)} | {item.get('removed', 0)} |")
        lines += ["", f"{len(diff['files'])} file(s), +{diff.get('added', 0)} −{diff.get('removed', 0)}", ""]
    else:
        lines += ["_(no changes recorded)_", ""]
    lines += ["## Tests", ""]
    tested = next((item for item in info.integrations if item.tests_passed is not None), None)
    if tested:
        verdict = "passed" if tested.tests_passed else "failed"
        command = tested.test_command or project.effective_integration_test_command
        lines.append(
            f"Integration tests {verdict} (`{command}`) on integration #{tested.pk} ({tested.status})."
        )
        if tested.test_output.strip():
            tail = "\n".join(tested.test_output.strip().splitlines()[-20:])
            lines += ["", "```", tail.replace("```", "ʼʼʼ"), "```"]
    elif project.effective_integration_test_command:
        lines.append(f"Not run yet (`{project.effective_integration_test_command}`).")
    else:
        lines.append("The project has no test command.")
    lines += ["", "## Cost", ""]
    lines.append(
        f"${cost:.4f} over {len(runs)} run(s)"
        + (f"; merged as `{info.merge_commit[:12]}`" if info.merge_commit else "")
        + "."
    )
    if info.reviews:
        review = info.reviews[0]
        who = review.author.get_username() if review.author else "someone"
        lines += ["", f"Last review: {review.get_decision_display().lower()} by {who}."]
    return Redactor.for_project(project)("\n".join(lines).rstrip() + "\n")
