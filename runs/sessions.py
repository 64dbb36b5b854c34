"""Reads for the sessions history: runs with their measures (tokens, duration), totals of a filtered
set, and a page of it. Shared by the web page and the API list (runs.api.runs.RunViewSet)."""

from __future__ import annotations

from decimal import Decimal

from django.core.paginator import Page, Paginator
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, QuerySet, Sum
from django.db.models.functions import Coalesce

from runs.models import ExecutionRun
from runs.selectors import runs_visible_to

PAGE_SIZE = 25


def with_measures(qs: QuerySet[ExecutionRun]) -> QuerySet[ExecutionRun]:
    """Annotate `tokens` (input + output) and `duration` (started → ended; None while unfinished)."""
    return qs.annotate(
        tokens=F("input_tokens") + F("output_tokens"),
        duration=ExpressionWrapper(F("ended_at") - F("started_at"), output_field=DurationField()),
    )


def sessions_of(user) -> QuerySet[ExecutionRun]:
    """Every run of the projects `user` can see, with its measures."""
    return with_measures(runs_visible_to(user))


def sessions_totals(qs: QuerySet[ExecutionRun]) -> dict:
    """Count, cost, tokens, turns and the mean duration of a (filtered) set, in one query."""
    totals = qs.order_by().aggregate(
        runs=Count("pk"),
        cost_usd=Coalesce(Sum("cost_usd"), Decimal("0")),
        tokens=Coalesce(Sum("tokens"), 0),
        turns=Coalesce(Sum("turns"), 0),
        avg_duration=Avg("duration"),
    )
    return totals


def sessions_page(qs: QuerySet[ExecutionRun], number, *, per_page: int = PAGE_SIZE) -> Page:
    """One page (an out-of-range or malformed number gives the nearest valid page)."""
    return Paginator(qs, per_page).get_page(number)
