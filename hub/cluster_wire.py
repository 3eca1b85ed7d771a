"""What crosses between a cluster's replicas, as JSON: server statuses and catalogs (published to
Redis by `hub.cluster_catalog`), tool results, errors, the server's own requests a forwarded call
relays (`ASKS`, `ANSWERS`) and resource updates (over the internal channel, `hub.cluster_link` and
`web.cluster_link`).

Each `*_of` reads what the matching `*_json` wrote and raises `ValueError` on anything else: what
comes from another replica, or from Redis, is checked like any other input. Pure functions: any
thread.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import mcp.types as types

from actors.catalog_cache import catalog_json, catalog_of
from actors.models import ResourceUpdated, ServerCatalog, ServerState, ServerStatus, StoppedReason, ToolResult
from hub import errors

__all__ = [
    "ANSWERS",
    "ASKS",
    "error_json",
    "error_of",
    "published_json",
    "published_of",
    "result_json",
    "result_of",
    "updated_json",
    "updated_of",
]

# What a server may ask the client of a forwarded call, and the answer's type.
ASKS: dict[str, type[Any]] = {
    "sampling/createMessage": types.CreateMessageRequest,
    "elicitation/create": types.ElicitRequest,
}
ANSWERS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (types.CreateMessageResult, types.CreateMessageResultWithTools, types.ElicitResult)
}

_STATUS_FIELDS = {f.name for f in dataclasses.fields(ServerStatus)}
_ERRORS: dict[str, type[errors.HubError]] = {
    cls.code: cls
    for cls in (
        errors.BadRequest,
        errors.NotFound,
        errors.NotRunning,
        errors.UpstreamError,
        errors.CallTimeout,
        errors.ShuttingDown,
    )
}


def published_json(status: ServerStatus, catalog: ServerCatalog | None) -> dict[str, Any]:
    """A server as a replica publishes it: its status, and its catalog if it has one."""
    return {
        "status": dataclasses.asdict(status),
        "catalog": None if catalog is None else {**catalog_json(catalog), "seq": catalog.seq},
    }


def published_of(data: Any, tenant: str, server: str) -> tuple[ServerStatus, ServerCatalog | None]:
    """What `published_json` wrote, for `tenant`'s `server` (whatever names it claims).

    Raises:
        ValueError: `data` is not what a replica publishes.
    """
    try:
        fields = {k: v for k, v in data["status"].items() if k in _STATUS_FIELDS}
        fields.update(tenant=tenant, server=server, state=ServerState(fields["state"]))
        if fields.get("stopped_reason") is not None:
            fields["stopped_reason"] = StoppedReason(fields["stopped_reason"])
        status = ServerStatus(**fields)
        raw = data["catalog"]
        catalog = None if raw is None else catalog_of(tenant, server, raw, seq=int(raw.get("seq", 0)))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a published server: {exc!r}") from None
    return status, catalog


def result_json(result: ToolResult) -> dict[str, Any]:
    """A tool's result, whole."""
    return dict(result.to_json())


def result_of(data: Any) -> ToolResult:
    """What `result_json` wrote.

    Raises:
        ValueError: it is not a tool result.
    """
    try:
        content = data["content"]
        structured = data["structured_content"]
        if not isinstance(content, list) or not (structured is None or isinstance(structured, dict)):
            raise TypeError("content or structured_content")
        return ToolResult(str(data["tool"]), bool(data["is_error"]), tuple(content), structured)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a tool result: {exc!r}") from None


def error_json(exc: errors.HubError) -> dict[str, Any]:
    """An error to send back to the replica that forwarded the request."""
    data: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, errors.ServerStopped):
        data["stopped"] = True
    return data


def error_of(data: Any) -> errors.HubError:
    """The error `error_json` wrote, as the same class (an unknown code: an upstream error)."""
    code = data.get("code") if isinstance(data, dict) else None
    message = data.get("message") if isinstance(data, dict) else None
    cls = _ERRORS.get(code, errors.UpstreamError) if isinstance(code, str) else errors.UpstreamError
    if cls is errors.UpstreamError and data.get("stopped") is True:
        cls = errors.ServerStopped
    return cls(str(message) if message is not None else "the replica that runs the server failed")


def updated_json(event: ResourceUpdated) -> dict[str, Any]:
    """An update of a resource another replica subscribed to (its server's shared instance's)."""
    return {"updated": {"tenant": event.tenant, "server": event.server, "uri": event.uri}}


def updated_of(data: Any) -> ResourceUpdated:
    """What `updated_json` wrote.

    Raises:
        ValueError: it is not a resource update.
    """
    try:
        updated = data["updated"]
        return ResourceUpdated(str(updated["tenant"]), str(updated["server"]), None, str(updated["uri"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a resource update: {exc!r}") from None
