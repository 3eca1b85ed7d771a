"""The MCP facade's names: how a server's tools, prompts and resources are named to the facade's
clients, and mapped back (README.md, "MCP facade": names and resources).

A tool or prompt is `<server><sep><name>` (`sep` is `gateway.tool_name_separator`, default `__`),
only `[A-Za-z0-9_-]`, at most 64 characters; a name that needed changing is cut and suffixed with
a hash of the original, so it stays unique and maps back. Resource URIs are rewritten reversibly:
`ui://X` becomes `ui://<server>/X` (MCP Apps hosts look for the `ui://` scheme), any other URI `U`
becomes `mcp-hub://<server>/U`. Pure functions: any thread.
"""

from __future__ import annotations

import hashlib
import re

from hub.errors import NotFound

_MAX_NAME = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
HUB_SCHEME = "mcp-hub://"


def facade_name(server: str, name: str, sep: str = "__") -> str:
    """The facade's name for `name` of `server`: safe characters, ≤ 64, unique, stable."""
    plain = f"{server}{sep}{name}"
    safe = _UNSAFE.sub("_", plain)
    if safe == plain and len(safe) <= _MAX_NAME:
        return safe
    digest = hashlib.sha256(f"{server}\0{name}".encode()).hexdigest()[:8]
    return f"{safe[: _MAX_NAME - 9]}_{digest}"


def facade_uri(server: str, uri: str) -> str:
    """The facade's URI of a server's resource (reversible with `upstream_uri`)."""
    if uri.startswith("ui://"):
        return f"ui://{server}/{uri.removeprefix('ui://')}"
    return f"{HUB_SCHEME}{server}/{uri}"


def upstream_uri(uri: str) -> tuple[str, str]:
    """`(server, original URI)` of a facade URI.

    Raises:
        NotFound: not a URI the facade handed out.
    """
    for prefix in (HUB_SCHEME, "ui://"):
        if uri.startswith(prefix):
            server, _, rest = uri.removeprefix(prefix).partition("/")
            if server and rest:
                return server, (rest if prefix == HUB_SCHEME else f"ui://{rest}")
    raise NotFound(f"unknown resource {uri!r}")
