"""The Tornado frontend: REST, WebSocket and static handlers that only translate requests into actor messages.

Not built yet (see the service issue).
"""
