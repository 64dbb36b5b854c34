"""django-q2 entry points for runs: fetch by id, call the worker or a service, inside the one job
wrapper (`autopilot.jobs`). Idempotent."""

from __future__ import annotations

from autopilot.jobs import call_job
from runs import integration, services, worker


def execute_run(run_id: int) -> str:
    """Claim and execute a queued run; a duplicate delivery or an already claimed run does nothing,
    and a run over AUTOPILOT_MAX_CONCURRENT_RUNS stays queued without holding this worker. The run's
    own outcome (succeeded, failed, cancelled, timed out) is recorded on the run by the worker."""
    return call_job(f"run {run_id}", worker.execute_run, run_id, wait_for_capacity=False)


def reap_expired_leases() -> list[int]:
    """Scheduled: fail runs whose worker lost its lease."""
    return call_job("reap expired leases", services.reap_expired_leases)


def reconcile_runs() -> dict:
    """Reap expired leases and re-enqueue queued runs whose message is lost (see `autopilot reconcile`)."""
    return call_job("reconcile runs", services.reconcile_runs)


def cleanup_worktrees() -> dict:
    """Scheduled: retention of finished runs' worktrees (branches kept); reports disk use."""
    return call_job("clean up worktrees", services.cleanup_worktrees)


def process_integration_queue(project_id: int) -> dict:
    """Merge the project's queued integrations one at a time until none can be taken (another worker's
    merge in flight, the queue empty, the project paused). Enqueued by the manager's tick."""

    def drain() -> dict:
        done = integration.drain(project_id)
        return {"project": project_id, "integrations": [{"id": i.pk, "status": i.status} for i in done]}

    return call_job(f"merge queue of project {project_id}", drain)
