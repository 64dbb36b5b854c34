"""Secret redaction for everything a run persists, pushes or exports.

`redact(text, extra=...)` replaces known secret shapes with `[REDACTED:<kind>]`:
Anthropic (sk-ant-…), OpenAI (sk-…, sk-proj-…), GitHub (ghp_/gho_/ghu_/ghs_/ghr_, github_pat_…),
AWS access key ids (AKIA/ASIA…) and secret keys after `aws_secret_access_key`, Slack (xox[abpr]-…),
bearer tokens, PEM private key blocks, passwords in URLs (scheme://user:pass@host), and any literal
value given in `extra` (the project's .env values: see `env_file_values`).

`Redactor` bundles the extra values of one run so the step recorder, messages, events, errors and
exports all use the same set. `redact_data` walks JSON-like structures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MASK = "[REDACTED:{}]"

# Order matters: the specific key shapes before the generic `sk-` one.
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("private_key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S)),
    ("anthropic_key", re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")),
    ("openai_key", re.compile(r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}")),
    ("github_token", re.compile(r"(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    (
        "aws_secret_key",
        re.compile(r"(?i)(aws_secret_access_key\s*[=:]\s*[\"']?)([A-Za-z0-9/+=]{30,})"),
    ),
    ("slack_token", re.compile(r"xox[abprs]-[A-Za-z0-9\-]{8,}")),
    ("bearer_token", re.compile(r"(?i)(\bbearer\s+)([A-Za-z0-9_\-\.=:/+]{8,})")),
    # The scheme is bounded: unbounded, every start inside a long alphanumeric run rescanned it to its
    # end looking for "://" (64 KB of letters took 15 s; bench/api.py's large messages).
    ("url_password", re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]{0,30}://[^\s:/@]+:)([^\s@/]+)(@)")),
    (
        "secret_assignment",
        re.compile(
            r"(?i)((?:api[_-]?key|secret[_-]?key|access[_-]?token|auth[_-]?token|password|passwd)\s*[=:]\s*[\"']?)"
            r"([^\s\"']{8,})"
        ),
    ),
]

# Values shorter than this from .env files are not redacted (too likely to be "true", "8000"…).
MIN_ENV_VALUE = 6


def _sub(kind: str, pattern: re.Pattern[str], text: str) -> str:
    if pattern.groups >= 2:
        def repl(match: re.Match[str]) -> str:
            tail = match.group(3) if pattern.groups >= 3 else ""
            return match.group(1) + MASK.format(kind) + tail

        return pattern.sub(repl, text)
    return pattern.sub(MASK.format(kind), text)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Return `text` with every known secret shape and every literal in `extra` masked."""
    if not text:
        return text
    if not isinstance(text, str):
        text = str(text)
    # Literal values first (longest first) so a .env value containing a key shape is masked whole.
    for value in sorted({v for v in extra if v and len(v) >= MIN_ENV_VALUE}, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK.format("env_value"))
    for kind, pattern in PATTERNS:
        text = _sub(kind, pattern, text)
    return text


def redact_data(value: Any, extra: Iterable[str] = ()) -> Any:
    """Redact every string inside a JSON-like structure (dict keys are kept)."""
    extra = tuple(extra)
    if isinstance(value, str):
        return redact(value, extra)
    if isinstance(value, dict):
        return {k: redact_data(v, extra) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(v, extra) for v in value]
    return value


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.\-]*)\s*=\s*(.*?)\s*$")


def parse_env_text(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (quotes stripped, comments and blanks ignored)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if not match:
            continue
        key, raw = match.groups()
        if raw[:1] in {'"', "'"} and raw[-1:] == raw[:1] and len(raw) >= 2:
            raw = raw[1:-1]
        elif " #" in raw:
            raw = raw.split(" #", 1)[0].rstrip()
        values[key] = raw
    return values


def env_file_values(*roots: Path | str | None, max_depth: int = 3) -> set[str]:
    """Values of every `.env`, `.env.*` file under the roots (a few levels deep, skipping .git and
    dependency folders). These are the project's secrets by convention."""
    found: set[str] = set()
    skip = {".git", "node_modules", ".venv", "venv", "__pycache__"}
    for root in roots:
        if not root:
            continue
        base = Path(root)
        if not base.is_dir():
            continue
        stack = [(base, 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                entries = list(folder.iterdir())
            except OSError:
                continue
            for entry in entries:
                if entry.name in skip:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    if depth < max_depth:
                        stack.append((entry, depth + 1))
                elif entry.is_file() and (entry.name == ".env" or entry.name.startswith(".env.")):
                    if entry.name.endswith((".example", ".sample", ".template")):
                        continue
                    try:
                        text = entry.read_text(errors="replace")[:200_000]
                    except OSError:
                        continue
                    found.update(v for v in parse_env_text(text).values() if len(v) >= MIN_ENV_VALUE)
    return found


class Redactor:
    """The redaction set of one run: known shapes plus the project's .env values."""

    def __init__(self, extra: Iterable[str] = ()):
        self.extra = tuple(sorted(set(extra), key=len, reverse=True))

    @classmethod
    def for_project(cls, project, workspace: Path | str | None = None) -> Redactor:
        root = Path(project.repo_path)
        return cls(env_file_values(root, workspace))

    def __call__(self, text: str) -> str:
        return redact(text, self.extra)

    def data(self, value: Any) -> Any:
        return redact_data(value, self.extra)
