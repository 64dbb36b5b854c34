from django.apps import AppConfig


class BlueprintsConfig(AppConfig):
    name = "blueprints"
    verbose_name = "Blueprints and tasks"
    default_auto_field = "django.db.models.BigAutoField"
