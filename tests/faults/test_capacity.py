"""Capacity under real processes: the global cap holds for runs started through the API; eight run
workers on one database; runs waiting for approval do not starve control work, and /healthz says so
when runs starve."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from autopilot.manager.requests import request_tick
from autopilot.models import Event, Project
from blueprints.ingestion import ingestion_job_create
from blueprints.models import IngestionJob
from runs import services, worker
from runs.models import ExecutionRun
from tests.factories import MembershipFactory, ProjectFactory
from tests.liveserver import http_json, pick_free_port
from tests.runs.helpers import scripted, status_of, wait_for

Status = ExecutionRun.Status


def max_concurrency(run_ids: list[int]) -> int:
    """The most runs claimed at once, replayed from the status events (claim → terminal status)."""
    points = []
    for event in Event.objects.filter(kind="executionrun.status", subject_id__in=run_ids).order_by("pk"):
        if event.data.get("to") == Status.PREPARING:
            points.append((event.pk, 1))
        elif event.data.get("to") in ExecutionRun.TERMINAL:
            points.append((event.pk, -1))
    level = peak = 0
    for _, step in sorted(points):
        level += step
        peak = max(peak, level)
    return peak


@pytest.mark.django_db(transaction=True)
def test_two_claims_at_once_never_exceed_the_cap(settings):
    # Given a cap of one and two queued runs
    settings.AUTOPILOT_MAX_CONCURRENT_RUNS = 1
    project = ProjectFactory()
    runs = [scripted(project, [{"finish": "ok"}]) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list = []

    def claim(run_id: int) -> None:
        try:
            barrier.wait(10)
            outcomes.append(worker.claim(run_id, worker.new_lease_owner()))
        finally:
            connection.close()

    # When two workers claim them at the same moment
    threads = [threading.Thread(target=claim, args=(run.pk,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Then one is claimed and the other stays queued, waiting for capacity
    assert sorted(isinstance(o, ExecutionRun) for o in outcomes) == [False, True]
    assert worker.AT_CAPACITY in outcomes
    assert sorted(status_of(r.pk) for r in runs) == [Status.PREPARING, Status.QUEUED]


def post_json(url: str, token: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - 127.0.0.1 only
        return response.status, json.loads(response.read())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_api_started_runs_beyond_the_cap_stay_queued_and_all_finish(fault_env, serve):
    # Given serve with four run workers and a global cap of two
    project = ProjectFactory()
    operator = MembershipFactory(project=project, role="operator").user
    token = Token.objects.create(user=operator).key
    port = pick_free_port()
    group = serve(
        {**fault_env, "AUTOPILOT_MAX_CONCURRENT_RUNS": "2"},
        "--port",
        str(port),
        "--workers",
        "4",
        "--control-workers",
        "1",
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _up(url), timeout=120, interval=0.2, message="serve never answered")

    # When six runs are started through the API
    script = [{"write": "a.txt", "content": "a\n"}, {"sleep": 1.5}, {"finish": "ok"}]
    ids = []
    for i in range(6):
        status, body = post_json(
            f"{url}/api/projects/{project.pk}/runs/",
            token,
            {"prompt": f"api run {i}", "agent": "scripted", "settings": {"script": script}},
        )
        assert status == 201, body
        ids.append(body["id"])

    # Then all six succeed, never more than two at once (and two at once: the workers were used)
    wait_for(
        lambda: all(status_of(i) in ExecutionRun.TERMINAL for i in ids),
        timeout=180,
        interval=0.2,
        message="not every run finished",
    )
    assert [status_of(i) for i in ids] == [Status.SUCCEEDED] * 6
    assert max_concurrency(ids) == 2
    for run_id in ids:
        assert (
            Event.objects.filter(kind="executionrun.status", subject_id=run_id, data__to="preparing").count()
            == 1
        )
    assert group.stop() == 0, group.output()


def _up(url: str):
    try:
        return http_json(url + "/healthz", timeout=15)[0] in (200, 503)
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_eight_run_workers_process_runs_concurrently_without_database_locked(fault_env, serve):
    # Given serve with eight run workers and a cap of eight
    project = ProjectFactory()
    group = serve(
        {**fault_env, "AUTOPILOT_MAX_CONCURRENT_RUNS": "8"},
        "--no-web",
        "--workers",
        "8",
        "--control-workers",
        "1",
    )

    # When sixteen runs, each writing several files, are queued at once
    script = [*({"write": f"f{n}.txt", "content": f"{n}\n"} for n in range(5)), {"finish": "ok"}]
    runs = [
        services.run_create(
            project=project, prompt=f"run {i}", agent_backend="scripted", run_settings={"script": script}
        )
        for i in range(16)
    ]
    ids = [r.pk for r in runs]

    # Then every run succeeds, several ran at once, and "database is locked" appears nowhere
    wait_for(
        lambda: all(status_of(i) in ExecutionRun.TERMINAL for i in ids),
        timeout=280,
        interval=0.2,
        message="not every run finished",
    )
    finished = list(ExecutionRun.objects.filter(pk__in=ids).values_list("status", "status_reason", "error"))
    assert [f for f in finished if f[0] != Status.SUCCEEDED] == []
    assert max_concurrency(ids) > 1
    assert group.stop() == 0, group.output()
    assert "database is locked" not in group.output()
    assert not any("locked" in reason + error for _, reason, error in finished)


SPEC = "# Phase 1\n\n## Login\n\nPassword login.\n\n- [ ] form\n\n# Phase 2\n\n## Search\n\nFull text.\n"
RISKY = [{"write": "a.txt", "content": "a\n"}, {"run": "rm a.txt"}, {"finish": "done"}]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_runs_waiting_for_approval_do_not_stop_ticks_or_ingestion_and_healthz_reports_starvation(
    fault_env, serve
):
    # Given serve with two run workers, both held by runs waiting for approval
    project = ProjectFactory(autonomy_mode="semi_auto")
    port = pick_free_port()
    group = serve(
        {**fault_env, "AUTOPILOT_STARVATION_SECONDS": "3"},
        "--port",
        str(port),
        "--workers",
        "2",
        "--control-workers",
        "1",
    )
    url = f"http://127.0.0.1:{port}"
    waiting = [
        services.run_create(
            project=project, prompt=f"risky {i}", agent_backend="scripted", run_settings={"script": RISKY}
        )
        for i in range(2)
    ]
    wait_for(
        lambda: all(status_of(r.pk) == Status.WAITING_APPROVAL for r in waiting),
        timeout=120,
        interval=0.1,
        message="the runs never asked for approval",
    )

    # When an ingestion and a tick are requested
    job = ingestion_job_create(project=project, text=SPEC, title="spec")
    request_tick(project.pk, reason="fault test")

    # Then both are done by the control cluster while the runs still wait
    wait_for(
        lambda: IngestionJob.objects.get(pk=job.pk).status == IngestionJob.Status.SUCCEEDED,
        timeout=120,
        interval=0.1,
        message="the ingestion never ran",
    )
    wait_for(
        lambda: Project.objects.get(pk=project.pk).last_tick_at is not None,
        timeout=120,
        interval=0.1,
        message="the tick never ran",
    )
    assert all(status_of(r.pk) == Status.WAITING_APPROVAL for r in waiting)
    status, report = http_json(url + "/healthz", timeout=30)
    assert status == 200, report

    # When a third run is queued and no run worker is free for longer than the starvation limit
    third = services.run_create(
        project=project, prompt="third", agent_backend="scripted", run_settings={"script": [{"finish": "ok"}]}
    )

    # Then /healthz answers 503 naming the starvation and the runs waiting for approval
    def starved():
        code, body = http_json(url + "/healthz", timeout=30)
        return (code, body) if code == 503 else None

    status, report = wait_for(starved, timeout=60, interval=0.5, message="/healthz never reported starvation")
    assert report["failed"] == ["starvation"], report
    assert "runs starved" in report["checks"]["starvation"]["error"]
    assert "2 run(s) waiting for approval" in report["checks"]["starvation"]["error"]

    # When the two steps are approved, Then every run finishes and /healthz is 200 again
    for run in waiting:
        services.run_approve(run=run)
    wait_for(
        lambda: all(status_of(r.pk) == Status.SUCCEEDED for r in [*waiting, third]),
        timeout=120,
        interval=0.1,
        message="the runs did not finish after approval",
    )
    wait_for(
        lambda: http_json(url + "/healthz", timeout=30)[0] == 200,
        timeout=60,
        interval=0.5,
        message="/healthz stayed unhealthy",
    )
    assert group.stop() == 0, group.output()
