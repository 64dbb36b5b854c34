"""Shared helpers for the run CLI commands (streaming steps, printing a run)."""

from __future__ import annotations

import json
import os
import sys
import time
import webbrowser
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.urls import reverse

from autopilot.cli_support import PRIORITY_NAMES, AutopilotCommand, to_jsonable
from autopilot.errors import ApplicationError, NotFound
from autopilot.models import Role
from autopilot.permissions import require_role
from runs import selectors, trajectory
from runs.models import ExecutionRun


class OneLineParser(CommandParser):
    """Usage errors as one line on stderr (exit 2), naming the problem and where help is."""

    def error(self, message):
        if self.called_from_command_line:
            self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        raise CommandError(f"Error: {message}")


class RunCliCommand(AutopilotCommand):
    """The run and session commands: one-line usage errors (sub-actions included)."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = OneLineParser  # sub-action parsers are made from type(parser)
        return parser


def parse_budget(value, flag: str = "--max-budget") -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount <= 0:
        raise ApplicationError(f"{flag} must be a positive amount in USD (e.g. 2.5), got '{value}'.")
    return amount


def parse_priority(value, flag: str = "--priority") -> int:
    text = str(value).strip().lower()
    if text in PRIORITY_NAMES:
        return PRIORITY_NAMES[text]
    if text.isdigit() and 0 <= int(text) <= 5:
        return int(text)
    raise ApplicationError(f"{flag} must be 0–5 or one of {', '.join(PRIORITY_NAMES)}, got '{value}'.")


def resolve_model(name: str | None) -> str | None:
    """`sonnet`, `opus`, `haiku` (AUTOPILOT_MODEL_ALIASES) → a current model id; anything else as given."""
    if not name:
        return name
    return settings.AUTOPILOT_MODEL_ALIASES.get(name.strip().lower(), name.strip())


def run_url(run: ExecutionRun) -> str:
    return settings.AUTOPILOT_URL + reverse("run-detail", args=[run.pk])


def open_in_browser(command, url: str) -> bool:
    """Open `url` when the user is on a terminal (never in --json mode or in a pipe)."""
    if command.as_json or not sys.stdout.isatty():
        return False
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


def save_trajectory(run: ExecutionRun, *, output_dir: str | None, slug: str = "") -> dict[str, str]:
    directory = Path(output_dir).expanduser() if output_dir else Path(settings.AUTOPILOT_TRAJECTORY_DIR)
    try:
        json_path, rlog_path = trajectory.save_files(run, directory=directory, slug=slug)
    except OSError as exc:
        raise ApplicationError(f"Cannot write the trajectory under '{directory}': {exc}.") from exc
    return {"json": str(json_path.resolve()), "rlog": str(rlog_path.resolve())}


def check_output_dir(output_dir: str | None) -> None:
    """Refuse an --output-dir that cannot be written before the run starts (nothing half-done)."""
    if not output_dir:
        return
    path = Path(output_dir).expanduser()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ApplicationError(f"--output-dir '{output_dir}' is not a directory.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ApplicationError(f"--output-dir '{output_dir}' is not writable.")


def load_source(command, ident: str, options) -> tuple[ExecutionRun | None, dict[str, Any]]:
    """FILE|RUN: a trajectory file (as written by `run` or `export`), or a run id. Returns the run (None
    for a file) and its trajectory."""
    ident = str(ident)
    path = Path(ident).expanduser()
    if path.is_file():
        return None, trajectory.load_file(path)
    if str(ident).strip().lstrip("#").isdigit():
        run = get_run(command, str(ident).strip().lstrip("#"), options)
        return run, trajectory.export_run(run)
    if path.exists():
        raise ApplicationError(f"'{ident}' is not a file.")
    raise NotFound(
        f"No trajectory file or run '{ident}' (give a .json trajectory or a run id; "
        "`autopilot session list` shows runs)."
    )


def get_run(command, ident, options, minimum=Role.VIEWER) -> ExecutionRun:
    try:
        run = selectors.run_get(str(ident).strip().lstrip("#"))
    except NotFound as exc:
        raise NotFound(f"No run '{ident}' (`autopilot session list` shows runs).") from exc
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
        f"run #{run.pk} [{run.agent_backend}"
        f"{' — scripted (offline demo)' if run.agent_backend == 'scripted' else ''}] {run.status}"
        + (f": {run.status_reason}" if run.status_reason else ""),
        f"  branch {run.branch or '-'}  base {run.base_commit[:12] or '-'}  "
        f"head {run.head_commit[:12] or '-'}",
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
                command.stdout.write(
                    json.dumps(to_jsonable({"step": selectors.step_to_dict(step)}), ensure_ascii=False)
                )
            else:
                command.stdout.write(step_line(step))
            command.stdout.flush()
        if done:
            return
        time.sleep(poll)
