"""The Tornado frontend: REST, WebSocket and static handlers that only translate requests into hub
calls, the MCP facade (over Streamable HTTP here; over stdio through `hub.stdio`), and the edge
every connection and request passes first.

`web.app` assembles every handler module's route table into the one application; each module's
docstring says what it holds and which thread or loop runs it.
"""
