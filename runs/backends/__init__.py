"""Agent backends, looked up by AgentBackend value.

Each entry is a dotted path, imported on first use so an optional backend (codex, claude_code)
that is missing its dependency fails only the run that asks for it, with a clear reason.
"""

from __future__ import annotations

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
