"""GET /healthz: the database, a round trip through the task broker and one through the channel layer.

Through the real ASGI application in-process (channels.testing.HttpCommunicator), over real HTTP
against daphne, and with a check made to fail for real (a channel layer pointed at a Redis port
nothing listens on) to see the 503 naming it."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import HttpCommunicator
from django.conf import settings
from django.db import connection

from autopilot.asgi import application
from tests.liveserver import LiveServer, http_json, pick_free_port

EXPECTED_LAYER = "RedisChannelLayer" if settings.REDIS_URL else "SQLiteChannelLayer"


def _get(path: str) -> tuple[int, dict]:
    communicator = HttpCommunicator(application, "GET", path, headers=[(b"host", b"localhost")])
    response = async_to_sync(communicator.get_response)(timeout=60)
    return response["status"], json.loads(response["body"])


@pytest.mark.django_db(transaction=True)
def test_healthz_through_the_asgi_app_reports_every_check_ok():
    # When /healthz is asked through the ASGI application (no server in between)
    status, report = _get("/healthz")

    # Then every check passed, on the configured database, broker and channel layer
    assert status == 200, report
    assert report["status"] == "ok"
    assert report["failed"] == []
    checks = report["checks"]
    assert checks["database"] == {**checks["database"], "ok": True, "vendor": connection.vendor}
    assert checks["broker"]["ok"] is True
    assert checks["channel_layer"]["ok"] is True
    assert checks["channel_layer"]["backend"] == EXPECTED_LAYER
    assert "cluster" in checks


@pytest.mark.postgres
@pytest.mark.skipif(
    not (settings.IS_POSTGRES and settings.REDIS_URL),
    reason="needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)",
)
@pytest.mark.django_db(transaction=True)
def test_healthz_on_the_scale_out_pass_reports_postgresql_and_redis():
    status, report = _get("/healthz")
    assert status == 200, report
    assert report["checks"]["database"]["vendor"] == "postgresql"
    assert report["checks"]["channel_layer"]["backend"] == "RedisChannelLayer"


@pytest.mark.django_db(transaction=True)
def test_healthz_over_http_answers_repeatedly(subprocess_env):
    # Given daphne serving the app (it is already up: LiveServer waited for a 200 from /healthz)
    with LiveServer(env=subprocess_env) as server:
        # When /healthz is asked again over HTTP (a second request reuses the per-process channel poller)
        first = http_json(server.url + "/healthz")
        second = http_json(server.url + "/healthz")

    # Then it keeps answering 200 with every check ok
    for status, report in (first, second):
        assert status == 200, report
        assert report["checks"]["database"]["vendor"] == connection.vendor
        assert report["checks"]["channel_layer"]["backend"] == EXPECTED_LAYER


@pytest.mark.django_db(transaction=True)
def test_healthz_names_the_failing_check_with_503(subprocess_env):
    # Given a web process whose channel layer points at a Redis port where nothing listens
    dead_redis = f"redis://127.0.0.1:{pick_free_port()}/0"
    with LiveServer(
        env=subprocess_env, extra_env={"REDIS_URL": dead_redis, "AUTOPILOT_BROKER": "orm"}, ready_status=None
    ) as server:
        # When /healthz is asked
        status, report = http_json(server.url + "/healthz")

    # Then it answers 503 naming the channel layer, and only it
    assert status == 503, report
    assert report["status"] == "error"
    assert report["failed"] == ["channel_layer"]
    layer = report["checks"]["channel_layer"]
    assert layer["ok"] is False
    assert layer["backend"] == "RedisChannelLayer"
    assert layer["error"]
    assert report["checks"]["database"]["ok"] is True
    assert report["checks"]["broker"]["ok"] is True
