"""Serializer fields and query-string readers that refuse what the database cannot hold."""

from __future__ import annotations

from rest_framework import serializers

from autopilot.api.parsers import MAX_DEPTH, nesting_depth_exceeds
from autopilot.input_limits import BIGINT_MAX


class IdField(serializers.IntegerField):
    """An object id: a whole number from 1 to the largest 64-bit integer (larger ones would overflow)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", BIGINT_MAX)
        super().__init__(**kwargs)


def query_id(request, name: str, *, required: bool = False) -> int | None:
    """The id in `?name=` (or None when absent and not required); a 400 naming `name` when it is not one."""
    raw = request.query_params.get(name)
    if raw in (None, ""):
        if required:
            raise serializers.ValidationError({name: ["This query parameter is required."]})
        return None
    field = IdField()
    try:
        return field.run_validation(raw)
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({name: exc.detail}) from None


class JSONField(serializers.JSONField):
    """DRF's JSONField parses the text of a form field with json.loads: bound its nesting like the
    JSON parser does (autopilot.api.parsers), so deep text is a 400 naming the field, not a 500."""

    def to_internal_value(self, data):
        try:
            value = super().to_internal_value(data)
        except RecursionError:
            value = None
        else:
            if not nesting_depth_exceeds(value):
                return value
        raise serializers.ValidationError(f"JSON is nested too deeply (the limit is {MAX_DEPTH} levels).")
