"""A JSON parser that refuses absurdly nested documents with a 400 instead of a RecursionError (500).

Python's json module recurses once per nesting level: 100,000 nested lists raise RecursionError, and a
document that parses a few hundred levels deep can still blow the stack later (serializing it for the
database, redacting it). Real API payloads nest a handful of levels; MAX_DEPTH leaves ample room.
"""

from __future__ import annotations

import json

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 64


def nesting_depth_exceeds(data, limit: int = MAX_DEPTH) -> bool:
    """Whether `data` (parsed JSON) nests lists/objects more than `limit` levels deep. Iterative."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


class JSONTooDeep(ValueError):
    pass


def loads_bounded(text: str | bytes):
    """json.loads with the same depth limit as the parser: JSONTooDeep when nested deeper, ValueError
    (json.JSONDecodeError) when not JSON."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise JSONTooDeep(f"JSON is nested too deeply (the limit is {MAX_DEPTH} levels).") from None
    if nesting_depth_exceeds(data):
        raise JSONTooDeep(f"JSON is nested too deeply (the limit is {MAX_DEPTH} levels).")
    return data


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                f"JSON parse error - nested too deeply (the limit is {MAX_DEPTH} levels)."
            ) from None
        if nesting_depth_exceeds(data):
            raise ParseError(f"JSON parse error - nested too deeply (the limit is {MAX_DEPTH} levels).")
        return data
