"""django-q2 schedules, registered idempotently by `autopilot setup` and `autopilot serve`."""

from __future__ import annotations

from django.conf import settings
from django_q.models import Schedule

SCHEDULES = {
    # name: (function path, minutes)
    "autopilot-tick": ("autopilot.tasks.scheduled_tick", 1),
    "runs-cleanup-worktrees": ("runs.tasks.cleanup_worktrees", 60),
    # The tick re-derives only stale tasks; this re-derives all (repairs writes behind the services).
    "blueprints-readiness-sweep": ("blueprints.tasks.readiness_sweep", 60),
}


def ensure_schedules() -> list[str]:
    names = []
    minutes_default = max(1, settings.AUTOPILOT_TICK_SECONDS // 60)
    for name, (func, minutes) in SCHEDULES.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes or minutes_default,
                "repeats": -1,
            },
        )
        names.append(name)
    return names
