"""One JSON-RPC message on the MCP facade's wire: reading it, writing it, and refusing at the edge
what the hub cannot take.

The lanes (`web.mcp_lane_http`, `web.mcp_lane_stdio`) and the Streamable HTTP handler
(`web.mcp_http`) read a client's message here before the SDK does. Everything here is a pure
function of bytes; it runs on whichever loop serves the message (the web loop, or the stdio
facade's loop on the main thread).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import mcp.types as types

from hub import jsontext
from hub.errors import InvalidText, MalformedJson, NotJson


def encode(message: Mapping[str, Any]) -> bytes:
    """`message` as the bytes of one JSON text (always JSON, whatever a server answered)."""
    return jsontext.dumps(message).encode()


def parse_message(data: bytes) -> dict[str, Any] | None:
    """`data` as one JSON-RPC 2.0 message object, else None (the SDK judges it)."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return _rpc(message)


def _rpc(message: Any) -> dict[str, Any] | None:
    """`message` if it is a JSON-RPC 2.0 message object, else None."""
    return message if isinstance(message, dict) and message.get("jsonrpc") == "2.0" else None


def refusal(data: bytes) -> tuple[dict[str, Any], bool] | None:
    """The JSON-RPC error that answers a message from a client at the edge, before a lane or the
    SDK sees it, and whether it is owed an answer (a notification is not); None if it is fine.

    JSON the hub cannot take (`hub.jsontext`: too deep, `NaN`, too many digits) is a parse error
    (-32700, id null); a string that is not valid Unicode text is invalid params (-32602, with the
    request's id). What is not JSON at all the SDK answers, as it does every protocol error.
    """
    return screen(data)[0]


def screen(data: bytes) -> tuple[tuple[dict[str, Any], bool] | None, dict[str, Any] | None]:
    """`refusal(data)`, and the JSON-RPC message `data` holds if it is fine (what `parse_message`
    reads, parsed once for both: else None)."""
    if not data.strip():
        return None, None  # (the SDK says what an empty body is)
    try:
        message = jsontext.parse(data, "message")
        jsontext.check(message, "message", data)
    except NotJson:
        return None, None
    except InvalidText as exc:
        return (_invalid_text(message, exc.message), _owed(message)), None
    except MalformedJson as exc:
        return (_error(None, types.PARSE_ERROR, exc.message), True), None
    return None, _rpc(message)


def _invalid_text(message: Any, why: str) -> dict[str, Any]:
    """The invalid-params answer to `message`, with its id where the id itself is valid text."""
    request_id = message.get("id") if isinstance(message, dict) else None
    valid = isinstance(request_id, str | int) and not isinstance(request_id, bool)
    if not valid or jsontext.scrub(request_id) != request_id:  # (a lone surrogate in the id too)
        request_id = None
    return _error(request_id, types.INVALID_PARAMS, why)


def _owed(message: Any) -> bool:
    """Whether `message` is owed an answer: anything but a notification (a method without an id)."""
    return not (isinstance(message, dict) and "method" in message and "id" not in message)


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
