"""Limit/offset pagination with bounds: a page holds at most MAX_LIMIT rows, and an offset the
database cannot represent is a 400 naming `offset` instead of an OverflowError."""

from __future__ import annotations

from rest_framework import pagination
from rest_framework.exceptions import ValidationError

from autopilot.input_limits import BIGINT_MAX

MAX_LIMIT = 1000
MAX_OFFSET = BIGINT_MAX - MAX_LIMIT


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    max_limit = MAX_LIMIT

    def get_offset(self, request):
        offset = super().get_offset(request)
        if offset > MAX_OFFSET:
            raise ValidationError({self.offset_query_param: [f"Ensure this value is at most {MAX_OFFSET}."]})
        return offset
