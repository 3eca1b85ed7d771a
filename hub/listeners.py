"""Where `serve` listens: the host and its three ports, and binding them.

Each setting comes from its command-line flag, else its environment variable, else the
configuration file (else the file's default), and remembers which of them chose it, so that a
port in use is reported with the setting to change:

| setting | flag | environment | configuration |
|---|---|---|---|
| host | `--host` | `MCP_HUB_HOST` | `gateway.host` |
| main port | `--port` | `MCP_HUB_PORT` | `gateway.port` (0: any free port) |
| MCP listener | `--mcp-port` | `MCP_HUB_MCP_PORT` | `gateway.mcp_port` (0, `off` or null: none) |
| WebSocket listener | `--ws-port` | `MCP_HUB_WS_PORT` | `gateway.websocket_port` (likewise) |

Runs on the main thread, before the web loop starts.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hub.config import HubConfig

HOST_ENV = "MCP_HUB_HOST"
PORT_ENV, MCP_PORT_ENV, WS_PORT_ENV = "MCP_HUB_PORT", "MCP_HUB_MCP_PORT", "MCP_HUB_WS_PORT"


class ListenError(ValueError):
    """A flag or environment variable of a listening setting has a value that is not one."""


@dataclass(frozen=True)
class Listener:
    """One listener: its route table (`only`: None for the main one), port and where that came from.

    Attributes:
        only: None (the main listener, every route), `"mcp"` or `"websocket"`.
        port: the port to bind; 0 (main listener only) means any free port.
        origin: the setting that chose the port: `--mcp-port`, `MCP_HUB_MCP_PORT`,
            `gateway.mcp_port in config/hub.yaml` or `gateway.mcp_port's default, not set in
            config/hub.yaml`.
        flag: the flag that overrides it.
    """

    only: str | None
    port: int
    origin: str
    flag: str

    @property
    def what(self) -> str:
        """The listener in a sentence."""
        return {None: "the main listener", "mcp": "the MCP listener", "websocket": "the WebSocket listener"}[
            self.only
        ]


@dataclass(frozen=True)
class Plan:
    """The host to bind (and what chose it) and the enabled listeners, the main one first."""

    host: str
    host_origin: str
    listeners: tuple[Listener, ...]


# (route table, attribute of args, flag, environment variable, gateway key)
_PORTS: tuple[tuple[str | None, str, str, str, str], ...] = (
    (None, "port", "--port", PORT_ENV, "port"),
    ("mcp", "mcp_port", "--mcp-port", MCP_PORT_ENV, "mcp_port"),
    ("websocket", "ws_port", "--ws-port", WS_PORT_ENV, "websocket_port"),
)


def parse_port(text: str, extra: bool) -> int:
    """The port in `text`; for an extra listener, `off` is 0.

    Raises:
        ListenError: not a port from 0 to 65535 (or `off`, for an extra listener); the message
            says what it must be, for the caller to prefix with the flag or variable.
    """
    if extra and text.strip().lower() == "off":
        return 0
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        allowed = "a port from 0 to 65535" + (" or 'off'" if extra else "")
        raise ListenError(f"must be {allowed} (got {text!r})")
    return port


def plan(args: Any, config: HubConfig, environ: Mapping[str, str]) -> Plan:
    """Resolve host and ports: flag (an attribute of `args`, already parsed; None when not given),
    else a non-empty environment variable, else the configuration.

    Raises:
        ListenError: a variable is not a port, or two listeners would share one port.
    """
    gateway = config.gateway
    listeners = []
    for only, attribute, flag, env_var, key in _PORTS:
        flagged = getattr(args, attribute, None)
        if flagged is not None:
            port, origin = int(flagged), flag
        elif environ.get(env_var):
            try:
                port, origin = parse_port(environ[env_var], extra=only is not None), env_var
            except ListenError as exc:
                raise ListenError(f"{env_var} {exc}") from None
        else:
            port, origin = getattr(gateway, key) or 0, _config_origin(config, key)
        if port or only is None:
            listeners.append(Listener(only, port, origin, flag))
    seen: dict[int, Listener] = {}
    for listener in listeners:
        other = seen.setdefault(listener.port, listener)
        if listener.port and other is not listener:
            raise ListenError(
                f"port {listener.port} is chosen for two listeners: {other.what} ({other.origin}) and "
                f"{listener.what} ({listener.origin}); use {listener.flag} N"
                + (f" or {listener.flag} off" if listener.only else "")
            )
    if getattr(args, "host", None):
        host, host_origin = args.host, "--host"
    elif environ.get(HOST_ENV):
        host, host_origin = environ[HOST_ENV], HOST_ENV
    else:
        host, host_origin = gateway.host, _config_origin(config, "host")
    return Plan(host, host_origin, tuple(listeners))


def _config_origin(config: HubConfig, key: str) -> str:
    if key in config.gateway.explicit:
        return f"gateway.{key} in {config.source}"
    return f"gateway.{key}'s default, not set in {config.source}"


def bind(plan_: Plan) -> list[list[socket.socket]] | str:
    """Bind every listener of `plan_`, or bind none and return why one could not be bound."""
    import tornado.netutil  # here: `check` and `stdio` need no Tornado

    bound: list[list[socket.socket]] = []
    for listener in plan_.listeners:
        try:
            bound.append(tornado.netutil.bind_sockets(listener.port, plan_.host))
        except OSError as exc:
            for sockets in bound:
                for s in sockets:
                    s.close()
            return _bind_problem(plan_, listener, exc)
    return bound


def _bind_problem(plan_: Plan, listener: Listener, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    where = f"cannot listen on {plan_.host}:{listener.port} for {listener.what}: {reason}"
    fix = f"use {listener.flag} N" + (f" or {listener.flag} off" if listener.only else "")
    if exc.errno == errno.EADDRINUSE:
        return f"port {listener.port} ({listener.origin}) is in use: {where}; {fix}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"port {listener.port} ({listener.origin}) is not allowed: {where}; {fix}"
    return f"{where} (host from {plan_.host_origin}, port from {listener.origin})"
