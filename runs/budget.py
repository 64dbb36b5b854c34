"""Prices, usage records and cost roll-ups (run, task, project, day).

Prices are USD per million tokens in settings.AUTOPILOT_PRICES: {model: {input, output, cache_read,
cache_write}}. A model name is looked up as given, then without a provider prefix
("anthropic:claude-sonnet-4-5" → "claude-sonnet-4-5"), then by the longest price-table key it starts
with ("claude-sonnet-4-5-20250929" → "claude-sonnet-4-5"). Unknown models cost 0 and the usage
record is flagged `priced=False`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, DecimalField, F, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from runs.models import ExecutionRun, UsageRecord

MILLION = Decimal(1_000_000)
ZERO = Decimal("0")
Q6 = Decimal("0.000001")


def price_for(model: str) -> dict[str, Decimal] | None:
    prices = settings.AUTOPILOT_PRICES
    if not model:
        return None
    name = model.split(":", 1)[1] if ":" in model else model
    for candidate in (model, name):
        if candidate in prices:
            return prices[candidate]
    matches = [key for key in prices if name.startswith(key)]
    if matches:
        return prices[max(matches, key=len)]
    return None


def cost_of(
    model: str,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> tuple[Decimal, bool]:
    """(cost in USD, priced?) for one call."""
    price = price_for(model)
    if price is None:
        return ZERO, False
    total = (
        Decimal(input_tokens) * price.get("input", ZERO)
        + Decimal(output_tokens) * price.get("output", ZERO)
        + Decimal(cache_read_tokens) * price.get("cache_read", ZERO)
        + Decimal(cache_write_tokens) * price.get("cache_write", ZERO)
    ) / MILLION
    return total.quantize(Q6), True


@transaction.atomic
def usage_record(
    *,
    run: ExecutionRun,
    model: str,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    cost_usd: Decimal | None = None,
    step_id: int | None = None,
) -> UsageRecord:
    """Record one model call and add it to the run's totals (F() updates, no read-modify-write)."""
    computed, priced = cost_of(
        model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
    )
    if cost_usd is not None:
        computed, priced = Decimal(str(cost_usd)).quantize(Q6), True
    computed = max(computed, ZERO)
    record = UsageRecord.objects.create(
        project_id=run.project_id,
        run=run,
        step_id=step_id,
        agent_backend=run.agent_backend,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        cost_usd=computed,
        priced=priced,
    )
    ExecutionRun.objects.filter(pk=run.pk).update(
        cost_usd=F("cost_usd") + computed,
        input_tokens=F("input_tokens") + input_tokens,
        output_tokens=F("output_tokens") + output_tokens,
        cache_read_tokens=F("cache_read_tokens") + cache_read_tokens,
        cache_write_tokens=F("cache_write_tokens") + cache_write_tokens,
    )
    return record


def _money(expr):
    return Coalesce(Sum(expr), Value(ZERO), output_field=DecimalField(max_digits=14, decimal_places=6))


def day_bounds(day: dt.date | None = None) -> tuple[dt.datetime, dt.datetime]:
    day = day or timezone.localdate()
    start = timezone.make_aware(dt.datetime.combine(day, dt.time.min))
    return start, start + dt.timedelta(days=1)


def project_spent_on(project_id: int, day: dt.date | None = None) -> Decimal:
    """Sum of the project's usage cost on a day (today by default) — the daily cap's measure."""
    start, end = day_bounds(day)
    return UsageRecord.objects.filter(
        project_id=project_id, created_at__gte=start, created_at__lt=end
    ).aggregate(total=_money("cost_usd"))["total"]


def run_cost(run_id: int) -> Decimal:
    return UsageRecord.objects.filter(run_id=run_id).aggregate(total=_money("cost_usd"))["total"]


def cost_by_model(*, project_id: int | None = None, run_id: int | None = None) -> list[dict]:
    qs = UsageRecord.objects.all()
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    if run_id is not None:
        qs = qs.filter(run_id=run_id)
    return list(
        qs.values("model")
        .annotate(
            cost_usd=_money("cost_usd"),
            input_tokens=Coalesce(Sum("input_tokens"), 0),
            output_tokens=Coalesce(Sum("output_tokens"), 0),
            calls=Count("id"),
        )
        .order_by("-cost_usd")
    )
