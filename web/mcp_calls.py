"""The facade's own path for `tools/call`, over Streamable HTTP and over stdio, in both eras: what
the two lanes share.

Why: the SDK's server stack costs each call more than the rest of the hub together. Over HTTP, a
call of a 2025-11-25 session opened an SSE response with its own task group and memory streams,
and went through the session's dispatcher and the low-level server's validation both ways (about
7 tasks and 50 loop callbacks per call), which made MCP Hub half as fast as `mcp-proxy`
(bench/bench_peer.py); over stdio the same dispatcher and validation made the facade's call
twice a direct one (bench/bench_facade.py). A *lane* serves the one message that matters for
speed, `tools/call`, itself: it takes the message off the wire before the SDK sees it, calls
`Facade.call`, and writes the call's progress, log messages, server requests and answer.

What a lane takes: only a message that is certainly a well-formed `tools/call`, checked with the
SDK's own validators (`validate_client_request`; for 2026-07-28 `classify_inbound_request`, and
over HTTP the Host/Origin, `Accept` and `Mcp-*` header checks). Everything else, and so every
protocol error, goes to the SDK, which stays the one authority on them. It also takes what
belongs to its calls: a client's answer to a server request it sent (ids `hub-r-N`,
`web.mcp_requester`), and `notifications/cancelled` for one of its calls. A 2026-07-28 call whose
server asks for input is parked and answered with an `InputRequiredResult`, and the client's retry
resumes it (`web.mcp_input`).

The lanes: `web.mcp_lane_http.HttpLane` (Streamable HTTP) and `web.mcp_lane_stdio.StdioLane`.
Here: the call a lane took (`CallRequest`), where its messages go (`CallStream`), and starting,
answering and cancelling it. Thread: the serving loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import mcp.types as types
from mcp.server.connection import allowed_log_levels
from mcp.shared.exceptions import MCPError
from mcp_types import SERVER_INFO_META_KEY
from mcp_types.methods import validate_client_request
from pydantic import ValidationError

import hub
from hub.permissions import Who
from web.facade import Facade, tool_result_json
from web.facade_scope import Scope
from web.mcp_input import InputRequired
from web.mcp_requester import Asks, CallRequester

log = logging.getLogger(__name__)

_SERVER_INFO = {SERVER_INFO_META_KEY: {"name": "mcp-hub", "version": hub.__version__}}

Calls = dict[Any, asyncio.Future[Any]]  # a lane's calls in flight, by request id


@dataclass(frozen=True)
class CallRequest:
    """A `tools/call` a lane takes."""

    id: str | int
    name: str
    arguments: Mapping[str, Any]
    progress_token: str | int | None
    modern: bool  # 2026-07-28 (else 2025-11-25)
    log_levels: frozenset[str]
    owner: str | None = None  # whose calls and server requests these are (an HTTP session id)
    input_responses: Mapping[str, Any] | None = None  # a 2026-07-28 retry's (`web.mcp_input`)
    request_state: str | None = None
    url_elicitation: bool = False  # its 2025-11-25 client declared `elicitation.url` at initialize
    idempotency_key: tuple[str, ...] = ()  # its request's `Idempotency-Key` header values (`hub.idempotency`)


def takes_url_elicitation(initialize: bytes | None) -> bool:
    """Whether an `initialize` request's client declares URL-mode elicitations
    (`capabilities.elicitation.url`, 2025-11-25)."""
    try:
        message = json.loads(initialize or b"")
        elicitation = message["params"]["capabilities"].get("elicitation")
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return isinstance(elicitation, dict) and isinstance(elicitation.get("url"), dict)


def parse_call(
    message: dict[str, Any], version: str, modern: bool, owner: str | None = None
) -> CallRequest | None:
    """`message` as a call a lane may take (its shape checked by the SDK's own validator for
    `version`), else None."""
    request_id = message.get("id")
    params = message.get("params")
    if isinstance(request_id, bool) or not isinstance(request_id, (str, int)) or not isinstance(params, dict):
        return None
    try:
        validate_client_request("tools/call", version, params)
    except (ValueError, KeyError, ValidationError):
        return None
    meta = params.get("_meta") or {}
    return CallRequest(
        id=request_id,
        name=params["name"],
        arguments=params.get("arguments") or {},
        progress_token=meta.get("progressToken"),
        modern=modern,
        log_levels=allowed_log_levels(version, meta),
        owner=owner,
        input_responses=params.get("inputResponses") if modern else None,
        request_state=params.get("requestState") if modern else None,
    )


class CallStream(Protocol):
    """Where a call's messages go (serving loop)."""

    def emit(self, message: Mapping[str, Any]) -> None:
        """A notification or server request of the call, before its answer."""

    def answer(self, message: Mapping[str, Any], code: int | None = None) -> None:
        """The call's answer (JSON-RPC error `code` if it is an error); the stream ends."""

    def cancelled(self) -> None:
        """The client cancelled the call: end without an answer."""

    def close(self) -> None:
        """The call is over, however it ended."""


def start_call(
    facade: Facade,
    stream: CallStream,
    call: CallRequest,
    asks: Asks,
    scope: Scope,
    caller: Who | None,
    session: str | None,
    calls: Calls,
) -> asyncio.Future[Any]:
    """Start a call a lane took (`Facade.call`); it is in `calls` under its id at once, where
    `notifications/cancelled` finds it, until `answer_call` is done with it. Its log messages are
    those the call opted in to (2026-07-28) and its session asked for (`logging/setLevel`).

    A 2026-07-28 call's future is its first round (`web.mcp_input`), which may end with the
    server's requests instead of the result; a retry with a `requestState` resumes its call, and
    its future is the next round (or an error, if the `requestState` is no good). `caller`: who
    calls (the audit log's key and subject; only it may resume its parked calls)."""
    loop = asyncio.get_running_loop()
    owner = (scope, caller.key_id if caller is not None else None, session)
    if call.modern and call.request_state is not None:
        try:
            parked = asks.parked.claim(call.request_state, owner, call)
        except MCPError as exc:
            refused: asyncio.Future[Any] = loop.create_future()
            refused.set_exception(exc)
            return refused
        parked.resume(call, stream)
        task = parked.next_round()
    else:
        if not call.modern:
            call = replace(call, log_levels=call.log_levels & facade.logs.allowed(session))
        requester = CallRequester(stream, call, asks, loop)
        called = facade.call(
            scope, call.name, call.arguments, requester, caller, session, call.idempotency_key
        )
        task = asyncio.ensure_future(called)
        if call.modern:
            task = asks.parked.open(task, requester, owner).next_round()
    calls[call.id] = task
    return task


async def answer_call(stream: CallStream, call: CallRequest, task: asyncio.Future[Any], calls: Calls) -> None:
    """Wait for a started call and write its answer (or nothing, if its client cancelled it)."""
    try:
        result = await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():  # this coroutine itself is cancelled
            raise
        stream.cancelled()
    except MCPError as exc:
        error = exc.error.model_dump(mode="json", exclude_none=True)
        stream.answer({"jsonrpc": "2.0", "id": call.id, "error": error}, exc.error.code)
    except Exception:
        log.exception("tool call %r failed in the facade", call.name)
        error = {"code": types.INTERNAL_ERROR, "message": "internal error"}
        stream.answer({"jsonrpc": "2.0", "id": call.id, "error": error}, types.INTERNAL_ERROR)
    else:
        # (2026-07-28: a round may end with the server asking for input, `web.mcp_input`)
        if isinstance(result, InputRequired):
            if result.recorded is not None:
                await result.recorded  # (where it is parked, before its client may retry anywhere)
            answer = result.result
        else:
            answer = tool_result_json(result)
        if call.modern:
            answer.setdefault("resultType", "complete")
            answer["_meta"] = _SERVER_INFO
        stream.answer({"jsonrpc": "2.0", "id": call.id, "result": answer})
    finally:
        stream.close()
        if calls.get(call.id) is task:
            del calls[call.id]


def cancel_call(message: dict[str, Any], calls: Mapping[Any, asyncio.Future[Any]]) -> bool:
    """Cancel the call a `notifications/cancelled` names, if it is one of `calls`."""
    params = message.get("params")
    call = calls.get(params.get("requestId")) if isinstance(params, dict) else None
    if call is None:
        return False
    call.cancel()
    return True
