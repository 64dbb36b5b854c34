"""Shared helpers for the run CLI commands (streaming steps, printing a run)."""

from __future__ import annotations

import json
import time

from autopilot.cli_support import to_jsonable
from autopilot.models import Role
from autopilot.permissions import require_role
from runs import selectors
from runs.models import ExecutionRun


def get_run(command, ident, options, minimum=Role.VIEWER) -> ExecutionRun:
    run = selectors.run_get(ident)
    actor = command.actor(options)
    if actor is not None:
        require_role(actor, run.project, minimum)
    return run


def step_line(step) -> str:
    shown = json.dumps(step.input, ensure_ascii=False, default=str)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    line = f"  #{step.seq:<3} {step.kind:<13} {step.status:<14} {step.tool_name} {shown}"
    if step.output and step.kind in {"run_terminal", "llm_turn", "finish", "message", "test", "commit"}:
        first = step.output.strip().splitlines()[:1]
        if first:
            line += f"\n        → {first[0][:160]}"
    return line


def run_text(run: ExecutionRun, data: dict) -> str:
    lines = [
        f"run #{run.pk} [{run.agent_backend}{' — scripted (offline demo)' if run.agent_backend == 'scripted' else ''}] {run.status}"
        + (f": {run.status_reason}" if run.status_reason else ""),
        f"  branch {run.branch or '-'}  base {run.base_commit[:12] or '-'}  head {run.head_commit[:12] or '-'}",
        f"  cost ${run.cost_usd:.4f} of ${run.budget_usd:.2f}, {run.turns} turns, "
        f"{run.input_tokens}+{run.output_tokens} tokens",
    ]
    summary = run.diff_summary or {}
    if summary.get("files"):
        lines.append(f"  changes: {len(summary['files'])} file(s), +{summary['added']} -{summary['removed']}")
    if data.get("queued_to_first_step_seconds") is not None:
        lines.append(f"  queued → first step: {data['queued_to_first_step_seconds']:.3f}s")
    return "\n".join(lines)


def stream_steps(command, run_id: int, *, until, poll: float = 0.2, as_json: bool = False) -> None:
    """Print each new step (a line, or a JSON object per line with --json) until `until()` is true."""
    seen = 0
    while True:
        done = until()
        for step in selectors.steps_after(run_id, seen):
            seen = step.seq
            if as_json:
                command.stdout.write(json.dumps(to_jsonable({"step": selectors.step_to_dict(step)}), ensure_ascii=False))
            else:
                command.stdout.write(step_line(step))
            command.stdout.flush()
        if done:
            return
        time.sleep(poll)
