"""The MCP server: agents and editors read and update Autopilot's tasks and runs (a door, like the API)."""
