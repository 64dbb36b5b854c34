"""Login limits (django-axes, configured in settings): the address they key on, what a locked-out
client sees, and lifting a lock. Doors: the web and admin login forms (axes' backend and middleware),
the API token view, `autopilot user unlock`.
"""

from __future__ import annotations

from axes.handlers.proxy import AxesProxyHandler
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from autopilot.errors import ApplicationError


def client_ip(request: HttpRequest) -> str:
    """AXES_CLIENT_IP_CALLABLE: REMOTE_ADDR, already corrected for trusted proxies by
    autopilot.middleware (the same address DRF's throttles use)."""
    return request.META.get("REMOTE_ADDR", "")


def cooloff_minutes() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)


def lockout_message() -> str:
    minutes = cooloff_minutes()
    return (
        f"Too many failed logins: this account is locked from your address for {minutes} "
        f"minute{'s' if minutes != 1 else ''}. Try again later, or ask an administrator to run "
        f"`autopilot user unlock NAME`."
    )


def lockout_response(request: HttpRequest, *_args) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE. axes passes (request, response, credentials) from its sync middleware
    and (request, credentials) from its async one, so nothing but the request is used."""
    retry_after = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": lockout_message()}, status=settings.AXES_HTTP_RESPONSE_CODE)
    else:
        response = render(
            request,
            "registration/locked_out.html",
            {"message": lockout_message(), "minutes": cooloff_minutes()},
            status=settings.AXES_HTTP_RESPONSE_CODE,
        )
    response["Retry-After"] = retry_after
    return response


def user_unlock(*, username: str) -> int:
    """Lift every login lock on `username` (from every address); return how many records were cleared.
    A name with neither an account nor a recorded failure is an error (a typo, most likely)."""
    exists = get_user_model().objects.filter(username=username).exists()
    if not exists and not AccessAttempt.objects.filter(username=username).exists():
        raise ApplicationError(f"No user '{username}' and no failed logins recorded for that name.")
    return AxesProxyHandler.reset_attempts(username=username)
