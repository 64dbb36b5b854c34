"""Secret redaction for everything a run persists, pushes or exports.

The engine lives in the core (`autopilot.redaction`) so the event log and the task services, which sit
below `runs`, use the same patterns; this module is the name the run code imports it by.
"""

from autopilot.redaction import (  # noqa: F401 - re-exported
    MASK,
    MIN_ENV_VALUE,
    PATTERNS,
    Redactor,
    env_file_values,
    parse_env_text,
    redact,
    redact_data,
)
