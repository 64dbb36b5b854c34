"""Row locks of the core, in THE lock order of the whole code base.

Every transaction that locks rows of more than one table takes them in this order, and rows of one
table by ascending primary key (Saleor's `lock_objects.py`):

    Project → Task → Run → Step

(`autopilot.locks` for projects, `blueprints.locks` for tasks, `runs.locks` for runs and steps). Two
services that lock the same rows then wait for each other in a line, never in a circle, so PostgreSQL
never has to break a deadlock. `select_for_update(of=("self",))` keeps a lock on the model's own rows
even where the query joins others for reading.
"""

from __future__ import annotations

from collections.abc import Iterable

from autopilot.models import Project


def lock_project(project_id: int, *, no_key: bool = False) -> Project:
    """Lock one project row (`no_key`: FOR NO KEY UPDATE, which lets other transactions insert rows
    that reference the project)."""
    return Project.objects.select_for_update(no_key=no_key, of=("self",)).get(pk=project_id)


def lock_projects(project_ids: Iterable[int], *, no_key: bool = False) -> list[Project]:
    """Lock several project rows, in primary-key order."""
    qs = Project.objects.select_for_update(no_key=no_key, of=("self",)).filter(pk__in=list(project_ids))
    return list(qs.order_by("pk"))
