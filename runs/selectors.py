"""Reads for runs: visible runs, one run with its steps, and the run's JSON shape for CLI and API."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from autopilot.errors import NotFound
from autopilot.permissions import visible_projects
from runs.backends import backend_label
from runs.models import ExecutionRun, ExecutionStep, RunMessage


def runs_visible_to(user) -> QuerySet[ExecutionRun]:
    return ExecutionRun.objects.filter(project__in=visible_projects(user)).select_related("project", "task")


def run_list(
    *, project, status: str | None = None, task_id: int | None = None, agent: str | None = None
) -> QuerySet[ExecutionRun]:
    qs = ExecutionRun.objects.filter(project=project).select_related("project", "task")
    if status:
        qs = qs.filter(status__in=status.split(","))
    if task_id:
        qs = qs.filter(task_id=task_id)
    if agent:
        qs = qs.filter(agent_backend=agent)
    return qs.order_by("-created_at", "-id")


def run_get(run_id: int | str, *, with_steps: bool = False) -> ExecutionRun:
    qs = ExecutionRun.objects.select_related("project", "task", "created_by")
    if with_steps:
        qs = qs.prefetch_related(
            Prefetch("steps", queryset=ExecutionStep.objects.select_related("decided_by").order_by("seq")),
            Prefetch("messages", queryset=RunMessage.objects.select_related("author")),
        )
    try:
        return qs.get(pk=int(run_id))
    except (ExecutionRun.DoesNotExist, ValueError, TypeError) as exc:
        raise NotFound(f"No run '{run_id}'.") from exc


def steps_after(run_id: int, seq: int) -> list[ExecutionStep]:
    return list(ExecutionStep.objects.filter(run_id=run_id, seq__gt=seq).order_by("seq"))


def step_to_dict(step: ExecutionStep, *, full: bool = False) -> dict[str, Any]:
    data = {
        "id": step.pk,
        "seq": step.seq,
        "kind": step.kind,
        "tool": step.tool_name,
        "input": step.input,
        "status": step.status,
        "risky": step.risky,
    }
    if full:
        data.update(
            risk_reason=step.risk_reason,
            output=step.output,
            output_truncated=step.output_truncated,
            artifact_path=step.artifact_path,
            diff=step.diff,
            has_rollback=bool((step.rollback or {}).get("path")),
            input_tokens=step.input_tokens,
            output_tokens=step.output_tokens,
            cost_usd=step.cost_usd,
            decided_by=step.decided_by.get_username() if step.decided_by_id else None,
            decision_note=step.decision_note,
            decided_at=step.decided_at,
            started_at=step.started_at,
            ended_at=step.ended_at,
        )
    return data


def run_to_dict(
    run: ExecutionRun, *, steps: list[ExecutionStep] | None = None, full_steps: bool = False
) -> dict[str, Any]:
    """The run as one JSON object (CLI --json, `session show`): the fields the issue lists, and more."""
    if steps is None:
        steps = list(run.steps.all())
    queued_to_first = None
    if run.first_step_at and run.queued_at:
        queued_to_first = round((run.first_step_at - run.queued_at).total_seconds(), 3)
    return {
        "id": run.pk,
        "project": run.project_id,
        "task": run.task_id,
        "role": run.role,
        "agent": run.agent_backend,
        "agent_label": backend_label(run.agent_backend),
        "model": run.model,
        "prompt": run.prompt,
        "status": run.status,
        "status_reason": run.status_reason,
        "branch": run.branch,
        "worktree_path": run.worktree_path,
        "start_ref": run.start_ref,
        "base_commit": run.base_commit,
        "head_commit": run.head_commit,
        "diff_summary": run.diff_summary,
        "cost_usd": run.cost_usd,
        "budget_usd": run.budget_usd,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "turns": run.turns,
        "attempt": run.attempt,
        "retry_of": run.retry_of_id,
        "resumed_from": run.resumed_from_id,
        "backend_session_id": run.backend_session_id,
        "result_summary": run.result_summary,
        "error": run.error,
        "queued_at": run.queued_at,
        "started_at": run.started_at,
        "first_step_at": run.first_step_at,
        "ended_at": run.ended_at,
        "queued_to_first_step_seconds": queued_to_first,
        "steps": [step_to_dict(s, full=full_steps) for s in steps],
    }
