"""The OpenAPI schema documents every status the API can answer, not only the happy one.

`AutoSchema` (REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]) adds the error answers of the whole API to each
operation that does not document them itself, all with the one `Error` body:

- 400 invalid input (a query parameter, a field, malformed or too deeply nested JSON),
- 401/403 not logged in (403 with session authentication first) or a role too low,
- 404 no such object, or one of a project you are not a member of (the same answer for both),
- 409 the object's current state refuses the request (writes only),
- 413 the body is over the size limit (operations with a body),
- 429 throttled, or the run queue is full.

The token endpoint (no authentication) gets 400, 403, 413 and 429.
"""

from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

ERROR_DESCRIPTIONS = {
    "400": "Invalid input: `detail` names the problem, or the body maps each bad field to its errors.",
    "401": "Not authenticated.",
    "403": "Not authenticated (with session authentication first, DRF answers 403), a bad token, "
    "or your role on the project is too low (`detail` names the role needed).",
    "404": "No such object, or it belongs to a project you are not a member of (the same answer).",
    "409": "The object's current state does not allow this (e.g. a run that already ended).",
    "413": "The request body is over the size limit; `detail` names the limit.",
    "429": "Too many requests (throttled), or the run queue is full; retry later.",
}


class ErrorSerializer(serializers.Serializer):
    """Every error answer. Either `detail` (with `extra` for machines) or one entry per invalid field."""

    detail = serializers.JSONField(
        required=False, help_text="What went wrong: a message (or, rarely, a list of messages)."
    )
    extra = serializers.DictField(required=False, help_text="Machine-readable details of the error.")

    class Meta:
        ref_name = "Error"


def error_response(code: int | str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[str(code)])


class AutoSchema(openapi.AutoSchema):
    def _error_codes(self) -> list[str]:
        has_body = self.method in ("POST", "PUT", "PATCH")
        if self.get_auth() == []:  # public (e.g. the token endpoint)
            return ["400", "403", *(["413"] if has_body else []), "429"]
        codes = ["400", "401", "403", "404"]
        if self.method not in ("GET", "HEAD", "OPTIONS"):
            codes.append("409")
        if has_body:
            codes.append("413")
        codes.append("429")
        return codes

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            if code not in responses:
                responses[code] = self._get_response_for_code(error_response(code), code, direction=direction)
        return responses
