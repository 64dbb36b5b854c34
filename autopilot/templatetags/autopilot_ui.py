"""Template filters for human-readable pages: names of kinds and statuses, inputs as key/value rows,
the agent a run used (a scripted run says so instead of showing a model name)."""

from __future__ import annotations

import json

from django import template

from autopilot.manager.dashboard import is_demo_project
from autopilot.models import AutonomyMode
from autopilot.permissions import header_controls
from runs.backends import backend_label
from runs.models import AgentBackend, ExecutionRun, ExecutionStep

register = template.Library()

# Every status and kind the models know, by value (a step's "running" and a run's "running" agree).
NAMES: dict[str, str] = {
    **dict(ExecutionStep.Kind.choices),
    **dict(ExecutionStep.Status.choices),
    **dict(ExecutionRun.Status.choices),
    **dict(AutonomyMode.choices),
}


@register.filter
def human(value) -> str:
    """`llm_turn` → "LLM turn", `waiting_approval` → "Waiting for approval"; unknown values readable."""
    text = "" if value is None else str(value)
    if text in NAMES:
        return str(NAMES[text])
    return text.replace("_", " ").replace(".", " · ").capitalize()


@register.filter
def kv(value) -> list[tuple[str, str]]:
    """A dict as (key, text) rows: strings as they are, anything else as compact JSON."""
    if not isinstance(value, dict):
        return [] if value in (None, "", [], {}) else [("value", _text(value))]
    return [(str(key), _text(item)) for key, item in value.items()]


def _text(value) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


@register.filter
def run_agent(run) -> str:
    """The agent of a run: "scripted (demo)" for the offline backend, else its label and model."""
    if run.agent_backend == AgentBackend.SCRIPTED:
        return "scripted (demo)"
    label = backend_label(run.agent_backend)
    return f"{label} · {run.model}" if run.model else label


@register.simple_tag(takes_context=True)
def project_controls(context, project) -> dict[str, bool]:
    """Which project controls the page's user may use (none for a page rendered without a request)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"can_operate": False, "can_pause": False, "can_set_mode": False}
    return header_controls(user, project)


@register.filter
def is_demo(project) -> bool:
    """Only the project `autopilot demo` created is labelled "demo" (not every scripted project)."""
    return is_demo_project(project)
