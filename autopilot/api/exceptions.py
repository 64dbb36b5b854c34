"""Map domain errors to clean API responses in one place.

Every error is JSON: `{"detail": ...}` (plus `extra` for machines) or DRF's field errors. Bodies over
Django's size limits become a 413 naming the limit (Django's default is an HTML 400 page).
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from django.views import defaults
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from autopilot.errors import ApplicationError


def _too_big(exc) -> Response:
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        detail = (
            f"The request body is larger than the limit of {limit:,} bytes "
            "(DATA_UPLOAD_MAX_MEMORY_SIZE, from AUTOPILOT_MAX_BLUEPRINT_BYTES)."
        )
        return Response({"detail": detail, "extra": {"limit_bytes": limit}}, status=413)
    if isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return Response(
            {"detail": f"Too many files in one request; the limit is {limit:,}.", "extra": {"limit": limit}},
            status=413,
        )
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    return Response(
        {
            "detail": f"Too many form fields in one request; the limit is {limit:,}.",
            "extra": {"limit": limit},
        },
        status=413,
    )


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        body = {"detail": exc.message}
        if exc.extra:
            body["extra"] = exc.extra
        return Response(body, status=exc.status_code)
    if isinstance(exc, (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)):
        return _too_big(exc)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = drf_exceptions.ValidationError(detail=detail)
    return drf_exception_handler(exc, context)


# --- Django's own error pages, as JSON under /api/ ---------------------------------------------------
# A URL the API's routes don't match (e.g. /api/runs/abc/: ids are digits) never reaches DRF; Django
# answers with an HTML page. Under /api/ these handlers answer JSON like every other API error.


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request, exception=None):
    if _is_api(request):
        return JsonResponse({"detail": f"No API endpoint at '{request.path}'."}, status=404)
    return defaults.page_not_found(request, exception)


def bad_request(request, exception=None):
    if _is_api(request):
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse(_too_big(exception).data, status=413)
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def server_error(request):
    if _is_api(request):
        return JsonResponse({"detail": "Internal server error; it has been logged."}, status=500)
    return defaults.server_error(request)
