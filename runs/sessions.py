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
    # Aliases differ from the field and annotation names (an aggregate named like an annotation
    # would shadow it).
    totals = qs.order_by().aggregate(
        n_runs=Count("pk"),
        sum_cost=Coalesce(Sum("cost_usd"), Decimal("0")),
        sum_tokens=Coalesce(Sum("tokens"), 0),
        sum_turns=Coalesce(Sum("turns"), 0),
        avg_duration=Avg("duration"),
    )
    return {
        "runs": totals["n_runs"],
        "cost_usd": totals["sum_cost"],
        "tokens": totals["sum_tokens"],
        "turns": totals["sum_turns"],
        "avg_duration": totals["avg_duration"],
    }


def sessions_page(qs: QuerySet[ExecutionRun], number, *, per_page: int = PAGE_SIZE) -> Page:
    """One page (an out-of-range or malformed number gives the nearest valid page)."""
    return Paginator(qs, per_page).get_page(number)
