"""Shared set-up of the benchmarks: Django on the embedded default in a fresh temporary data directory."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "blueprints" / "rust-rfcs-500k.md"


def embedded_django(prefix: str = "autopilot-bench-", log_level: str = "WARNING") -> str:
    """Point Autopilot at a new temporary data directory on SQLite (never DATABASE_URL), set Django up
    and migrate both databases. Returns the directory."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    os.environ["AUTOPILOT_DATA_DIR"] = tmp
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("AUTOPILOT_SQLITE_PATH", None)
    os.environ.setdefault("AUTOPILOT_LOG_LEVEL", log_level)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autopilot.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if "channels" in settings.DATABASES:
        call_command("migrate", database="channels", verbosity=0)
    return tmp
