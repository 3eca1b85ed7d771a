"""What the hub's WebSockets share: the key (or access token) and `Origin` checks, JSON frames, and
live hub events.

`HubSocket` is the base of the app gateway (`web/apps.py`) and the admin panel's event socket
(`web/admin.py`). A connection hears the hub's `EventBoard` and pushes `server_status` and
`catalog_changed` frames (the admin's socket also `instance_status` and `pins_changed`) for
the tenants it `wants` (naming only the tools its caller may call: `hub.permissions`); keep-alive
pings come from the application's `websocket_ping_interval`. Frames are JSON text `{"type", "id"?, "data"}`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import tornado.websocket

from actors.models import CatalogChanged, Event, InstanceStateChanged, PinnedToolsChanged, ServerStateChanged
from actors.remote_servers import RemoteStatusChanged
from hub import jsontext, permissions
from hub.errors import BadRequest, HubError, Unauthorized
from hub.runtime import Hub
from web.auth import Caller, bearer_token, keys_for
from web.edge import policy_for
from web.oauth_resource import challenge, resource_of
from web.oauth_tokens import Resource

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 1024 * 1024


class HubSocket(tornado.websocket.WebSocketHandler):
    """Base of the hub's WebSockets. Runs on the web loop, except `_on_event` (router thread).

    A subclass authenticates in `get` (with `authenticate`, answering a refusal with `refuse`)
    before calling `super().get(...)`, says which tenants' events it gets in `wants`, and answers
    its own frame types in `on_frame`. `ping` is answered here.
    """

    route = "?"
    public = False
    instance_events = False  # whether it gets `instance_status` frames (session instances)
    pin_events = False  # whether it gets `pins_changed` frames (`hub.pins`: an admin's)

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The HTTP method of the upgrade request."""
        return ["GET"]

    @property
    def hub(self) -> Hub:
        return self.application.settings["hub"]

    def check_origin(self, origin: str) -> bool:
        """The hub's own origin, or one of `gateway.allowed_origins` (as the edge checks every
        request, `web/edge.py`; this is Tornado's own check of the upgrade)."""
        policy = policy_for(self.hub.config.gateway, self.settings["bound_host"])
        return policy.origin_allowed(origin, self.request.headers.get("Host") or self.request.host)

    async def prepare(self) -> None:
        """Before the upgrade: fetch what verifying an access token needs (its issuer's keys), so
        that `authenticate` need not wait."""
        await keys_for(self.hub.config).ready(bearer_token(self, allow_query=True), self.resource())

    def resource(self) -> Resource:
        """The protected resource a WebSocket is part of: the hub's URL (an access token's audience)."""
        return resource_of(self, self.hub.config)

    def authenticate(self) -> Caller:
        """The caller of the upgrade request (key or access token as `Authorization: Bearer` or
        `?token=`).

        Raises:
            Unauthorized: keys are configured and the key is missing or wrong, or the token refused.
        """
        return keys_for(self.hub.config).authenticate(bearer_token(self, allow_query=True), self.resource())

    def refuse(self, exc: HubError) -> None:
        """Answer the upgrade request with `exc` as the usual JSON error (no WebSocket)."""
        self.set_status(exc.status)
        if isinstance(exc, Unauthorized):
            sent = bearer_token(self, allow_query=True) is not None
            self.set_header(
                "WWW-Authenticate", challenge(self, self.hub.config, exc.message if sent else None)
            )
        self.finish({"error": {"code": exc.code, "message": exc.message}})

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """The upgrade. A plain GET (no `Upgrade: websocket`, `Connection: upgrade`) is answered
        the usual JSON 400 (Tornado's own answer would be text)."""
        upgrade = self.request.headers.get("Upgrade", "").lower() == "websocket"
        connection = self.request.headers.get("Connection", "").lower()
        if not (upgrade and "upgrade" in (part.strip() for part in connection.split(","))):
            self.refuse(BadRequest("this route is a WebSocket: send an upgrade request (RFC 6455)"))
            return
        await super().get(*args, **kwargs)

    def wants(self, tenant: str) -> bool:
        """Whether this connection gets the events of `tenant` (called on the router thread)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ connection and events

    def open(self, *args: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.hub.board.add_listener(self._on_event)

    def on_close(self) -> None:
        self.hub.board.remove_listener(self._on_event)

    def revoked(self) -> bool:
        """Whether the key this connection opened with is no longer configured (a reload took it
        away), or its access token expired: the connection then hears nothing more and is closed.
        Any thread."""
        caller: Caller | None = getattr(self, "caller", None)
        if caller is None or caller.key_id is None:
            return False  # an open hub: no key to revoke
        return not keys_for(self.hub.config).still_valid(caller)

    def _close_revoked(self) -> None:
        if self.ws_connection is not None and not self.ws_connection.is_closing():
            self.close(1008, "the key or token of this connection is no longer valid")

    def _on_event(self, event: Event) -> None:
        """Board listener (router thread): hand catalog and server changes to the web loop."""
        if self.revoked():
            self.loop.call_soon_threadsafe(self._close_revoked)
            return
        if isinstance(event, CatalogChanged) and self.wants(event.catalog.tenant):
            catalog = event.catalog
            tools = [t.id for t in permissions.tools(catalog.tools, getattr(self, "caller", None))]
            data: dict[str, Any] = {"tenant": catalog.tenant, "server": catalog.server, "tools": tools}
            self.loop.call_soon_threadsafe(self._send, "catalog_changed", None, data)
        elif isinstance(event, ServerStateChanged | RemoteStatusChanged) and self.wants(event.status.tenant):
            self.loop.call_soon_threadsafe(self._send, "server_status", None, event.status.to_json())
        elif (
            isinstance(event, InstanceStateChanged)
            and self.instance_events
            and self.wants(event.status.tenant)
        ):
            status = event.status
            data = {"tenant": status.tenant, "server": status.server, **status.instance_json()}
            self.loop.call_soon_threadsafe(self._send, "instance_status", None, data)
        elif isinstance(event, PinnedToolsChanged) and self.pin_events and self.wants(event.tenant):
            self.loop.call_soon_threadsafe(self._send, "pins_changed", None, event.to_json())

    # ------------------------------------------------------------------ frames

    def _send(self, kind: str, frame_id: Any, data: Any) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        message: dict[str, Any] = {"type": kind, "data": data}
        if frame_id is not None:
            message["id"] = frame_id
        self.write_message(jsontext.dumps(message))  # always JSON, whatever a server answered

    def _error(self, frame_id: Any, code: str, message: str) -> None:
        self._send("error", frame_id, {"code": code, "message": message})

    def on_message(self, raw: str | bytes) -> None:
        if self.revoked():
            self._close_revoked()
            return
        if len(raw) > MAX_FRAME_BYTES:
            self._error(None, "payload_too_large", f"frames are limited to {MAX_FRAME_BYTES} bytes")
            return
        frame_id = None
        try:
            frame = jsontext.parse(raw, "frame")
            if isinstance(frame, dict):
                frame_id = _echoable(frame.get("id"))
            jsontext.check(frame, "frame", raw)
        except BadRequest as exc:  # not JSON, too deep, NaN, not valid Unicode text: the sender's error
            self._error(frame_id, exc.code, exc.message)
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            self._error(None, "bad_request", 'a frame is a JSON object with a string "type"')
            return
        frame_id, kind, data = frame.get("id"), frame["type"], frame.get("data") or {}
        if kind == "ping":
            self._send("pong", frame_id, {})
        else:
            self.on_frame(frame_id, kind, data)

    def on_frame(self, frame_id: Any, kind: str, data: Any) -> None:
        """Answer a well-formed frame other than `ping`; by default every type is unknown."""
        self._error(frame_id, "bad_request", f"unknown frame type {kind!r}")


def _echoable(frame_id: Any) -> Any:
    """A frame's id, if an answer can carry it back (else None: it is itself invalid text)."""
    try:
        jsontext.check(frame_id, "id")
    except BadRequest:
        return None
    return frame_id
