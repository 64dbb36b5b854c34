from django.apps import AppConfig


class AutopilotConfig(AppConfig):
    """The core: projects, membership, events, permissions, state transitions, redaction, seams."""

    name = "autopilot"
    verbose_name = "Autopilot"
    default_auto_field = "django.db.models.BigAutoField"
