from django.apps import AppConfig


class McpConfig(AppConfig):
    """The MCP door (no models): gives the agents Autopilot starts its MCP server."""

    name = "autopilot.mcp"
    label = "autopilot_mcp"
    verbose_name = "MCP server"

    def ready(self) -> None:
        from autopilot.mcp.agents import PROVIDER  # mint_run_token reads runs' models: loaded only now
        from runs import agent_mcp

        agent_mcp.register(PROVIDER)  # the agents Autopilot starts get its MCP server
