"""The API's one pagination: ?limit=&offset=, PAGE_SIZE items by default and never more than
AUTOPILOT_API_MAX_PAGE_SIZE, so no single request serializes a whole table (bench/api.py: a list
item costs about a millisecond of CPU, and one `?limit=100000` would hold the server for seconds)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    @property
    def max_limit(self) -> int:
        return settings.AUTOPILOT_API_MAX_PAGE_SIZE
