"""django-q2 entry points for runs: fetch by id, call the worker or a service. Idempotent."""

from __future__ import annotations

from runs import services, worker


def execute_run(run_id: int) -> str:
    """Claim and execute a queued run; a duplicate delivery or an already claimed run does nothing,
    and a run over AUTOPILOT_MAX_CONCURRENT_RUNS stays queued without holding this worker."""
    return worker.execute_run(run_id, wait_for_capacity=False)


def reap_expired_leases() -> list[int]:
    """Scheduled: fail runs whose worker lost its lease."""
    return services.reap_expired_leases()


def reconcile_runs() -> dict:
    """Reap expired leases and re-enqueue queued runs whose message is lost (see `autopilot reconcile`)."""
    return services.reconcile_runs()


def cleanup_worktrees() -> dict:
    """Scheduled: retention of finished runs' worktrees (branches kept); reports disk use."""
    return services.cleanup_worktrees()
