"""Which requests the hub answers at all: the `Host` and `Origin` checks of every route.

A web page anywhere can make a browser send requests to the hub through DNS rebinding: its own
name (`rebind.attacker.example`) first resolves to the attacker and then to 127.0.0.1, and the
browser, seeing one origin, lets the page read the answers. Such a request carries the
attacker's name in `Host`, which is why every route (REST, WebSocket, MCP, static files) checks
`Host` before anything else: the loopback names, the bound address (any IP address when bound to
all interfaces: no rebinding yields an address) and `gateway.allowed_hosts` (`name`, `name:port`,
or `*`) pass; anything else is 421. The port is not checked for those names: tunnels and port
mappings change it, and rebinding does not need to.

A browser tells where a request comes from in `Origin`; a request that carries one must come from
the hub's own origin (the scheme and the `Host` it was sent to, already checked) or one of
`gateway.allowed_origins` (exact, `scheme://host:*` for any port, `null` for opaque origins),
else it is 403. Clients that are not browsers send no `Origin` and are not concerned.

Runs on the web loop; the policy of a configuration is built once (`policy_for`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from hub.config import GatewayConfig
from hub.errors import HostNotAllowed, HubError, OriginNotAllowed

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
# A Host header: a name or an IPv4 address, or an IPv6 address in brackets, then maybe a port.
_HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_.-]+))(?::(?P<port>[0-9]{1,5}))?")
_ORIGIN = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>[^/?#@\s]+)")


def split_host(value: str) -> tuple[str, int | None] | None:
    """`(name, port)` of a `Host` value, lowercase, brackets and one final dot removed; None if
    it is not one (`localhost:80.evil.example` is not)."""
    match = _HOST.fullmatch(value.strip().lower())
    if match is None:
        return None
    name = match["v6"] or match["name"].removesuffix(".")
    port = int(match["port"]) if match["port"] else None
    if port is not None and port > 65535:
        return None
    return name, port


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


@dataclass(frozen=True)
class EdgePolicy:
    """The names a request may be addressed to and the origins it may come from.

    Attributes:
        bound: the address the hub listens on (`gateway.host` or `--host`).
        names: allowed names, any port (from `gateway.allowed_hosts`).
        name_ports: allowed `(name, port)` pairs.
        any_host: `*` is in `gateway.allowed_hosts`.
        origins: allowed origins, normalised (`scheme://host[:port]`, lowercase).
        origin_hosts: `(scheme, host)` pairs allowed with any port (`scheme://host:*`).
    """

    bound: str
    names: frozenset[str] = frozenset()
    name_ports: frozenset[tuple[str, int]] = frozenset()
    any_host: bool = False
    origins: frozenset[str] = frozenset()
    origin_hosts: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(cls, gateway: GatewayConfig, bound: str) -> EdgePolicy:
        """The policy of `gateway`'s lists for a hub listening on `bound`."""
        names, name_ports = set(), set()
        for entry in gateway.allowed_hosts:
            parsed = split_host(entry)
            if parsed is None:
                continue  # `*`, or not a name: nothing else to match
            name, port = parsed
            (names.add(name) if port is None else name_ports.add((name, port)))
        origins, origin_hosts = set(), set()
        for entry in gateway.allowed_origins:
            text = entry.strip().lower().rstrip("/")
            if text.endswith(":*") and "://" in text:
                scheme, _, host = text[:-2].partition("://")
                origin_hosts.add((scheme, host))
            else:
                origins.add(text)
        return cls(
            bound=bound.strip().lower().strip("[]"),
            names=frozenset(names),
            name_ports=frozenset(name_ports),
            any_host="*" in gateway.allowed_hosts,
            origins=frozenset(origins),
            origin_hosts=frozenset(origin_hosts),
        )

    def host_allowed(self, host: str) -> bool:
        """Whether a request sent to `host` (its `Host` header) is one for this hub."""
        if self.any_host:
            return True
        parsed = split_host(host)
        if parsed is None:
            return False
        name, port = parsed
        if name in LOOPBACK_NAMES or name == self.bound or name in self.names:
            return True
        if port is not None and (name, port) in self.name_ports:
            return True
        address = _ip(name)
        return address is not None and (address.is_loopback or self.bound in _WILDCARDS)

    def origin_allowed(self, origin: str, host: str) -> bool:
        """Whether a browser request from `origin` to `host` (already allowed) may be served."""
        text = origin.strip().lower().rstrip("/")
        if text in self.origins:
            return True
        match = _ORIGIN.fullmatch(text)
        if match is None:
            return False  # `null` (unless listed), or not an origin
        scheme, authority = match["scheme"], match["host"]
        own, parsed = split_host(authority), split_host(host)
        if scheme in ("http", "https") and own is not None and own == parsed:
            return True
        return own is not None and (scheme, _authority(own[0])) in self.origin_hosts

    def refusal(self, host: str, origin: str | None) -> HubError | None:
        """Why a request to `host` from `origin` (None: not a browser's) is refused, or None."""
        if not self.host_allowed(host):
            return HostNotAllowed(
                "this hub does not answer to that Host name; add it to gateway.allowed_hosts if it is yours"
            )
        if origin is not None and not self.origin_allowed(origin, host):
            return OriginNotAllowed(
                "requests from this Origin are not allowed; add it to gateway.allowed_origins if it is yours"
            )
        return None


def _authority(name: str) -> str:
    """A host name as an origin writes it (IPv6 addresses in brackets)."""
    return f"[{name}]" if ":" in name else name


_POLICY: tuple[GatewayConfig, str, EdgePolicy] | None = None


def policy_for(gateway: GatewayConfig, bound: str) -> EdgePolicy:
    """The policy of `gateway`, rebuilt only when the configuration changes (a reload)."""
    global _POLICY
    cached = _POLICY
    if cached is None or cached[0] is not gateway or cached[1] != bound:
        cached = _POLICY = (gateway, bound, EdgePolicy.of(gateway, bound))
    return cached[2]
