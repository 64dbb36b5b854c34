"""django-q2 entry points for runs: fetch by id, call the worker or a service. Idempotent."""

from __future__ import annotations

from runs import services, worker


def execute_run(run_id: int) -> str:
    """Claim and execute a queued run; a duplicate delivery or an already claimed run does nothing."""
    return worker.execute_run(run_id)


def reap_expired_leases() -> list[int]:
    """Scheduled: fail runs whose worker lost its lease."""
    return services.reap_expired_leases()


def cleanup_worktrees() -> dict:
    """Scheduled: retention of finished runs' worktrees (branches kept); reports disk use."""
    return services.cleanup_worktrees()
