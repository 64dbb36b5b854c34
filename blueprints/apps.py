from django.apps import AppConfig


class BlueprintsConfig(AppConfig):
    name = "blueprints"
    verbose_name = "Blueprints and tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from autopilot.state import after_transition
        from blueprints.models import Task
        from blueprints.readiness import status_changed

        after_transition(Task, status_changed)  # keep the readiness bookkeeping true on every move
