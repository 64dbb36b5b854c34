"""Secret redaction: one linear pass per pattern over everything persisted, pushed, exported or served.

`redact(text, extra=...)` replaces known secret shapes with `[REDACTED:<kind>]`:

- `private_key`     PEM blocks (RSA / EC / DSA / OPENSSH / PGP / plain PRIVATE KEY), also when cut off;
- `anthropic_key`   sk-ant-…;  `openai_key` sk-proj-… / sk-svcacct-… / sk-admin-… and legacy sk-<alnum>;
- `github_token`    ghp_ / gho_ / ghu_ / ghs_ / ghr_ … and github_pat_…;
- `aws_access_key`  AKIA… / ASIA… (20 chars);  `aws_secret_key` a bare 40-char base64 token that looks
                    random (upper, lower and digits, many case changes: git SHAs, UUIDs and identifiers
                    survive);
- `slack_token`     xoxb- / xoxp- / xoxa- / xoxr- / xoxs- / xoxe- / xapp-…;
- `stripe_key`      sk_live_ / sk_test_ / rk_live_ / rk_test_ / whsec_… (pk_live_ is public and kept);
- `jwt`             eyJ….eyJ….signature;
- `bearer_token`    `Bearer <token>` and `Authorization: Basic|Token|Bearer <value>`;
- `url_password`    the password of scheme://user:password@host (user and host are kept);
- `secret_assignment` the value after a secret-ish key: `.env`/shell/INI lines (`DB_PASSWORD=…`), JSON
                    (`"password": "…"`), YAML (`api_key: …`), code (`SECRET_KEY = "…"`);
- `env_value`       any literal given in `extra` (the project's .env values: see `env_file_values`).

Every pattern is linear in the input: it starts on a literal or a one-character class, its quantifiers
are bounded or possessive, and nothing that can fail follows an unbounded run (a match that a filter
rejects still consumes its text), so no input makes the engine rescan what it already scanned. The
literals of `extra` become one trie-shaped expression (one pass, longest match first) instead of one
pass per value. `bench/redaction.py` measures throughput and growth; tests/runs/test_redaction.py
feeds each pattern ~1 MB of adversarial input under a timeout.

What is redacted where (the rule): everything a run persists, pushes or exports (prompt, settings,
steps, messages, notes, reasons, errors, events, exports, imports) and the title and body of a task a
human writes. A blueprint's source text is the user's own document and is kept verbatim (its offsets
and hashes depend on it); tasks generated from it quote it verbatim too, and are redacted on their way
into a run's prompt.

`Redactor` bundles the extra values of one project (or run) so every writer uses the same set;
`redact_data` walks JSON-like structures (iteratively: any depth).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

MASK = "[REDACTED:{}]"

# Values shorter than this from .env files are not redacted (too likely to be "true", "8000"…).
MIN_ENV_VALUE = 6
# Longest value a key=value rule masks in one match (a longer one is masked by the next match).
MAX_VALUE = 4096

_TOKEN = r"[A-Za-z0-9_\-]"  # characters of an API-key-like token
_B64 = r"[A-Za-z0-9/+]"


def _random_looking(token: str) -> bool:
    """A 40-char base64 token that looks like a generated secret, not an identifier or a hex SHA."""
    if not (
        any(c.isdigit() for c in token)
        and any(c.isupper() for c in token)
        and any(c.islower() for c in token)
    ):
        return False
    if len(set(token)) < 16:
        return False

    def cls(c: str) -> int:
        return 0 if c.isupper() else 1 if c.islower() else 2 if c.isdigit() else 3

    changes = sum(1 for a, b in zip(token, token[1:], strict=False) if cls(a) != cls(b))
    return changes >= 14


_PLACEHOLDERS = frozenset(
    {
        "null",
        "none",
        "nil",
        "true",
        "false",
        "undefined",
        "str",
        "string",
        "bytes",
        "int",
        "bool",
        "optional",
        "any",
        "number",
        "secretstr",
        "required",
        "redacted",
        "os",
        "env",
        "self",
    }
)


def _is_placeholder(value: str, bare: bool) -> bool:
    """Values after a secret-ish key that are not secrets: empty, masked, templated, type names,
    code references (`settings.DB_PASSWORD`), short numbers."""
    v = value.strip()
    if not v or v.startswith(("[REDACTED", "${", "$(", "{{", "<", "%(", "***", "…", "...")):
        return True
    if v.lower() in _PLACEHOLDERS:
        return True
    if bare:
        if len(v) < 3 or (v.isdigit() and len(v) < 6):
            return True
        if v.startswith("$") or _DOTTED.fullmatch(v):
            return True
    return False


_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,100}(?:\.[A-Za-z_][A-Za-z0-9_]{0,100}){1,10}")


def _mask_group(kind: str, group: int | str, keep: Callable[[re.Match[str]], bool] | None = None):
    """A replacement masking one group of the match (the text around it is kept)."""

    def repl(match: re.Match[str]) -> str:
        if keep is not None and keep(match):
            return match.group(0)
        start, end = match.span(group)
        base = match.start()
        whole = match.group(0)
        return whole[: start - base] + MASK.format(kind) + whole[end - base :]

    return repl


def _mask_whole(kind: str, keep: Callable[[re.Match[str]], bool] | None = None):
    mask = MASK.format(kind)

    def repl(match: re.Match[str]) -> str:
        return match.group(0) if keep is not None and keep(match) else mask

    return repl


def _assignment(match: re.Match[str]) -> str:
    for name, bare in (("dq", False), ("sq", False), ("bare", True)):
        value = match.group(name)
        if value is not None:
            if _is_placeholder(value, bare):
                return match.group(0)
            return _mask_group("secret_assignment", name)(match)
    return match.group(0)  # pragma: no cover - one branch always matched


def _trie_regex(values: Iterable[str]) -> str:
    """One expression matching any of `values`, longest first, shaped as a trie (no backtracking
    across alternatives that share a prefix: the cost per position is bounded by the longest value)."""
    trie: dict[str, Any] = {}
    for value in values:
        node = trie
        for char in value:
            node = node.setdefault(char, {})
        node[""] = True

    def emit(node: dict[str, Any]) -> str:
        ends = "" in node
        branches = [re.escape(char) + emit(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends:
            return "(?:" + body + ")?"
        return body

    return emit(trie)


def _spellings(words: Iterable[str]) -> list[str]:
    """The usual spellings of snake-case key names (lower, UPPER, Title, camelCase; joined by _, - or
    nothing). Case-sensitive literals, unlike a case-insensitive pattern, let the engine skip every
    position whose character cannot start a key: the key=value rule runs ~10x faster."""
    out: set[str] = set()
    for word in words:
        parts = word.split("_")
        for sep in ("_", "-", ""):
            out.add(sep.join(parts))
            out.add(sep.join(parts).upper())
            out.add(sep.join(p.title() for p in parts))
            out.add(
                parts[0] + sep.join([""] + [p.title() for p in parts[1:]])
                if sep == ""
                else sep.join([parts[0]] + [p.title() for p in parts[1:]])
            )
    return sorted(out)


# Secret-ish key names; the key may carry any prefix (DB_PASSWORD, GITHUB_TOKEN, client_secret) but
# must END with one of these (input_tokens, password_hash, token_count are not secrets).
_KEY_NAMES = _spellings(
    [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "credential",
        "credentials",
        "secret_key",
        "secret_access_key",
        "api_key",
        "apikey",
        "access_key",
        "private_key",
        "signing_key",
        "encryption_key",
        "master_key",
        "auth_key",
        "client_secret",
        "api_secret",
    ]
)
_AUTH_WORDS = _spellings(["bearer"])
_AUTH_HEADER = _spellings(["authorization"])
_AUTH_SCHEMES = _spellings(["basic", "token", "bearer"])


# (kind, pattern, replacement). Order matters: specific shapes before generic ones, whole tokens
# before the key=value rule (which then sees a mask and keeps it).
PATTERNS: list[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (
        "private_key",
        # The body is base64, whitespace and header lines ("Proc-Type: 4,ENCRYPTED"): a run that stops
        # at the next "-----", then the END line if it is there (a cut-off key is masked too).
        re.compile(
            r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
            r"[A-Za-z0-9+/=:,.\s]*+(?:-(?!----)[A-Za-z0-9+/=:,.\s]*+)*+"
            r"(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?"
        ),
        _mask_whole("private_key"),
    ),
    # Token shapes: the literal first (a fast scan), then a look-behind so a token starts only at the
    # start of a word ("task-management-…" holds no "sk-" key), then a possessive run.
    (
        "anthropic_key",
        re.compile(rf"sk-ant-(?<!{_TOKEN}sk-ant-){_TOKEN}{{8,}}+"),
        _mask_whole("anthropic_key"),
    ),
    (
        "openai_key",
        re.compile(rf"sk-(?<!{_TOKEN}sk-)(?:(?:proj|svcacct|admin)-{_TOKEN}{{16,}}+|[A-Za-z0-9]{{20,}}+)"),
        _mask_whole("openai_key"),
    ),
    (
        "github_token",
        re.compile(rf"g(?<!{_TOKEN}g)(?:h[pousr]_[A-Za-z0-9]{{20,}}+|ithub_pat_[A-Za-z0-9_]{{20,}}+)"),
        _mask_whole("github_token"),
    ),
    (
        "aws_access_key",
        re.compile(r"A(?<![A-Za-z0-9]A)(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
        _mask_whole("aws_access_key"),
    ),
    (
        "slack_token",
        re.compile(rf"x(?<!{_TOKEN}x)(?:ox[abprse]|app)-[A-Za-z0-9\-]{{8,}}+"),
        _mask_whole("slack_token"),
    ),
    (
        "stripe_key",
        re.compile(
            rf"[sr]k_(?<!{_TOKEN}[sr]k_)(?:live|test)_[A-Za-z0-9]{{16,}}+|whsec_(?<!{_TOKEN}whsec_)[A-Za-z0-9]{{20,}}+"
        ),
        _mask_whole("stripe_key"),
    ),
    (
        "jwt",
        re.compile(rf"eyJ(?<!{_TOKEN}eyJ){_TOKEN}{{4,}}+\.eyJ{_TOKEN}{{4,}}+\.{_TOKEN}{{8,}}+"),
        _mask_whole("jwt"),
    ),
    (
        "bearer_token",
        re.compile(
            # The word first (a fast scan), then a look-behind for the word boundary before it.
            rf"(?:(?:{_trie_regex(_AUTH_WORDS)})(?<![A-Za-z0-9_].{{6}})"
            rf"|(?:{_trie_regex(_AUTH_HEADER)})(?<![A-Za-z0-9_].{{13}})"
            r"[\"']?[ \t]{0,8}[:=][ \t]{0,8}[\"']?"
            rf"(?:{_trie_regex(_AUTH_SCHEMES)}))[ \t]{{1,8}}"
            r"(?P<value>[A-Za-z0-9_\-.=:/+~]{8,512}+)"
        ),
        _mask_group(
            "bearer_token",
            "value",
            keep=lambda m: len(m["value"]) < 20 and not any(c.isdigit() for c in m["value"]),
        ),
    ),
    (
        "url_password",
        # Anchored on "://": the scheme is never scanned, so a long run of letters costs nothing.
        re.compile(r"://[^\s:/@\"'<>]{0,256}+:(?P<value>[^\s@/\"'<>]{1,1024}+)@"),
        _mask_group("url_password", "value"),
    ),
    (
        "aws_secret_key",
        re.compile(rf"{_B64}(?<![A-Za-z0-9/+=]{_B64}){_B64}{{39}}(?![A-Za-z0-9/+=])"),
        _mask_whole("aws_secret_key", keep=lambda m: not _random_looking(m.group(0))),
    ),
    (
        "secret_assignment",
        re.compile(
            rf"(?:{_trie_regex(_KEY_NAMES)})(?![A-Za-z0-9_\-])"
            r"[\"']?[ \t]{0,8}(?::=|=>|:(?![:=])|=(?![=~>]))[ \t]{0,8}"
            rf"(?:\"(?P<dq>[^\"\n]{{1,{MAX_VALUE}}}+)|'(?P<sq>[^'\n]{{1,{MAX_VALUE}}}+)"
            rf"|(?P<bare>[^\s\"'`,;(){{}}\[\]<>]{{1,{MAX_VALUE}}}+))"
        ),
        _assignment,
    ),
]


@lru_cache(maxsize=64)
def _literal_pattern(values: tuple[str, ...]) -> re.Pattern[str] | None:
    if not values:
        return None
    return re.compile(_trie_regex(values))


def _literals(extra: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({v for v in extra if isinstance(v, str) and len(v) >= MIN_ENV_VALUE}))


def _redact(text: str, literals: re.Pattern[str] | None) -> str:
    if literals is not None:
        text = literals.sub(MASK.format("env_value"), text)
    for _kind, pattern, repl in PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """Return `text` with every known secret shape and every literal in `extra` masked."""
    if not text:
        return text
    if not isinstance(text, str):
        text = str(text)
    return _redact(text, _literal_pattern(_literals(extra)))


def _walk(value: Any, fn: Callable[[str], str]) -> Any:
    """Apply `fn` to every string in a JSON-like structure (dict keys too), without recursion."""
    if isinstance(value, str):
        return fn(value)
    if not isinstance(value, (dict, list, tuple)):
        return value
    root: list[Any] = [None]
    # Each job: (source container, target container, key in the target where the copy goes).
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while stack:
        source, target, slot = stack.pop()
        if isinstance(source, dict):
            copy: Any = {}
            target[slot] = copy
            for key, item in source.items():
                new_key = fn(key) if isinstance(key, str) else key
                if isinstance(item, (dict, list, tuple)):
                    copy[new_key] = None
                    stack.append((item, copy, new_key))
                else:
                    copy[new_key] = fn(item) if isinstance(item, str) else item
        else:
            copy = [None] * len(source)
            target[slot] = copy
            for index, item in enumerate(source):
                if isinstance(item, (dict, list, tuple)):
                    stack.append((item, copy, index))
                else:
                    copy[index] = fn(item) if isinstance(item, str) else item
    return root[0]


def redact_data(value: Any, extra: Iterable[str] = ()) -> Any:
    """Redact every string inside a JSON-like structure (keys and values, any depth)."""
    literals = _literal_pattern(_literals(extra))
    return _walk(value, lambda text: _redact(text, literals) if text else text)


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
    """The redaction set of one project or run: known shapes plus the project's .env values.

    Build it (it reads the .env files) and call it BEFORE opening a write transaction."""

    def __init__(self, extra: Iterable[str] = ()):
        self.extra = _literals(extra)
        self._literals = _literal_pattern(self.extra)

    @classmethod
    def for_project(cls, project, workspace: Path | str | None = None) -> Redactor:
        root = Path(project.repo_path) if getattr(project, "repo_path", "") else None
        return cls(env_file_values(root, workspace))

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if not isinstance(text, str):
            text = str(text)
        return _redact(text, self._literals)

    def data(self, value: Any) -> Any:
        return _walk(value, self)
