"""The actor tree of MCP Hub: `RouterActor` → `TenantActor` → `ServerActor` (see docs/architecture.md)."""
