"""The API's one pagination: ?limit=&offset=, PAGE_SIZE items by default and never more than
AUTOPILOT_API_MAX_PAGE_SIZE, so no single request serializes a whole table (bench/api.py: a list
item costs about a millisecond of CPU, and one `?limit=100000` would hold the server for seconds).
An offset the database cannot represent is a 400 naming `offset` instead of an OverflowError."""

from __future__ import annotations

from django.conf import settings
from rest_framework import pagination
from rest_framework.exceptions import ValidationError

from autopilot.input_limits import BIGINT_MAX


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    @property
    def max_limit(self) -> int:
        return settings.AUTOPILOT_API_MAX_PAGE_SIZE

    def get_offset(self, request):
        offset = super().get_offset(request)
        most = BIGINT_MAX - self.max_limit
        if offset > most:
            raise ValidationError({self.offset_query_param: [f"Ensure this value is at most {most}."]})
        return offset
