"""One short completion from the project's manager-role model (Project.agent_for("manager")).

Used by the project snapshot's narrative and the alignment check's judgement. The call goes through
the official SDKs like the native backend (runs.backends.native: "anthropic:…", "openai:…" or a bare
name; base URLs and keys from settings), without tools, and its cost is recorded as a UsageRecord of
the project (and of the run it is about, if any, without adding to that run's own totals: the agent
did not spend it). Backends without a model (scripted, test worker) answer `ModelUnavailable`, as does
any API or network error: callers work without a model and say why.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from autopilot.models import Project
from runs.backends.native import split_model
from runs.budget import cost_of
from runs.models import AgentBackend, ExecutionRun, UsageRecord
from runs.redaction import redact

NO_MODEL_BACKENDS = frozenset({AgentBackend.SCRIPTED, AgentBackend.TEST_WORKER})
MAX_TOKENS = 1024


class ModelUnavailable(Exception):
    """No answer from the manager-role model; the message says why (for the user)."""


@dataclass
class Completion:
    text: str
    model: str
    usage: UsageRecord


def _timeout() -> float:
    return float(getattr(settings, "AUTOPILOT_MANAGER_LLM_TIMEOUT", 120))


def manager_model(project: Project) -> tuple[str, str]:
    """(backend, model) of the project's manager role."""
    return project.agent_for("manager")


def complete(
    project: Project, *, system: str, prompt: str, run: ExecutionRun | None = None, purpose: str
) -> Completion:
    """The manager-role model's answer to `prompt` (its cost recorded). Raises ModelUnavailable."""
    backend, model = manager_model(project)
    if backend in NO_MODEL_BACKENDS:
        raise ModelUnavailable(
            f"The project's manager role uses the {backend} backend, which has no model "
            "(set model_matrix.manager to a model to get one)."
        )
    provider, name = split_model(model)
    if provider == "anthropic":
        text, tokens = _anthropic(name, system, prompt)
    else:
        text, tokens = _openai(name, system, prompt)
    cost, priced = cost_of(name, **tokens)
    usage = UsageRecord.objects.create(
        project=project,
        run=run,
        agent_backend=f"manager:{purpose}",
        model=name,
        cost_usd=cost,
        priced=priced,
        **tokens,
    )
    return Completion(redact(text.strip()), name, usage)


def _anthropic(model: str, system: str, prompt: str) -> tuple[str, dict]:
    import anthropic  # an optional dependency of the native path, as in runs.backends.native

    client = anthropic.Anthropic(
        base_url=settings.ANTHROPIC_BASE_URL or None,
        api_key=settings.ANTHROPIC_API_KEY or "not-set",
        max_retries=0,
        timeout=_timeout(),
    )
    try:
        response = client.messages.create(
            model=model,
            max_tokens=MAX_TOKENS,
            system=system,
            messages=[{"role": "user", "content": prompt}],
        )
    except anthropic.APIError as exc:
        raise ModelUnavailable(f"The manager model ({model}) did not answer: {type(exc).__name__}.") from exc
    usage = response.usage
    text = "\n".join(b.text for b in response.content if getattr(b, "type", "") == "text")
    return text, {
        "input_tokens": usage.input_tokens or 0,
        "output_tokens": usage.output_tokens or 0,
        "cache_read_tokens": getattr(usage, "cache_read_input_tokens", 0) or 0,
        "cache_write_tokens": getattr(usage, "cache_creation_input_tokens", 0) or 0,
    }


def _openai(model: str, system: str, prompt: str) -> tuple[str, dict]:
    import openai

    client = openai.OpenAI(
        base_url=settings.OPENAI_BASE_URL or None,
        api_key=settings.OPENAI_API_KEY or "not-set",
        max_retries=0,
        timeout=_timeout(),
    )
    try:
        response = client.chat.completions.create(
            model=model,
            max_tokens=MAX_TOKENS,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
        )
    except openai.APIError as exc:
        raise ModelUnavailable(f"The manager model ({model}) did not answer: {type(exc).__name__}.") from exc
    usage = response.usage
    cached = 0
    if usage is not None and getattr(usage, "prompt_tokens_details", None) is not None:
        cached = usage.prompt_tokens_details.cached_tokens or 0
    text = (response.choices[0].message.content or "") if response.choices else ""
    return text, {
        "input_tokens": max(0, (usage.prompt_tokens or 0) - cached) if usage else 0,
        "output_tokens": (usage.completion_tokens or 0) if usage else 0,
        "cache_read_tokens": cached,
        "cache_write_tokens": 0,
    }
