"""Readiness: which tasks are ready (every dependency done), derived set-based and incrementally.

The rule (`refresh_readiness`) is one set of statements for any number of projects. A tick does not
re-derive every task: each task carries `readiness_mark` (see Task.READINESS_*), set to "stale" by
whatever can change its readiness, and the tick re-derives only the stale ones:

- a new task is stale (the column's default, also for raw inserts);
- a task whose status crosses the "done" boundary makes its dependents stale, and a task moved to
  to-do or ready makes itself stale (`status_changed`, called by `autopilot.state.transition`);
- a dependency added or removed makes its task stale (`mark_stale`, called by the services and the
  generator); a deleted task makes its dependents stale first (`mark_dependents_stale`);
- a milestone the rule itself completes or reopens pulls its dependents into the same pass.

An hourly sweep (`refresh_ready_everywhere`) re-derives every task, for writes behind the services.

Concurrency: the pass first *claims* the stale tasks and clears only what it claimed. On SQLite
writers are serialized, so nothing interleaves and the stale mark is the claim. On PostgreSQL the
claim moves stale -> the pass's own negative token, skipping rows a writer holds (that writer's
commit requests a tick of its own), and holds the claimed rows until commit, so a writer marking
one of them stale again waits and its mark survives the pass.
`full=True` (`autopilot task refresh`, `refresh_ready`) re-derives every task of the projects.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from blueprints.models import Task, TaskDependency
from blueprints.selectors import unfinished_dependency_exists

CURRENT, STALE = Task.READINESS_CURRENT, Task.READINESS_STALE
SATISFIED = Task.SATISFIED
SELF_CHECKED = Task.UNSTARTED


def mark_stale(task_ids: Iterable[int] | QuerySet) -> int:
    """These tasks' readiness must be re-derived by the next tick."""
    if isinstance(task_ids, QuerySet):
        return Task.objects.filter(pk__in=task_ids).exclude(readiness_mark=STALE).update(readiness_mark=STALE)
    ids = sorted(set(task_ids))
    return sum(  # in slices: a statement's parameters are limited (SQLite 32,766; PostgreSQL 65,535)
        Task.objects.filter(pk__in=ids[i : i + 10_000])
        .exclude(readiness_mark=STALE)
        .update(readiness_mark=STALE)
        for i in range(0, len(ids), 10_000)
    )


def mark_dependents_stale(task_ids: Iterable[int]) -> int:
    """The tasks that depend on these ones must have their readiness re-derived."""
    ids = list(task_ids)
    if not ids:
        return 0
    return mark_stale(TaskDependency.objects.filter(depends_on_id__in=ids).values("task_id"))


def status_changed(task: Task, old: str, new: str) -> None:
    """Bookkeeping after one task's status changed (an after-hook of `autopilot.state.transition`)."""
    if (old in SATISFIED) != (new in SATISFIED):
        mark_dependents_stale([task.pk])
    if new in SELF_CHECKED:
        mark_stale([task.pk])


def _claim(project_ids: list[int]) -> tuple[int, bool]:
    """Claim the stale tasks of these projects for one pass: (the mark they now carry, any claimed?).

    PostgreSQL: stale -> a token of this pass, skipping rows another transaction holds (its commit
    requests a tick of its own). SQLite serializes writers (IMMEDIATE transactions), so nothing can
    mark a task while the pass runs: the stale mark itself is the claim (one write per task, not two).
    """
    stale = Task.objects.filter(project_id__in=project_ids, readiness_mark=STALE)
    if not connection.features.has_select_for_update_skip_locked:
        return STALE, stale.exists()
    token = -2 - secrets.randbelow(2**31 - 3)  # negative: never CURRENT or STALE
    # NO KEY: the claim must not block the foreign-key checks of rows that reference these tasks (a
    # tick inserting their runs), or the two could wait on each other.
    claimed = Task.objects.filter(pk__in=stale.select_for_update(skip_locked=True, no_key=True).values("pk"))
    return token, bool(claimed.update(readiness_mark=token))


def _pull_dependents(task_ids: list[int], token: int) -> None:
    """Dependents of tasks this pass changed join the pass (a milestone's completion cascades)."""
    Task.objects.filter(
        pk__in=TaskDependency.objects.filter(depends_on_id__in=task_ids).values("task_id")
    ).exclude(readiness_mark=token).update(readiness_mark=token)


def refresh_readiness(project_ids, *, now=None, full: bool = False) -> dict:
    """THE readiness rule over the stale tasks of any number of projects (`full`: over all of their
    tasks). A constant number of statements however many tasks (plus one per milestone cascade step):

    1. done milestones with an unfinished dependency reopen (repeated while reopening cascades),
    2. ready work tasks with an unfinished dependency go back to todo,
    3. todo/ready milestones whose dependencies are all done complete (repeated while they cascade),
    4. todo work tasks whose dependencies are all done become ready (never removed-from-spec ones).

    Returns counts and, per project, the changed task ids by new state ("reopened", "todo", "done",
    "ready") for the caller's report or event; "checked" is how many stale tasks were re-derived.
    """
    project_ids = list(project_ids)
    now = now or timezone.now()
    counts: dict = {
        "promoted": 0,
        "demoted": 0,
        "milestones": 0,
        "milestones_reopened": 0,
        "checked": 0,
        "by_project": {},
    }
    if not project_ids:
        return counts
    by_project: dict[int, dict[str, list[int]]] = counts["by_project"]
    blocked = unfinished_dependency_exists()

    def apply(queryset, label: str, *, cascade: bool = False, **values) -> int:
        # SELECT the ids for the report, then ONE UPDATE with the same condition.
        rows = list(queryset.values_list("pk", "project_id"))
        if rows:
            queryset.update(updated_at=now, **values)
            for pk, project_id in rows:
                by_project.setdefault(project_id, {}).setdefault(label, []).append(pk)
            if cascade and not full:
                _pull_dependents([pk for pk, _ in rows], token)
        return len(rows)

    def repeat(queryset, label: str, **values) -> int:
        total = 0
        for _ in range(100):  # chains of milestones: each pass can unlock the next
            changed = apply(queryset, label, cascade=True, **values)
            total += changed
            if not changed:
                break
        return total

    with transaction.atomic():
        token, claimed = _claim(project_ids)
        claimed_tasks = Task.objects.filter(project_id__in=project_ids, readiness_mark=token)
        if full:
            scope = Task.objects.filter(project_id__in=project_ids)
        elif claimed:
            scope = claimed_tasks
        else:
            return counts
        work, milestones = scope.filter(kind=Task.Kind.WORK), scope.filter(kind=Task.Kind.MILESTONE)
        counts["milestones_reopened"] = repeat(
            milestones.filter(status=Task.Status.DONE).filter(blocked),
            "reopened",
            status=Task.Status.TODO,
            completed_at=None,
        )
        counts["demoted"] = apply(
            work.filter(status=Task.Status.READY).filter(blocked), "todo", status=Task.Status.TODO
        )
        counts["milestones"] = repeat(
            milestones.filter(status__in=Task.UNSTARTED).exclude(blocked),
            "done",
            status=Task.Status.DONE,
            completed_at=now,
        )
        counts["promoted"] = apply(
            work.filter(status=Task.Status.TODO, removed_from_spec=False).exclude(blocked),
            "ready",
            status=Task.Status.READY,
        )
        counts["checked"] = claimed_tasks.update(readiness_mark=CURRENT) if claimed else 0
    return counts
