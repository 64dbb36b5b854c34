"""The client's address, believed from a proxy only when that proxy is trusted (security finding 9c).

Without configuration no proxy is trusted: REMOTE_ADDR is the TCP peer, and X-Forwarded-For,
X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP and Forwarded are removed from every request, so no
later layer (DRF throttles, axes' login limits, Django's is_secure()) can be fooled by a client that
sends them. With AUTOPILOT_TRUSTED_PROXIES set and the peer inside it, the client is the right-most
X-Forwarded-For hop that is not itself a trusted proxy (hops to its left are the client's own claims),
and X-Forwarded-Proto is kept for SECURE_PROXY_SSL_HEADER.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.utils.decorators import sync_and_async_middleware

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

PROXY_HEADERS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_REAL_IP",
    "HTTP_FORWARDED",
)


@lru_cache(maxsize=8)
def trusted_networks(spec: tuple[str, ...]) -> tuple[Network, ...]:
    """AUTOPILOT_TRUSTED_PROXIES as networks (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def parse_address(value: str) -> Address | None:
    """An address from a forwarded hop: `1.2.3.4`, `1.2.3.4:5678`, `::1` or `[::1]:80`; None if invalid."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket (::ffff:1.2.3.4) is that IPv4 client.
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _is_trusted(address: Address | None, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def resolve_client(meta: dict) -> None:
    """Rewrite REMOTE_ADDR from X-Forwarded-For if the peer is a trusted proxy; drop proxy headers."""
    forwarded_for = meta.get("HTTP_X_FORWARDED_FOR", "")
    forwarded_proto = meta.get("HTTP_X_FORWARDED_PROTO")
    for header in PROXY_HEADERS:
        meta.pop(header, None)
    networks = trusted_networks(tuple(settings.AUTOPILOT_TRUSTED_PROXIES))
    peer = parse_address(meta.get("REMOTE_ADDR", ""))
    if not networks or not _is_trusted(peer, networks):
        return
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        address = parse_address(hop)
        if address is None:  # garbage: stop at the last hop a trusted proxy vouched for
            break
        client = address
        if not _is_trusted(address, networks):
            break
    meta["REMOTE_ADDR"] = str(client)
    if forwarded_proto:
        meta["HTTP_X_FORWARDED_PROTO"] = forwarded_proto.split(",")[-1].strip()


@sync_and_async_middleware
def trusted_proxy_middleware(get_response):
    if iscoroutinefunction(get_response):

        async def middleware(request):
            resolve_client(request.META)
            return await get_response(request)

    else:

        def middleware(request):
            resolve_client(request.META)
            return get_response(request)

    return middleware
