"""Row locks of tasks, in the lock order documented in `autopilot.locks` (Project → Task → Run → Step;
rows of one table by primary key). A caller that also locks the task's project locks it first."""

from __future__ import annotations

from collections.abc import Iterable

from blueprints.models import Task


def lock_task(task_id: int, *, related: tuple[str, ...] = ()) -> Task | None:
    """Lock one task row (None when it is gone); `related` rows are read, not locked."""
    qs = Task.objects.select_for_update(of=("self",))
    if related:
        qs = qs.select_related(*related)
    return qs.filter(pk=task_id).first()


def lock_tasks(task_ids: Iterable[int]) -> list[Task]:
    """Lock several task rows, in primary-key order."""
    return list(Task.objects.select_for_update(of=("self",)).filter(pk__in=list(task_ids)).order_by("pk"))
