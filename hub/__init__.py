"""MCP Hub: supervise many MCP servers for many tenants."""

__version__ = "0.1.0"
