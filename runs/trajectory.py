"""Trajectories: export a run (JSON and a human-readable `.rlog`), import one as a new finished run,
replay it step by step, analyze it, and compare two runs.

Everything exported is redacted with the run's project redactor (known secret shapes + the
project's .env values). Rollback data (previous file bytes) is never exported: only the path.

JSON schema (`schema: "autopilot.trajectory"`, `version: 1`)::

    {schema, version, exported_at,
     run: {id, session_id, project: {id, name, slug}, task: {id, title} | null, role, backend,
           backend_label, model, prompt, status, status_reason, result_summary, error, branch,
           base_commit, head_commit, diff_summary, attempt, budget_usd, max_turns},
     usage: {cost_usd, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, turns,
             records: [{model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        cost_usd, at}]},
     timings: {created_at, queued_at, started_at, first_step_at, ended_at, duration_seconds,
               queued_to_first_step_seconds},
     steps: [{seq, kind, tool, status, risky, risk_reason, input, output, output_truncated, diff,
              rollback_path, input_tokens, output_tokens, cost_usd, decided_by, decision_note,
              decided_at, started_at, ended_at, offset_seconds}],
     messages: [{author, body, created_at, delivered_at}]}
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify

from autopilot.errors import ApplicationError
from autopilot.events import record_event
from runs.backends import backend_label
from runs.models import AgentBackend, ExecutionRun, ExecutionStep, RunMessage, RunRole, UsageRecord
from runs.redaction import Redactor

SCHEMA = "autopilot.trajectory"
VERSION = 1
MAX_IMPORT_STEPS = 20_000
FILE_KINDS = {ExecutionStep.Kind.WRITE_FILE, ExecutionStep.Kind.EDIT_FILE}


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _money(value: Decimal | None) -> str:
    return str(value if value is not None else Decimal("0"))


def _seconds(a: dt.datetime | None, b: dt.datetime | None) -> float | None:
    if not a or not b:
        return None
    return round((b - a).total_seconds(), 3)


def _load(run: ExecutionRun) -> tuple[list[ExecutionStep], list[RunMessage], list[UsageRecord]]:
    steps = list(ExecutionStep.objects.filter(run=run).select_related("decided_by").order_by("seq"))
    messages = list(RunMessage.objects.filter(run=run).select_related("author").order_by("created_at", "id"))
    usage = list(UsageRecord.objects.filter(run=run).order_by("created_at", "id"))
    return steps, messages, usage


# --- Export ---------------------------------------------------------------------------------------


def export_run(run: ExecutionRun) -> dict[str, Any]:
    """The run's trajectory as a JSON-ready dict, redacted."""
    run = ExecutionRun.objects.select_related("project", "task").get(pk=run.pk)
    steps, messages, usage = _load(run)
    origin = run.started_at or run.created_at
    imported = (run.settings or {}).get("imported") or {}
    records = [
        {
            "model": u.model,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_read_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "cost_usd": _money(u.cost_usd),
            "at": _iso(u.created_at),
        }
        for u in usage
    ] or list(imported.get("usage_records") or [])
    data = {
        "schema": SCHEMA,
        "version": VERSION,
        "exported_at": timezone.now().isoformat(),
        "run": {
            "id": run.pk,
            "session_id": run.backend_session_id,
            "project": {"id": run.project_id, "name": run.project.name, "slug": run.project.slug},
            "task": {"id": run.task_id, "title": run.task.title} if run.task_id else None,
            "role": run.role,
            "backend": run.agent_backend,
            "backend_label": backend_label(run.agent_backend),
            "model": run.model,
            "prompt": run.prompt,
            "status": run.status,
            "status_reason": run.status_reason,
            "result_summary": run.result_summary,
            "error": run.error,
            "branch": run.branch,
            "base_commit": run.base_commit,
            "head_commit": run.head_commit,
            "diff_summary": run.diff_summary or {},
            "attempt": run.attempt,
            "budget_usd": _money(run.budget_usd),
            "max_turns": run.max_turns,
        },
        "usage": {
            "cost_usd": _money(run.cost_usd),
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cache_read_tokens": run.cache_read_tokens,
            "cache_write_tokens": run.cache_write_tokens,
            "turns": run.turns,
            "records": records,
        },
        "timings": {
            "created_at": _iso(run.created_at),
            "queued_at": _iso(run.queued_at),
            "started_at": _iso(run.started_at),
            "first_step_at": _iso(run.first_step_at),
            "ended_at": _iso(run.ended_at),
            "duration_seconds": _seconds(run.started_at, run.ended_at),
            "queued_to_first_step_seconds": _seconds(run.queued_at, run.first_step_at),
        },
        "steps": [
            {
                "seq": s.seq,
                "kind": s.kind,
                "tool": s.tool_name,
                "status": s.status,
                "risky": s.risky,
                "risk_reason": s.risk_reason,
                "input": s.input,
                "output": s.output,
                "output_truncated": s.output_truncated,
                "diff": s.diff,
                "rollback_path": (s.rollback or {}).get("path")
                or (s.rollback or {}).get("rollback_path")
                or "",
                "input_tokens": s.input_tokens,
                "output_tokens": s.output_tokens,
                "cost_usd": _money(s.cost_usd),
                "decided_by": s.decided_by.get_username() if s.decided_by_id else None,
                "decision_note": s.decision_note,
                "decided_at": _iso(s.decided_at),
                "started_at": _iso(s.started_at),
                "ended_at": _iso(s.ended_at),
                "offset_seconds": _seconds(origin, s.started_at) if s.started_at else None,
            }
            for s in steps
        ],
        "messages": [
            {
                "author": m.author.get_username() if m.author_id else None,
                "body": m.body,
                "created_at": _iso(m.created_at),
                "delivered_at": _iso(m.delivered_at),
            }
            for m in messages
        ],
    }
    redactor = Redactor.for_project(run.project, run.worktree_path or None)
    return redactor.data(data)


def export_json(run: ExecutionRun) -> str:
    return json.dumps(export_run(run), indent=2, ensure_ascii=False)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


def render_rlog(data: dict[str, Any]) -> str:
    """A human-readable log of an exported trajectory (already redacted)."""
    run, usage, timings = data["run"], data["usage"], data["timings"]
    out = [
        f"# Autopilot run log — run #{run['id']} ({run['backend_label']}, model {run['model'] or '-'})",
        f"# project: {run['project']['name']}"
        + (f"   task #{run['task']['id']}: {run['task']['title']}" if run["task"] else ""),
        f"# status: {run['status']}" + (f" — {run['status_reason']}" if run["status_reason"] else ""),
        f"# branch: {run['branch'] or '-'}   base {run['base_commit'][:12] or '-'} "
        f"→ head {run['head_commit'][:12] or '-'}",
        f"# cost ${Decimal(usage['cost_usd']):.4f}   tokens {usage['input_tokens']} in / "
        f"{usage['output_tokens']} out"
        f"   turns {usage['turns']}   duration "
        f"{timings['duration_seconds'] if timings['duration_seconds'] is not None else '-'}s",
        f"# session: {run['session_id'] or '-'}   exported {data['exported_at']}",
        "#",
        "# prompt:",
        _indent(run["prompt"], "#   "),
        "",
    ]
    for step in data["steps"]:
        offset = step.get("offset_seconds")
        stamp = f"+{offset:.2f}s" if isinstance(offset, (int, float)) else "+?"
        head = f"=== [{step['seq']:04d}] {stamp:>9}  {step['kind']}  {step['tool'] or '-'}  {step['status']}"
        if step["risky"]:
            head += f"  RISKY: {step['risk_reason']}"
        out.append(head)
        if step["input"]:
            out.append("  input: " + json.dumps(step["input"], ensure_ascii=False, sort_keys=True))
        if step.get("decided_by"):
            out.append(f"  decided by {step['decided_by']}: {step['decision_note'] or '(no note)'}")
        if step["output"]:
            out.append("  output:")
            out.append(_indent(step["output"]))
        if step["diff"]:
            out.append("  diff:")
            out.append(_indent(step["diff"]))
        out.append("")
    if data["messages"]:
        out.append("# messages from humans:")
        for m in data["messages"]:
            out.append(f"#   [{m['created_at']}] {m['author'] or '?'}: {m['body']}")
    if run["result_summary"]:
        out += ["# result:", _indent(run["result_summary"], "#   ")]
    return "\n".join(out).rstrip() + "\n"


def export_rlog(run: ExecutionRun) -> str:
    return render_rlog(export_run(run))


def save_files(run: ExecutionRun, *, directory: Path, slug: str = "") -> tuple[Path, Path]:
    """Write the run's trajectory as `<directory>/YYYYMMDD/HHMMSS-<slug>.json` and `.rlog` (local time
    of the run's start; the slug defaults to the prompt's first words). Never overwrites: a name already
    taken gets the run id appended. Returns the two paths."""
    data = export_run(run)
    stamp = timezone.localtime(run.started_at or run.created_at or timezone.now())
    slug = (
        slugify(slug)[:60].strip("-")
        or slugify(" ".join(run.prompt.split()[:8]))[:48].strip("-")
        or f"run-{run.pk}"
    )
    day = Path(directory).expanduser() / stamp.strftime("%Y%m%d")
    day.mkdir(parents=True, exist_ok=True)
    base = f"{stamp.strftime('%H%M%S')}-{slug}"
    if (day / f"{base}.json").exists() or (day / f"{base}.rlog").exists():
        base = f"{base}-{run.pk}"
    json_path, rlog_path = day / f"{base}.json", day / f"{base}.rlog"
    json_path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    rlog_path.write_text(render_rlog(data), encoding="utf-8")
    return json_path, rlog_path


def load_file(path: Path) -> dict[str, Any]:
    """A trajectory file written by `save_files` or `autopilot export`, parsed and validated."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ApplicationError(f"Cannot read trajectory file '{path}': {exc}.") from exc
    data = parse_trajectory(raw)
    validate_trajectory(data)
    return data


# --- Import ---------------------------------------------------------------------------------------


def _need(data: dict, key: str, types: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise ApplicationError(f"Trajectory is missing {where}.{key}.")
    value = data[key]
    if not isinstance(value, types):
        raise ApplicationError(f"Trajectory field {where}.{key} has the wrong type ({type(value).__name__}).")
    return value


def _when(value: Any, where: str) -> dt.datetime | None:
    if value in (None, ""):
        return None
    parsed = parse_datetime(str(value)) if isinstance(value, str) else None
    if parsed is None:
        raise ApplicationError(f"Trajectory field {where} is not an ISO date-time: {value!r}.")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, dt.UTC)


def _decimal(value: Any, where: str) -> Decimal:
    try:
        number = Decimal(str(value if value not in (None, "") else "0"))
    except InvalidOperation as exc:
        raise ApplicationError(f"Trajectory field {where} is not a number: {value!r}.") from exc
    if number < 0:
        raise ApplicationError(f"Trajectory field {where} cannot be negative.")
    return number


def _count(value: Any, where: str) -> int:
    if value in (None, ""):
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ApplicationError(f"Trajectory field {where} must be a whole number ≥ 0, got {value!r}.")
    return value


def parse_trajectory(raw: str | bytes | dict) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        data = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise ApplicationError(f"Trajectory is not valid JSON: {exc}.") from exc
    if not isinstance(data, dict):
        raise ApplicationError("Trajectory must be a JSON object.")
    return data


def validate_trajectory(data: dict[str, Any]) -> None:
    if data.get("schema") != SCHEMA:
        raise ApplicationError(f"Not an Autopilot trajectory (schema must be '{SCHEMA}').")
    if data.get("version") != VERSION:
        raise ApplicationError(
            f"Unsupported trajectory version {data.get('version')!r}; this Autopilot reads version {VERSION}."
        )
    run = _need(data, "run", dict, "trajectory")
    _need(data, "usage", dict, "trajectory")
    _need(data, "timings", dict, "trajectory")
    steps = _need(data, "steps", list, "trajectory")
    if not isinstance(data.get("messages", []), list):
        raise ApplicationError("Trajectory field trajectory.messages must be a list.")
    if len(steps) > MAX_IMPORT_STEPS:
        raise ApplicationError(
            f"Trajectory has {len(steps)} steps; at most {MAX_IMPORT_STEPS} can be imported."
        )
    _need(run, "prompt", str, "run")
    backend = _need(run, "backend", str, "run")
    if backend not in AgentBackend.values:
        raise ApplicationError(
            f"Unknown agent backend '{backend}' in run.backend; "
            f"expected one of {', '.join(AgentBackend.values)}."
        )
    if run.get("status") not in ExecutionRun.Status.values:
        raise ApplicationError(f"Unknown run status {run.get('status')!r} in run.status.")
    if run.get("role", "code") not in RunRole.values:
        raise ApplicationError(f"Unknown role {run.get('role')!r} in run.role.")
    seen: set[int] = set()
    for index, step in enumerate(steps):
        where = f"steps[{index}]"
        if not isinstance(step, dict):
            raise ApplicationError(f"Trajectory {where} must be an object.")
        seq = step.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ApplicationError(f"Trajectory {where}.seq must be a positive whole number.")
        if seq in seen:
            raise ApplicationError(f"Trajectory {where}.seq {seq} appears twice.")
        seen.add(seq)
        if step.get("kind") not in ExecutionStep.Kind.values:
            raise ApplicationError(f"Trajectory {where}.kind {step.get('kind')!r} is not a known step kind.")
        if step.get("status") not in ExecutionStep.Status.values:
            raise ApplicationError(
                f"Trajectory {where}.status {step.get('status')!r} is not a known step status."
            )
        if not isinstance(step.get("input", {}), dict):
            raise ApplicationError(f"Trajectory {where}.input must be an object.")
        for key in ("output", "diff", "tool", "risk_reason", "decision_note"):
            if not isinstance(step.get(key) or "", str):
                raise ApplicationError(f"Trajectory {where}.{key} must be text.")


def import_run(*, project, raw: str | bytes | dict, actor=None) -> ExecutionRun:
    """Create a new finished run from a trajectory (validated first; all or nothing). The whole
    trajectory is redacted with the project's redactor before the write transaction opens."""
    data = parse_trajectory(raw)
    validate_trajectory(data)
    return _import_redacted(project=project, data=Redactor.for_project(project).data(data), actor=actor)


@transaction.atomic
def _import_redacted(*, project, data: dict[str, Any], actor=None) -> ExecutionRun:
    src, usage, timings = data["run"], data["usage"], data["timings"]
    status = src["status"]
    reason = src.get("status_reason") or ""
    if status not in ExecutionRun.TERMINAL:
        reason = f"imported while {status}" + (f" ({reason})" if reason else "")
        status = ExecutionRun.Status.CANCELLED
    usernames = {s.get("decided_by") for s in data["steps"] if s.get("decided_by")}
    usernames |= {
        m.get("author") for m in data.get("messages", []) if isinstance(m, dict) and m.get("author")
    }
    User = get_user_model()
    users = {u.get_username(): u for u in User.objects.filter(**{f"{User.USERNAME_FIELD}__in": usernames})}
    run = ExecutionRun.objects.create(
        project=project,
        role=src.get("role") or RunRole.CODE,
        agent_backend=src["backend"],
        model=str(src.get("model") or "")[:200],
        prompt=src["prompt"],
        status=status,
        status_reason=reason[:5000],
        autonomy_mode=project.autonomy_mode,
        settings={
            "imported": {
                "source_run": src.get("id"),
                "source_project": (src.get("project") or {}).get("name"),
                "exported_at": data.get("exported_at"),
                "usage_records": usage.get("records") or [],
                "task": src.get("task"),
            }
        },
        branch=str(src.get("branch") or "")[:300],
        base_commit=str(src.get("base_commit") or "")[:64],
        head_commit=str(src.get("head_commit") or "")[:64],
        diff_summary=src.get("diff_summary") or {},
        backend_session_id=str(src.get("session_id") or "")[:200],
        attempt=max(1, min(_count(src.get("attempt"), "run.attempt") or 1, 32767)),
        budget_usd=_decimal(src.get("budget_usd"), "run.budget_usd"),
        max_turns=max(1, _count(src.get("max_turns"), "run.max_turns") or 1),
        cost_usd=_decimal(usage.get("cost_usd"), "usage.cost_usd"),
        input_tokens=_count(usage.get("input_tokens"), "usage.input_tokens"),
        output_tokens=_count(usage.get("output_tokens"), "usage.output_tokens"),
        cache_read_tokens=_count(usage.get("cache_read_tokens"), "usage.cache_read_tokens"),
        cache_write_tokens=_count(usage.get("cache_write_tokens"), "usage.cache_write_tokens"),
        turns=_count(usage.get("turns"), "usage.turns"),
        result_summary=src.get("result_summary") or "",
        error=src.get("error") or "",
        created_by=actor if getattr(actor, "pk", None) else None,
        queued_at=_when(timings.get("queued_at"), "timings.queued_at"),
        started_at=_when(timings.get("started_at"), "timings.started_at"),
        first_step_at=_when(timings.get("first_step_at"), "timings.first_step_at"),
        ended_at=_when(timings.get("ended_at"), "timings.ended_at") or timezone.now(),
    )
    steps = []
    for index, s in enumerate(sorted(data["steps"], key=lambda s: s["seq"])):
        where = f"steps[{index}]"
        steps.append(
            ExecutionStep(
                run=run,
                seq=s["seq"],
                kind=s["kind"],
                tool_name=str(s.get("tool") or "")[:200],
                status=s["status"],
                risky=bool(s.get("risky")),
                risk_reason=(s.get("risk_reason") or "")[:500],
                input=s.get("input") or {},
                output=s.get("output") or "",
                output_truncated=bool(s.get("output_truncated")),
                diff=s.get("diff") or "",
                rollback={"rollback_path": s["rollback_path"]} if s.get("rollback_path") else {},
                input_tokens=_count(s.get("input_tokens"), f"{where}.input_tokens"),
                output_tokens=_count(s.get("output_tokens"), f"{where}.output_tokens"),
                cost_usd=_decimal(s.get("cost_usd"), f"{where}.cost_usd"),
                decided_by=users.get(s.get("decided_by")),
                decision_note=s.get("decision_note") or "",
                decided_at=_when(s.get("decided_at"), f"{where}.decided_at"),
                started_at=_when(s.get("started_at"), f"{where}.started_at"),
                ended_at=_when(s.get("ended_at"), f"{where}.ended_at"),
            )
        )
    ExecutionStep.objects.bulk_create(steps)
    messages, created_ats = [], []
    for index, m in enumerate(data.get("messages") or []):
        if not isinstance(m, dict) or not isinstance(m.get("body"), str):
            raise ApplicationError(f"Trajectory messages[{index}] needs a text body.")
        messages.append(
            RunMessage(
                run=run,
                author=users.get(m.get("author")),
                body=m["body"],
                delivered_at=_when(m.get("delivered_at"), f"messages[{index}].delivered_at"),
            )
        )
        created_ats.append(_when(m.get("created_at"), f"messages[{index}].created_at"))
    RunMessage.objects.bulk_create(messages)
    for message, created_at in zip(messages, created_ats, strict=True):
        message.created_at = created_at or message.created_at
    RunMessage.objects.bulk_update(messages, ["created_at"])
    last_seq = max((s.seq for s in steps), default=0)
    created = _when(timings.get("created_at"), "timings.created_at")
    ExecutionRun.objects.filter(pk=run.pk).update(
        last_step_seq=last_seq, **({"created_at": created} if created else {})
    )
    record_event(
        kind="executionrun.imported",
        subject=run,
        actor=actor,
        data={"source_run": src.get("id"), "steps": len(steps), "status": status},
    )
    run.refresh_from_db()
    return run


# --- Replay ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayFrame:
    """One step as it happened: `wait` seconds after the previous one (≥ 0)."""

    index: int
    total: int
    wait: float
    step: dict[str, Any]


def replay(source: ExecutionRun | dict[str, Any]) -> Iterator[ReplayFrame]:
    """Yield the run's steps in order, each with the time since the previous step."""
    data = export_run(source) if isinstance(source, ExecutionRun) else source
    steps = sorted(data["steps"], key=lambda s: s["seq"])
    previous: float | None = None
    for index, step in enumerate(steps):
        offset = step.get("offset_seconds")
        wait = 0.0
        if isinstance(offset, (int, float)):
            wait = max(0.0, offset - previous) if previous is not None else max(0.0, float(offset))
            previous = float(offset)
        yield ReplayFrame(index=index, total=len(steps), wait=round(wait, 3), step=step)


def step_line(step: dict[str, Any], width: int = 120) -> str:
    shown = json.dumps(step.get("input") or {}, ensure_ascii=False, sort_keys=True)
    if len(shown) > width:
        shown = shown[: width - 3] + "..."
    line = (
        f"#{step['seq']:<4} {step['kind']:<13} {step['status']:<12} {step.get('tool') or ''} {shown}".rstrip()
    )
    first = (step.get("output") or "").strip().splitlines()[:1]
    if first:
        line += f"\n      → {first[0][:160]}"
    return line


# --- Analysis and comparison ----------------------------------------------------------------------

_DIFF_FILE = re.compile(r"^\+\+\+ (?:b/)?(.+)$", re.M)
_DIFF_OLD = re.compile(r"^--- (?:a/)?(.+)$", re.M)


def _diff_counts(diff: str) -> tuple[int, int]:
    added = removed = 0
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added, removed


def _step_path(step: dict[str, Any]) -> str:
    if step.get("rollback_path"):
        return step["rollback_path"]
    match = _DIFF_FILE.search(step.get("diff") or "")
    if match and match.group(1) != "/dev/null":
        return match.group(1).strip()
    match = _DIFF_OLD.search(step.get("diff") or "")
    if match and match.group(1) != "/dev/null":
        return match.group(1).strip()
    data = step.get("input") or {}
    for key in ("path", "file_path", "notebook_path"):
        if isinstance(data.get(key), str) and data[key]:
            return data[key]
    return ""


def analyze(source: ExecutionRun | dict[str, Any]) -> dict[str, Any]:
    """Cost, tokens, duration, turns, tool-use breakdown, files touched, errors, time to first step."""
    data = export_run(source) if isinstance(source, ExecutionRun) else source
    run, usage, timings, steps = data["run"], data["usage"], data["timings"], data["steps"]
    tools: dict[str, dict[str, int]] = {}
    for s in steps:
        key = s.get("tool") or s["kind"]
        entry = tools.setdefault(
            key, {"count": 0, "completed": 0, "failed": 0, "skipped": 0, "rolled_back": 0}
        )
        entry["count"] += 1
        if s["status"] in entry:
            entry[s["status"]] += 1
    files: dict[str, dict[str, Any]] = {}
    for s in steps:
        if s["kind"] not in FILE_KINDS or s["status"] == ExecutionStep.Status.SKIPPED:
            continue
        path = _step_path(s)
        if not path:
            continue
        added, removed = _diff_counts(s.get("diff") or "")
        entry = files.setdefault(path, {"path": path, "steps": [], "added": 0, "removed": 0})
        entry["steps"].append(s["seq"])
        entry["added"] += added
        entry["removed"] += removed
    for f in (run.get("diff_summary") or {}).get("files") or []:
        files.setdefault(
            f["path"],
            {"path": f["path"], "steps": [], "added": f.get("added", 0), "removed": f.get("removed", 0)},
        )
    errors = [
        {
            "seq": s["seq"],
            "kind": s["kind"],
            "tool": s.get("tool") or "",
            "status": s["status"],
            "message": ((s.get("output") or "").strip().splitlines() or [""])[0][:300],
        }
        for s in steps
        if s["status"] in (ExecutionStep.Status.FAILED, ExecutionStep.Status.SKIPPED)
    ]
    by_model: dict[str, dict[str, Any]] = {}
    for r in usage.get("records") or []:
        entry = by_model.setdefault(
            r.get("model") or "?",
            {
                "model": r.get("model") or "?",
                "calls": 0,
                "input_tokens": 0,
                "output_tokens": 0,
                "cost_usd": Decimal("0"),
            },
        )
        entry["calls"] += 1
        entry["input_tokens"] += int(r.get("input_tokens") or 0)
        entry["output_tokens"] += int(r.get("output_tokens") or 0)
        entry["cost_usd"] += Decimal(str(r.get("cost_usd") or "0"))
    approvals = [s for s in steps if s.get("decided_by") or s.get("decided_at")]
    commands = [
        s["input"].get("command") or s["input"].get("cmd")
        for s in steps
        if s["kind"] == ExecutionStep.Kind.RUN_TERMINAL and isinstance(s.get("input"), dict)
    ]
    kinds = Counter(s["kind"] for s in steps)
    tokens = {
        k: int(usage.get(k) or 0)
        for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    }
    return {
        "run": run.get("id"),
        "backend": run["backend"],
        "backend_label": run.get("backend_label") or backend_label(run["backend"]),
        "model": run.get("model") or "",
        "status": run["status"],
        "status_reason": run.get("status_reason") or "",
        "cost_usd": Decimal(str(usage.get("cost_usd") or "0")),
        "tokens": {**tokens, "total": sum(tokens.values())},
        "turns": int(usage.get("turns") or 0),
        "duration_seconds": timings.get("duration_seconds"),
        "time_to_first_step_seconds": timings.get("queued_to_first_step_seconds"),
        "steps": len(steps),
        "steps_by_kind": dict(sorted(kinds.items())),
        "tool_use": dict(sorted(tools.items(), key=lambda kv: (-kv[1]["count"], kv[0]))),
        "files_touched": sorted(files.values(), key=lambda f: f["path"]),
        "commands": [c for c in commands if c],
        "errors": errors,
        "approvals": {
            "requested": sum(
                1 for s in steps if s.get("decided_at") or s["status"] == ExecutionStep.Status.NEEDS_APPROVAL
            ),
            "approved": sum(1 for s in approvals if s["status"] != ExecutionStep.Status.SKIPPED),
            "rejected": sum(1 for s in approvals if s["status"] == ExecutionStep.Status.SKIPPED),
        },
        "cost_by_model": sorted(by_model.values(), key=lambda m: -m["cost_usd"]),
    }


COMPARED = ("cost_usd", "turns", "duration_seconds", "time_to_first_step_seconds", "steps")


def _delta(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        return Decimal(str(b)) - Decimal(str(a))
    return round(b - a, 3) if isinstance(a, float) or isinstance(b, float) else b - a


def compare(a: ExecutionRun | dict[str, Any], b: ExecutionRun | dict[str, Any]) -> dict[str, Any]:
    """Two runs side by side: the analysis of each, differences, and their step sequences aligned."""
    data_a = export_run(a) if isinstance(a, ExecutionRun) else a
    data_b = export_run(b) if isinstance(b, ExecutionRun) else b
    an_a, an_b = analyze(data_a), analyze(data_b)
    delta = {k: _delta(an_a[k], an_b[k]) for k in COMPARED}
    delta["tokens"] = an_b["tokens"]["total"] - an_a["tokens"]["total"]
    files_a = {f["path"] for f in an_a["files_touched"]}
    files_b = {f["path"] for f in an_b["files_touched"]}

    def sig(step: dict[str, Any]) -> str:
        return (
            f"{step['kind']}:{step.get('tool') or ''}:"
            f"{_step_path(step) or (step.get('input') or {}).get('command', '')}"
        )

    steps_a = sorted(data_a["steps"], key=lambda s: s["seq"])
    steps_b = sorted(data_b["steps"], key=lambda s: s["seq"])
    matcher = difflib.SequenceMatcher(
        a=[sig(s) for s in steps_a], b=[sig(s) for s in steps_b], autojunk=False
    )
    rows: list[dict[str, Any]] = []

    def brief(step: dict[str, Any] | None) -> dict[str, Any] | None:
        if step is None:
            return None
        return {
            "seq": step["seq"],
            "kind": step["kind"],
            "tool": step.get("tool") or "",
            "status": step["status"],
            "summary": step_line(step, width=80).splitlines()[0],
        }

    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            rows += [
                {"a": brief(steps_a[i]), "b": brief(steps_b[j]), "match": "same"}
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            ]
        else:
            left, right = steps_a[i1:i2], steps_b[j1:j2]
            for k in range(max(len(left), len(right))):
                sa = left[k] if k < len(left) else None
                sb = right[k] if k < len(right) else None
                rows.append(
                    {
                        "a": brief(sa),
                        "b": brief(sb),
                        "match": "changed" if sa and sb else ("only_a" if sa else "only_b"),
                    }
                )
    return {
        "a": an_a,
        "b": an_b,
        "delta": delta,
        "files": {
            "both": sorted(files_a & files_b),
            "only_a": sorted(files_a - files_b),
            "only_b": sorted(files_b - files_a),
        },
        "similarity": round(matcher.ratio(), 3),
        "steps": rows,
    }
