"""The run lifecycle's seams: what upper layers (the manager) hear about runs.

- `run_started(run_id)`: a run moved to running (its agent started). Sent on commit.
- `run_finished(run_id)`: a run reached a terminal status (succeeded, failed, cancelled), whoever
  ended it (its worker, a stop, the reaper). Sent on commit, once per run ending.

Listeners connect in their AppConfig.ready() (`lifecycle.run_finished.connect(fn)`); a listener that
raises is logged and never undoes the run's outcome — the manager's reconcile repairs what was missed.
"""

from __future__ import annotations

from autopilot.seams import Seam

run_started = Seam("run started", "(run_id: int)")
run_finished = Seam("run finished", "(run_id: int)")


def publish_run_started(run_id: int) -> None:
    """Tell the listeners after the current transaction commits that the run started."""
    run_started.send_on_commit(run_id)


def publish_run_finished(run_id: int) -> None:
    """Tell the listeners after the current transaction commits that the run ended."""
    run_finished.send_on_commit(run_id)
