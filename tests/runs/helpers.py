"""Helpers for the runs tests: execute a run in a thread of this process, poll with a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django.db import connection

from runs import services
from runs.models import ExecutionRun
from runs.worker import execute_run


def wait_for(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, message: str = ""
):
    """Poll until predicate() is truthy; fail with `message` at the deadline (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout}s")


def status_of(run_id: int) -> str:
    return ExecutionRun.objects.values_list("status", flat=True).get(pk=run_id)


def run_in_thread(run_id: int) -> threading.Thread:
    """Execute a run with the real worker code in a background thread (its own DB connection)."""

    def work():
        try:
            execute_run(run_id)
        finally:
            connection.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def scripted(project, script, **kwargs) -> ExecutionRun:
    kwargs.setdefault("prompt", "scripted test run")
    settings = dict(kwargs.pop("run_settings", {}) or {})
    settings["script"] = script
    return services.run_create(
        project=project, agent_backend="scripted", run_settings=settings, enqueue=False, **kwargs
    )


def run_now(project, script, **kwargs) -> ExecutionRun:
    run = scripted(project, script, **kwargs)
    execute_run(run.pk)
    run.refresh_from_db()
    return run
