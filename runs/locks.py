"""Row locks of runs and steps, in the lock order documented in `autopilot.locks` (Project → Task →
Run → Step; rows of one table by primary key): a step is locked only after its run, so a service
deciding on a step and a service driving the run (stop, advance, the worker) never hold one lock each
while waiting for the other's."""

from __future__ import annotations

from runs.models import ExecutionRun, ExecutionStep


def lock_run(run_id: int, *, related: tuple[str, ...] = ()) -> ExecutionRun:
    """Lock one run row; `related` rows are read, not locked."""
    qs = ExecutionRun.objects.select_for_update(of=("self",))
    if related:
        qs = qs.select_related(*related)
    return qs.get(pk=run_id)


def lock_run_if_exists(run_id: int) -> ExecutionRun | None:
    return ExecutionRun.objects.select_for_update(of=("self",)).filter(pk=run_id).first()


def lock_step(step_id: int, *, related: tuple[str, ...] = ()) -> tuple[ExecutionRun, ExecutionStep]:
    """Lock a step's run, then the step (the run first: the lock order). Returns (run, step); the
    step's `run` is the locked run object."""
    run_id = ExecutionStep.objects.values_list("run_id", flat=True).get(pk=step_id)
    run = lock_run(run_id, related=related)
    step = ExecutionStep.objects.select_for_update(of=("self",)).get(pk=step_id)
    step.run = run
    return run, step


def lock_first_step(run: ExecutionRun, *, status: str) -> ExecutionStep | None:
    """Lock the run's oldest step in `status` (the caller holds the run's lock)."""
    qs = ExecutionStep.objects.select_for_update(of=("self",)).filter(run=run, status=status)
    return qs.order_by("seq").first()


def lock_runs(queryset) -> list[ExecutionRun]:
    """Lock the runs of a queryset, in primary-key order."""
    return list(queryset.select_for_update(of=("self",)).order_by("pk"))
