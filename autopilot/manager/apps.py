from django.apps import AppConfig


class ManagerConfig(AppConfig):
    name = "autopilot.manager"
    label = "manager"
    verbose_name = "Manager"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from autopilot.manager import listeners  # models are loaded only now

        listeners.connect()
