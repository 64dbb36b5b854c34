"""Security headers that depend on the request: the CSP's websocket origin.

`connect-src 'self'` covers fetch/XHR; a websocket to the same host needs ws:// or wss:// with that
host spelled out (older browsers do not map 'self' to ws schemes), so it is added per request from
the validated Host header. Everything else is in settings.CONTENT_SECURITY_POLICY.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from csp.middleware import PolicyParts
from django.core.exceptions import DisallowedHost


class CSPMiddleware(BaseCSPMiddleware):
    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if report_only:
            return parts
        try:
            host = request.get_host()
        except DisallowedHost:  # a 400 for the bad host is the response: nothing to connect to
            return parts
        parts.update = {**(parts.update or {})}
        parts.update["connect-src"] = [*parts.update.get("connect-src", []), f"ws://{host}", f"wss://{host}"]
        return parts
