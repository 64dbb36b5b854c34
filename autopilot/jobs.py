"""One wrapper around every background job (every django-q2 entry point): NetBox's `JobRunner` shape.

    start → run → terminate

- `start()` claims the work; False means there is nothing to do (a duplicate delivery, a row that is
  gone or already claimed): the job is `skipped` and `run` is not called.
- `run()` does the work and returns the result.
- a KNOWN failure (`known_failures`, by default the domain's `ApplicationError`) ends the job `failed`
  with the failure's message as the reason; ANY OTHER exception ends it `error`, with the traceback
  logged (and handed to `terminate`).
- `terminate(outcome)` records how it ended (a job with a row of its own writes it there).

A job whose outcome has no row of its own (the tick, sweeps, cleanup) re-raises an `error` after
logging it, so django-q2 stores it as a failed task with its traceback; a job that records its
outcome itself (`records_outcome = True`) does not.

`call_job(name, func, *args)` wraps a plain function as such a job.
"""

from __future__ import annotations

import logging
import traceback as tb
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from autopilot.errors import ApplicationError

logger = logging.getLogger("autopilot.jobs")

SUCCEEDED, SKIPPED, FAILED, ERROR = "succeeded", "skipped", "failed", "error"


@dataclass
class Outcome:
    status: str  # succeeded | skipped | failed | error
    result: Any = None
    reason: str = ""
    traceback: str = ""
    exception: BaseException | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {"status": self.status, **({"reason": self.reason} if self.reason else {})}


class JobRunner:
    name: ClassVar[str] = "job"
    known_failures: ClassVar[tuple[type[BaseException], ...]] = (ApplicationError,)
    records_outcome: ClassVar[bool] = False

    def start(self) -> bool:
        return True

    def run(self) -> Any:
        raise NotImplementedError

    def terminate(self, outcome: Outcome) -> None:
        """Record how the job ended (nothing by default: the outcome is the django-q2 result)."""

    def failure_reason(self, exc: BaseException) -> str:
        return getattr(exc, "message", None) or str(exc) or type(exc).__name__

    def handle(self) -> Outcome:
        if not self.start():
            outcome = Outcome(SKIPPED, reason="nothing to do")
            logger.info("%s: nothing to do", self.name)
            self.terminate(outcome)
            return outcome
        try:
            outcome = Outcome(SUCCEEDED, result=self.run())
        except self.known_failures as exc:
            outcome = Outcome(FAILED, reason=self.failure_reason(exc), exception=exc)
            logger.warning("%s failed: %s", self.name, outcome.reason)
        except Exception as exc:  # noqa: BLE001 - anything else is an error, with its traceback logged
            logger.exception("%s crashed", self.name)
            reason = f"{type(exc).__name__}: {exc}"
            outcome = Outcome(ERROR, reason=reason, traceback=tb.format_exc(), exception=exc)
        self.terminate(outcome)
        if outcome.status == ERROR and not self.records_outcome:
            raise outcome.exception
        return outcome


class FunctionJob(JobRunner):
    """A plain function as a job (its return value is the result)."""

    def __init__(self, name: str, func: Callable[..., Any], *args: Any, **kwargs: Any):
        self.name = name  # type: ignore[misc] - per instance
        self.func, self.args, self.kwargs = func, args, kwargs

    def run(self) -> Any:
        return self.func(*self.args, **self.kwargs)


def call_job(name: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `func` as a job and return what django-q2 stores as the task's result: the function's
    result, or {"status": "failed", "reason": …} for a known failure (an error is re-raised)."""
    outcome = FunctionJob(name, func, *args, **kwargs).handle()
    return outcome.result if outcome.status == SUCCEEDED else outcome.as_dict()
