"""Benchmark: secret redaction throughput against a bare `str.replace` pass, and its growth.

    .venv/bin/python bench/redaction.py [--mb 10] [--repeat 3] [--sizes 0.1,1,10]

1. Throughput: ~10 MB of mixed text (Python code, log lines, JSON, prose, a unified diff with base64,
   with ~1 secret per 2 KB sprinkled in) through `autopilot.redaction.redact` (every pattern, plus a
   project's 40 `.env` literals), against ONE `str.replace` pass over the same text in the same
   invocation (the floor: one scan and one copy). Prints MB/s of both and the ratio.
2. Growth: adversarial input for each pattern (the shapes that make a backtracking pattern rescan
   what it already scanned) at 100 KB, 1 MB and 10 MB; prints the time per MB at each size and the
   ratio of the largest to the smallest. A linear engine keeps it flat (≈1; noise on a loaded
   machine moves it by ±50%); a quadratic one multiplies it by 100 from 100 KB to 10 MB (the old
   url_password pattern took 10 s on 100 KB of letters).
Times are CPU time of this process (`time.process_time`: the machine may be shared; redaction is
single-threaded), with wall time for the throughput too. Figures are printed, not asserted
(tests/runs/test_redaction.py holds the 1 MB timeouts).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autopilot.redaction import Redactor  # noqa: E402 - after the path is set

SECRETS = [
    "ghp_R4nd0mT0k3nV4lu3abcdefghijklmnop12",
    "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe-AbCd_EfGh",
    "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_T3BlbkFJ",
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
    "sk_live_51HqLyjWDarjtT1zdp7dcXhp9",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV",
    "postgres://admin:Hunter2Sup3r@db.example.com:5432/app",
    'DB_PASSWORD="Tr0ub4dor&3xyz"',
    '{"password": "jsonPassw0rd!"}',
    "Authorization: Bearer abc.def.ghi1234567890xyz",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gu\n"
    "-----END RSA PRIVATE KEY-----",
]

# The part of each secret that must not survive.
SECRET_VALUES = [
    "R4nd0mT0k3nV4lu3",
    "Zx9Yw8Vu7Ts6Rq5Po4Nm3",
    "Ab3dEf6hIj9kLm2nOp5q",
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG",
    "1234567890123-AbCd",
    "51HqLyjWDarjtT1zdp7",
    "SflKxwRJSMeKKF2QT4f",
    "Hunter2Sup3r",
    "Tr0ub4dor&3xyz",
    "jsonPassw0rd!",
    "ghi1234567890xyz",
    "u1SU1LfVLPHCozMxH2Mo4",
]

CODE = '''def handler(request, project_id: int) -> Response:
    """Return the project's runs, newest first."""
    runs = ExecutionRun.objects.filter(project_id=project_id).order_by("-created_at")[:50]
    password = settings.DB_PASSWORD
    return Response([{"id": r.pk, "status": r.status, "cost": str(r.cost_usd)} for r in runs])
'''
LOG = (
    "2026-12-05T10:{m:02d}:{s:02d}.123Z INFO runs.worker run=4{n} step=17 kind=run_terminal "
    "commit=3f786850e387550fdab836ed7e6dc881de23001b uuid=123e4567-e89b-12d3-a456-426614174000 ok\n"
)
JSON = (
    '{"id": %d, "kind": "executionstep.updated", "data": {"step": 991, "seq": 12, "status": "completed", '
    '"input_tokens": 1234, "max_tokens": 4096, "tool": "edit_file", "path": "src/app/models.py"}}\n'
)
PROSE = (
    "The manager tick picks ready tasks, ranks them, respects capacity and budgets, and starts runs; "
    "a human can watch live, approve or reject steps, send a message, stop it or roll it back.\n"
)
DIFF_B64 = "".join(
    random.Random(7).choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    for _ in range(76 * 8)
)
DIFF = "@@ -1,3 +1,11 @@\n data = (\n" + "".join(
    f"+{DIFF_B64[i : i + 76]}\n" for i in range(0, len(DIFF_B64), 76)
)


def mixed_text(size: int) -> str:
    rng = random.Random(42)
    parts: list[str] = []
    total = n = 0
    while total < size:
        n += 1
        kind = rng.random()
        if kind < 0.25:
            piece = CODE
        elif kind < 0.5:
            piece = LOG.format(m=n % 60, s=(n * 7) % 60, n=n)
        elif kind < 0.7:
            piece = JSON % n
        elif kind < 0.9:
            piece = PROSE
        else:
            piece = DIFF
        if n % 6 == 0:  # about one secret per 2 KB
            piece += f"token seen: {rng.choice(SECRETS)}\n"
        parts.append(piece)
        total += len(piece)
    return "".join(parts)[:size]


def _rep(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


ADVERSARIAL = {
    "private_key: BEGIN lines, no END": lambda n: _rep("-----BEGIN RSA PRIVATE KEY-----", n),
    "private_key: long header run": lambda n: "-----BEGIN " + _rep("A ", n),
    "private_key: END-like lines": lambda n: "-----BEGIN RSA PRIVATE KEY-----\n" + _rep("-----END A", n),
    "anthropic_key: prefixes": lambda n: _rep("sk-ant-", n),
    "openai_key: prefixes": lambda n: _rep("sk-", n),
    "openai_key: short proj keys": lambda n: _rep("sk-proj-abc ", n),
    "github_token: prefixes": lambda n: _rep("ghp_", n),
    "aws_access_key: prefixes": lambda n: _rep("AKIA", n),
    "aws_secret_key: one base64 run": lambda n: _rep("A1a/", n),
    "aws_secret_key: 39-char tokens": lambda n: _rep("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE ", n),
    "slack_token: prefixes": lambda n: _rep("xoxb-", n),
    "stripe_key: prefixes": lambda n: _rep("sk_live_", n),
    "jwt: prefixes": lambda n: _rep("eyJ", n),
    "jwt: dotted parts": lambda n: _rep("eyJabcd.eyJabcd.", n),
    "bearer_token: words": lambda n: _rep("bearer ", n),
    "bearer_token: one long gap": lambda n: "Bearer" + _rep(" ", n),
    "bearer_token: headers": lambda n: _rep("Authorization: ", n),
    "url_password: letters (old: 31 s/200 KB)": lambda n: _rep("a", n),
    "url_password: '://a:' repeated": lambda n: _rep("://a:", n),
    "url_password: one long user": lambda n: "://" + _rep("a", n),
    "secret_assignment: 'password='": lambda n: _rep("password=", n),
    "secret_assignment: unclosed quotes": lambda n: _rep('password="', n),
    "secret_assignment: keys only": lambda n: _rep("password", n),
    "secret_assignment: one long gap": lambda n: "password:" + _rep(" ", n),
    "env_value: shared prefixes (2000 values)": lambda n: _rep("value0", n),
}
ENV_VALUES = [f"value{i:05d}-{'x' * 20}" for i in range(2000)]


def best(fn, repeat: int) -> tuple[float, float]:
    """Best CPU time and best wall time of `repeat` calls."""
    cpu, wall = [], []
    for _ in range(repeat):
        start, start_wall = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - start)
        wall.append(time.perf_counter() - start_wall)
    return min(cpu), min(wall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=10.0, help="Size of the mixed text (MB).")
    parser.add_argument("--repeat", type=int, default=3, help="Best of N for the throughput figures.")
    parser.add_argument("--sizes", default="0.1,1,10", help="Adversarial sizes in MB, comma-separated.")
    args = parser.parse_args()

    size = int(args.mb * 1_000_000)
    text = mixed_text(size)
    mb = len(text) / 1_000_000
    project_env = [f"env-secret-value-{i:03d}-abcdef" for i in range(40)]
    redactor = Redactor(project_env)
    masked = redactor(text)
    leaked = [v for v in SECRET_VALUES if v in masked]
    # The baseline must scan and copy (str.replace returns the string itself when old == new).
    baseline, baseline_wall = best(lambda: text.replace("token seen: ", "token seen:_"), args.repeat)
    redaction, redaction_wall = best(lambda: redactor(text), args.repeat)
    print(
        f"Throughput on {mb:.1f} MB of mixed text ({masked.count('[REDACTED:')} secrets masked; "
        f"secrets left readable: {leaked or 'none'}):"
    )
    print(
        f"  str.replace (baseline) {baseline * 1000:9.1f} ms CPU  {mb / baseline:9.1f} MB/s   "
        f"(wall {baseline_wall * 1000:.1f} ms)"
    )
    print(
        f"  redact                 {redaction * 1000:9.1f} ms CPU  {mb / redaction:9.1f} MB/s   "
        f"(wall {redaction_wall * 1000:.1f} ms, {mb / redaction_wall:.1f} MB/s)"
    )
    print(f"  ratio redact / str.replace: {redaction / baseline:.0f}x (CPU)")

    sizes = [int(float(s) * 1_000_000) for s in args.sizes.split(",")]
    print("\nGrowth on adversarial input (ms per MB; flat = linear):")
    header = "".join(f"{s / 1e6:>10g} MB" for s in sizes)
    print(f"  {'input':44s}{header}   largest/smallest")
    env_redactor = Redactor(ENV_VALUES)
    worst = 0.0
    for name, make in ADVERSARIAL.items():
        use = env_redactor if name.startswith("env_value") else Redactor()
        per_mb = []
        for n in sizes:
            sample = make(n)
            start = time.process_time()
            use(sample)
            per_mb.append((time.process_time() - start) / (len(sample) / 1e6))
        growth = per_mb[-1] / per_mb[0] if per_mb[0] else float("inf")
        worst = max(worst, growth)
        print(f"  {name:44s}" + "".join(f"{x * 1000:10.1f} ms" for x in per_mb) + f"   {growth:6.2f}")
    print(
        f"\nWorst growth of time per MB from {sizes[0] / 1e6:g} MB to {sizes[-1] / 1e6:g} MB: {worst:.2f}x "
        f"(a quadratic pattern: {sizes[-1] / sizes[0]:.0f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
