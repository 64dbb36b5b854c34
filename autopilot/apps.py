from django.apps import AppConfig


class AutopilotConfig(AppConfig):
    name = "autopilot"
    verbose_name = "Autopilot"
    default_auto_field = "django.db.models.BigAutoField"
