"""Agent backends, looked up by AgentBackend value.

Each entry is a dotted path, imported on first use so an optional backend (codex, claude_code)
that is missing its dependency fails only the run that asks for it, with a clear reason.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from runs.backends.base import Backend, BackendError

BACKENDS: dict[str, str] = {
    "scripted": "runs.backends.scripted.ScriptedBackend",
    "native": "runs.backends.native.NativeBackend",
    "test_worker": "runs.backends.test_worker.TestWorkerBackend",
    "claude_code": "runs.backends.claude_code.ClaudeCodeBackend",
    "codex": "runs.backends.codex.CodexBackend",
}

LABELS: dict[str, str] = {
    "scripted": "scripted (offline demo)",
    "native": "native tool-use loop",
    "test_worker": "test worker (no model)",
    "claude_code": "Claude Code",
    "codex": "Codex CLI",
}


def backend_label(name: str) -> str:
    """The label shown wherever a backend appears (the scripted one always says it is offline)."""
    return LABELS.get(name, name)


def backend_class(name: str) -> type[Backend]:
    path = BACKENDS.get(name)
    if path is None:
        raise BackendError(f"Unknown agent backend '{name}'; choose from {', '.join(BACKENDS)}.")
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise BackendError(f"Agent backend '{name}' is not installed here: {exc}.") from exc
    return cls


def get_backend(name: str) -> Backend:
    """A fresh backend instance for one run; BackendError when unknown or unavailable."""
    cls = backend_class(name)
    ok, why = cls.available()
    if not ok:
        raise BackendError(f"Agent backend '{name}' is not available: {why}")
    return cls()


# --- Is a backend configured here? (the one place that says so, and why not) ------------------------

ALWAYS_READY = frozenset({"scripted", "test_worker"})
PROVIDER_KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}


def _native_providers(model: str | None) -> list[str]:
    """The providers a native run could use: the model's, or any when no model is chosen yet."""
    if model:
        native = import_string("runs.backends.native.split_model")
        return [native(model)[0]]
    return list(PROVIDER_KEYS)


def _keys_needed(name: str, model: str | None) -> list[str]:
    """Setting names of which at least one must be non-empty."""
    if name == "claude_code":
        return [PROVIDER_KEYS["anthropic"]]
    if name == "codex":
        return [PROVIDER_KEYS["openai"]]
    if name == "native":
        return [PROVIDER_KEYS[p] for p in _native_providers(model)]
    return []


def backend_status(name: str, model: str | None = None) -> tuple[bool, str]:
    """(configured here, what is missing) for a backend, e.g. (False, "no ANTHROPIC_API_KEY configured").

    scripted and test_worker always run; claude_code needs its CLI and ANTHROPIC_API_KEY; codex its CLI
    and OPENAI_API_KEY; native the key of its model's provider (with no model yet: either key).
    """
    if name in ALWAYS_READY:
        return True, ""
    try:
        ok, why = backend_class(name).available()
    except BackendError as exc:
        return False, str(exc)
    if not ok:
        return False, why
    keys = _keys_needed(name, model)
    if keys and not any(getattr(settings, key, "") for key in keys):
        return False, f"no {' or '.join(keys)} configured"
    return True, ""


def backend_choices(model: str | None = None) -> list[dict]:
    """Every backend with its label and whether it can run here (the launch form's options)."""
    out = []
    for name in BACKENDS:
        ok, why = backend_status(name, model)
        out.append({"value": name, "label": backend_label(name), "ok": ok, "missing": why})
    return out
