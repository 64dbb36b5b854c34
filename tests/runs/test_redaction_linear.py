"""Redaction grows linearly with its input (found by bench/api.py: one 64 KB message of letters
took 15 s to redact and held the server). The guard is a hang detector, not a benchmark: half a
megabyte takes well under a second when linear and many minutes when quadratic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runs.redaction import redact

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("filler", ["x", "ab1.", "A-9+"], ids=["letters", "scheme-chars", "mixed"])
def test_half_a_megabyte_without_secrets_is_redacted_without_hanging(filler):
    code = (
        f"from runs.redaction import redact; text = 'look: ' + {filler!r} * (512 * 1024 // {len(filler)}); "
        "assert redact(text) == text"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_url_password_after_a_long_run_of_letters_is_still_masked():
    text = "x" * 5000 + "https://deploy:hunter2-secret@example.com/repo.git and " + "y" * 5000
    out = redact(text)
    assert "hunter2-secret" not in out and "https://deploy:[REDACTED:url_password]@example.com" in out
    assert out.startswith("x" * 5000) and out.endswith("y" * 5000)
