from django.apps import AppConfig


class AutopilotConfig(AppConfig):
    name = "autopilot"
    verbose_name = "Autopilot"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from autopilot.mcp.agents import PROVIDER
        from runs import agent_mcp

        agent_mcp.register(PROVIDER)  # the agents Autopilot starts get its MCP server
