"""django-q2 entry points of the blueprints app: fetch by id, call a service, inside the one job
wrapper (`autopilot.jobs`). Nothing else lives here."""

from __future__ import annotations

from autopilot.jobs import call_job
from blueprints.ingestion import ingestion_job_run
from blueprints.services import refresh_ready_everywhere


def run_ingestion_job(job_id: int) -> dict:
    job = ingestion_job_run(job_id=job_id)
    return {"job": job.pk, "status": job.status, "blueprint": job.blueprint_id, "error": job.error}


def readiness_sweep() -> dict:
    return call_job("readiness sweep", lambda: {"changed": refresh_ready_everywhere()})
