"""README.md documents every environment variable that autopilot/settings.py reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READS = re.compile(
    r"""(?:os\.environ\.get|os\.environ\[|env_bool|env_int|env_list)\(?\s*["']([A-Z][A-Z0-9_]+)["']"""
)


def test_readme_documents_every_setting_read_from_the_environment():
    settings_source = (ROOT / "autopilot" / "settings.py").read_text()
    readme = (ROOT / "README.md").read_text()
    names = set(READS.findall(settings_source))
    assert "DATABASE_URL" in names and "REDIS_URL" in names  # the pattern still finds them
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert missing == [], f"README.md 'Configuration' lacks: {', '.join(missing)}"
