"""Trusted proxies (security finding 9c): X-Forwarded-For and friends are believed only from the
addresses in AUTOPILOT_TRUSTED_PROXIES. The address rules in-process, then over real HTTP against
`autopilot serve`: a spoofed X-Forwarded-For neither resets the token endpoint's throttle nor axes'
login lock; behind a configured proxy (127.0.0.1 here) the forwarded client address is the one used.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.core.cache import cache
from django.test import Client, override_settings

from autopilot.middleware import resolve_client
from tests.factories import UserFactory
from tests.liveserver import LiveServer, pick_free_port

PASSWORD = "pw-for-tests-123"  # tests.factories.UserFactory's password
LIMIT = settings.AXES_FAILURE_LIMIT
TOKEN_RATE = 30  # autopilot.api.views.TokenThrottle: 30/min


# --- The address rules ---------------------------------------------------------------------------


def resolved(meta: dict, trusted: list[str]) -> dict:
    with override_settings(AUTOPILOT_TRUSTED_PROXIES=trusted):
        resolve_client(meta)
    return meta


SPOOF = {
    "HTTP_X_FORWARDED_FOR": "6.6.6.6",
    "HTTP_X_FORWARDED_PROTO": "https",
    "HTTP_X_REAL_IP": "6.6.6.6",
    "HTTP_X_FORWARDED_HOST": "evil.example",
    "HTTP_FORWARDED": "for=6.6.6.6",
}


@pytest.mark.parametrize("trusted", [[], ["10.0.0.0/8"]], ids=["none-trusted", "peer-not-trusted"])
def test_an_untrusted_peer_keeps_its_address_and_loses_every_proxy_header(trusted):
    meta = resolved({"REMOTE_ADDR": "192.0.2.10", **SPOOF}, trusted)
    assert meta == {"REMOTE_ADDR": "192.0.2.10"}


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("203.0.113.7", "203.0.113.7"),
        # Hops left of the first untrusted one are the client's own claims
        ("1.1.1.1, 203.0.113.7", "203.0.113.7"),
        # A chain of trusted proxies is walked through
        ("203.0.113.7, 10.1.2.3, 10.0.0.2", "203.0.113.7"),
        ("203.0.113.7:5678", "203.0.113.7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        # Garbage stops the walk at the last hop a trusted proxy vouched for
        ("203.0.113.7, not-an-ip", "10.0.0.1"),
        ("", "10.0.0.1"),
        # Only trusted hops: the left-most of them
        ("10.9.9.9, 10.0.0.2", "10.9.9.9"),
    ],
    ids=[
        "one-hop",
        "spoofed-left-hop",
        "proxy-chain",
        "ipv4-port",
        "ipv6-bracket-port",
        "ipv6",
        "garbage-hop",
        "no-header",
        "all-trusted",
    ],
)
def test_a_trusted_peer_forwards_the_right_most_untrusted_hop(forwarded_for, client):
    meta = resolved({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": forwarded_for}, ["10.0.0.0/8"])
    assert meta["REMOTE_ADDR"] == client and "HTTP_X_FORWARDED_FOR" not in meta


def test_a_trusted_peer_keeps_the_forwarded_proto_only():
    meta = resolved({"REMOTE_ADDR": "127.0.0.1", **SPOOF}, ["127.0.0.1"])
    assert meta == {"REMOTE_ADDR": "6.6.6.6", "HTTP_X_FORWARDED_PROTO": "https"}


def test_an_ipv4_mapped_peer_matches_its_ipv4_network():
    meta = resolved({"REMOTE_ADDR": "::ffff:127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}, ["127.0.0.1"])
    assert meta["REMOTE_ADDR"] == "203.0.113.7"


def test_is_secure_believes_x_forwarded_proto_only_from_a_trusted_proxy():
    def scheme(trusted: list[str]) -> bool:
        with override_settings(
            AUTOPILOT_TRUSTED_PROXIES=trusted, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")
        ):
            response = Client().get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
            return response.wsgi_request.is_secure()

    assert scheme([]) is False
    assert scheme(["127.0.0.1"]) is True


def test_a_bad_trusted_proxies_setting_is_a_clear_startup_error():
    done = subprocess.run(
        [sys.executable, "-c", "import autopilot.settings"],
        capture_output=True,
        text=True,
        env={
            "AUTOPILOT_TRUSTED_PROXIES": "10.0.0.0/8, proxy.local",
            "AUTOPILOT_DATA_DIR": str(settings.DATA_DIR),
            "PATH": "/usr/bin:/bin",
        },
        cwd=settings.BASE_DIR,
        timeout=60,
    )
    assert done.returncode != 0
    assert (
        "AUTOPILOT_TRUSTED_PROXIES: 'proxy.local' is not an IP address or network"
        in done.stderr.strip().splitlines()[-1]
    )


# --- Over real HTTP, through `autopilot serve` ---------------------------------------------------


def post_token(url: str, payload: dict, forwarded_for: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    request = urllib.request.Request(
        url + "/api/auth/token/", data=json.dumps(payload).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def is_throttled(status: int, body: dict) -> bool:
    return status == 429 and "throttled" in body["detail"]


def is_locked(status: int, body: dict) -> bool:
    return status == 429 and "Too many failed logins" in body["detail"]


@pytest.fixture
def serve(subprocess_env, tmp_path):
    """Start `autopilot serve --no-cluster` on the test database with extra settings."""
    servers = []

    def start(**extra_env: str) -> LiveServer:
        cache.clear()  # the throttle's history lives in the cache the server shares
        port = pick_free_port()
        cmd = [sys.executable, "-m", "autopilot.cli", "serve", "--no-cluster", "--port", str(port)]
        server = LiveServer(
            env=subprocess_env,
            port=port,
            cmd=cmd,
            extra_env=extra_env,
            log_path=tmp_path / f"serve-{port}.log",
        )
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_spoofed_forwarded_for_resets_neither_the_lock_nor_the_throttle(serve):
    user = UserFactory()
    server = serve()
    # A client varies X-Forwarded-For on every bad password: the lock still falls on its real address
    results = [
        post_token(server.url, {"username": user.username, "password": f"wrong-{i}"}, f"10.9.{i}.1")
        for i in range(LIMIT)
    ]
    assert [status for status, _ in results] == [403] * (LIMIT - 1) + [429]
    assert is_locked(*post_token(server.url, {"username": user.username, "password": PASSWORD}, "10.9.99.1"))
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}
    # And a fresh X-Forwarded-For per request does not escape the token endpoint's throttle
    sent = LIMIT + 1
    while sent < TOKEN_RATE:
        status, body = post_token(server.url, {}, f"10.8.{sent}.1")
        assert status == 400, body
        sent += 1
    assert is_throttled(*post_token(server.url, {}, "10.7.0.1"))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_behind_a_trusted_proxy_the_forwarded_client_is_used(serve):
    user = UserFactory()
    server = serve(AUTOPILOT_TRUSTED_PROXIES="127.0.0.1")
    # Bad passwords forwarded for 203.0.113.7 lock that address out, and only that address
    for i in range(LIMIT):
        post_token(server.url, {"username": user.username, "password": f"wrong-{i}"}, "203.0.113.7")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}
    right = {"username": user.username, "password": PASSWORD}
    assert is_locked(*post_token(server.url, right, "203.0.113.7"))
    # A hop the client prepends itself does not get it out
    assert is_locked(*post_token(server.url, right, "198.51.100.1, 203.0.113.7"))
    status, body = post_token(server.url, right, "203.0.113.8")
    assert status == 200 and body["username"] == user.username
    # The throttle counts per forwarded client too: 203.0.113.7 has used LIMIT + 2 of its requests
    for _ in range(TOKEN_RATE - LIMIT - 2):
        assert post_token(server.url, {}, "203.0.113.7")[0] == 400
    assert is_throttled(*post_token(server.url, {}, "203.0.113.7"))
    assert post_token(server.url, {}, "203.0.113.9")[0] == 400
