from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Execution runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from autopilot import seams
        from autopilot.state import after_transition
        from blueprints.models import Task
        from runs import integration
        from runs.models import AgentBackend

        seams.provide_backend_names(lambda: list(AgentBackend.values))  # a project's model matrix names them
        after_transition(Task, integration.cancel_queued)  # a task leaving the merge queue
