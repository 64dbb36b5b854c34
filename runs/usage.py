"""Reads for the usage page: spend and tokens of the visible projects over a date range, by day and
project, by project (with today's spend against the daily cap), by model and by backend, from
runs.models.UsageRecord (one row per LLM call or agent turn). The learning metrics are the manager's
(autopilot.manager.metrics.learning_report)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.db.models import Count, DecimalField, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from autopilot.models import Project
from runs.budget import day_bounds
from runs.models import UsageRecord

ZERO = Decimal("0")
DEFAULT_DAYS = 14


def default_range(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    today = today or timezone.localdate()
    return today - dt.timedelta(days=DEFAULT_DAYS - 1), today


def _sums():
    return {
        "cost_usd": Coalesce(
            Sum("cost_usd"), Value(ZERO), output_field=DecimalField(max_digits=14, decimal_places=6)
        ),
        "input_tokens": Coalesce(Sum("input_tokens"), 0),
        "output_tokens": Coalesce(Sum("output_tokens"), 0),
        "calls": Count("id"),
    }


def usage_report(projects: list[Project], start: dt.date, end: dt.date) -> dict:
    """Everything the usage page shows for `projects` (already scoped to the caller) from `start` to
    `end` inclusive (local dates). A constant number of queries, whatever the number of projects."""
    since, _ = day_bounds(start)
    _, until = day_bounds(end)
    ids = [p.pk for p in projects]
    records = UsageRecord.objects.filter(project_id__in=ids, created_at__gte=since, created_at__lt=until)
    by_day_project = list(
        records.annotate(day=TruncDate("created_at"))
        .values("day", "project_id")
        .annotate(**_sums())
        .order_by("day")
    )
    by_project = {
        row["project_id"]: row for row in records.values("project_id").annotate(**_sums()).order_by()
    }
    by_model = list(records.values("model").annotate(**_sums()).order_by("-cost_usd", "model"))
    by_backend = list(
        records.values("agent_backend").annotate(**_sums()).order_by("-cost_usd", "agent_backend")
    )
    today_start, today_end = day_bounds()
    today = {
        row["project_id"]: row["cost_usd"]
        for row in UsageRecord.objects.filter(
            project_id__in=ids, created_at__gte=today_start, created_at__lt=today_end
        )
        .values("project_id")
        .annotate(**_sums())
        .order_by()
    }
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    names = {p.pk: p.name for p in projects}
    per_day: dict[dt.date, dict[int, dict]] = {d: {} for d in days}
    for row in by_day_project:
        day = row["day"] if isinstance(row["day"], dt.date) else dt.date.fromisoformat(str(row["day"]))
        per_day.setdefault(day, {})[row["project_id"]] = row
    spending = [p for p in projects if p.pk in by_project]
    project_rows = []
    for project in projects:
        row = by_project.get(project.pk) or {
            "cost_usd": ZERO,
            "input_tokens": 0,
            "output_tokens": 0,
            "calls": 0,
        }
        project_rows.append(
            {
                "project": project,
                "name": project.name,
                **{k: row[k] for k in _sums()},
                "today_usd": today.get(project.pk, ZERO),
                "daily_cap_usd": project.daily_budget_usd,
            }
        )
    totals = {k: sum((r[k] for r in project_rows), ZERO if k == "cost_usd" else 0) for k in _sums()}
    return {
        "start": start,
        "end": end,
        "days": days,
        "names": names,
        "spending_projects": spending,
        "per_day": [(day, per_day.get(day, {})) for day in days],
        "projects": sorted(project_rows, key=lambda r: (-r["cost_usd"], r["name"])),
        "models": by_model,
        "backends": by_backend,
        "totals": totals,
    }
