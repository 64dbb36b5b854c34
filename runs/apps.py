from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Execution runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from autopilot import seams
        from runs.models import AgentBackend

        seams.provide_backend_names(lambda: list(AgentBackend.values))  # a project's model matrix names them
