"""One job wrapper (autopilot.jobs) around every django-q2 entry point: start → run → terminate; a known
failure ends `failed` with its reason, anything else `error` with the traceback logged."""

from __future__ import annotations

import logging

import pytest

from autopilot import tasks as core_tasks
from autopilot.jobs import ERROR, FAILED, SKIPPED, SUCCEEDED, JobRunner, call_job
from blueprints.ingestion import IngestionJobRunner
from blueprints.models import IngestionJob
from runs import tasks as run_tasks
from runs.models import ExecutionRun
from runs.services import run_stop
from tests.factories import ExecutionRunFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def test_a_known_failure_ends_the_job_failed_with_the_domain_message():
    # given a run that already ended: stopping it is refused by the domain (Conflict)
    run = ExecutionRunFactory(project=ProjectFactory(), status=ExecutionRun.Status.SUCCEEDED)
    # when a job tries it
    result = call_job("stop a run", run_stop, run=run)
    # then the job failed with the refusal's message (no traceback, nothing raised)
    assert result == {"status": FAILED, "reason": f"Run #{run.pk} already ended (succeeded)."}


def test_an_unexpected_error_is_logged_with_its_traceback_and_reaches_django_q(caplog):
    def crash():
        return {"ratio": 1 / len([])}

    with caplog.at_level(logging.ERROR, logger="autopilot.jobs"), pytest.raises(ZeroDivisionError):
        call_job("a crashing sweep", crash)
    (record,) = [r for r in caplog.records if r.name == "autopilot.jobs"]
    assert record.getMessage() == "a crashing sweep crashed" and record.exc_info[0] is ZeroDivisionError


def test_a_job_with_nothing_to_do_is_skipped_without_running():
    ran = []

    class Duplicate(JobRunner):
        name = "duplicate delivery"

        def start(self):
            return False

        def run(self):
            ran.append(True)

    assert Duplicate().handle().status == SKIPPED and ran == []


def test_the_entry_points_return_their_service_result_through_the_wrapper():
    assert core_tasks.tick_project_task(10**9) == {"skipped": f"project {10**9} is gone"}
    assert run_tasks.reap_expired_leases() == []


def test_an_ingestion_job_that_crashes_is_recorded_as_an_internal_error(caplog):
    # given a job claimed by the runner whose source cannot be ingested by the code (not a domain refusal)
    project = ProjectFactory()
    job = IngestionJob.objects.create(project=project, source_text="# Spec\n\n## A\n\nText.\n", title="T")

    class Broken(IngestionJobRunner):
        def start(self):
            claimed = super().start()
            self.job.title = 12345  # not text: the ingestion breaks (a bug's shape), not a domain refusal
            return claimed

    runner = Broken(job)
    # when the wrapper handles it
    with caplog.at_level(logging.ERROR, logger="autopilot.jobs"):
        outcome = runner.handle()
    # then the job row records the internal error and the traceback is in the log
    job.refresh_from_db()
    assert outcome.status == ERROR and job.status == IngestionJob.Status.FAILED
    assert job.error.startswith("Internal error: ")
    assert any(r.exc_info for r in caplog.records if r.name == "autopilot.jobs")
    assert SUCCEEDED == "succeeded"
