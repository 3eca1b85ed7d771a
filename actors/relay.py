"""`RequestRelay`: the server's own requests and log messages, relayed to the calling client.

An upstream server may ask for an LLM completion (sampling) or for the user's input
(elicitation), and sends log messages; none of them says which call it belongs to, so each goes to
the client (a facade session, a `Requester`) of the most recent call in flight that came with one.
A log message when no such call is in flight (a server logging on its own, or during a call of
the REST or Python API) goes up as a `ServerLogMessage` event instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import mcp.types as types
from mcp import MCPError

from actors.describe import describe
from actors.models import ServerLogMessage
from hub.errors import UpstreamError

log = logging.getLogger("actors.server")  # the server's own logger: log lines keep the name filtered on


class Requester(Protocol):
    """The client a call came from (a facade session): takes the call's progress and log messages,
    and answers the server's own requests (sampling, elicitation). Called on the server's loop, or
    on the loop of a call that runs there (`actors.calls.ServerCalls.here`)."""

    async def progress(self, value: float, total: float | None, message: str | None) -> None: ...

    async def ask(self, request: Any, result_type: type[Any]) -> Any: ...

    async def log(self, params: types.LoggingMessageNotificationParams) -> None: ...


class RequestRelay:
    """The relay of one server's requests to its callers.

    Every method runs on the server's loop (thread `server-<tenant>-<name>`), or for a tool call
    to a Streamable HTTP server that runs on its caller's loop (`actors.calls.ServerCalls.here`) on
    that loop: `add`, `discard`, and what the call's stream relays (`on_raw_log`, `answer_request`,
    `answer_inputs`); the calls in flight are kept in one dict, whose single steps are atomic.

    Args:
        tenant: the server's tenant.
        server: the server's name.
        session: the session of a per_session server's instance (None: the server's own).
        tell: tells an event to the server's tenant (`ServerSupervisor.tell`).
    """

    def __init__(
        self, tenant: str, server: str, session: str | None, tell: Callable[[ServerLogMessage], None]
    ) -> None:
        self._tenant = tenant
        self._server = server
        self._session = session
        self._tell = tell
        self._requesters: dict[asyncio.Task[Any], Requester] = {}  # calls in flight from a facade

    def add(self, task: asyncio.Task[Any], requester: Requester) -> None:
        """A call came in from `requester`, running as `task`."""
        self._requesters[task] = requester

    def discard(self, task: asyncio.Task[Any]) -> None:
        """The call running as `task` ended."""
        self._requesters.pop(task, None)

    def _requester(self) -> Requester | None:
        """The client of the call running as the current task (the hub's channels handle a call's
        stream in its own task), else of the most recent call in flight that came with one (a
        legacy server does not say which call its request belongs to)."""
        task = asyncio.current_task()
        own = self._requesters.get(task) if task is not None else None
        if own is not None:
            return own
        requesters = list(self._requesters.values())  # (one step: calls on callers' loops change it too)
        return requesters[-1] if requesters else None

    async def _ask_client(self, request: Any, result_type: type[Any]) -> Any:
        requester = self._requester()
        if requester is None:
            return types.ErrorData(
                code=types.INVALID_REQUEST,
                message="no client can answer: only a call in flight from an MCP facade session can",
            )
        try:
            return await requester.ask(request, result_type)
        except MCPError as exc:
            return exc.error
        except Exception as exc:  # the client went away or cannot answer in its protocol era
            return types.ErrorData(
                code=types.INTERNAL_ERROR, message=f"the client could not answer: {describe(exc)}"
            )

    async def on_sampling(self, context: Any, params: types.CreateMessageRequestParams) -> Any:
        """The server asks for an LLM completion: ask the client whose call is in flight."""
        result_type = types.CreateMessageResultWithTools if params.tools else types.CreateMessageResult
        return await self._ask_client(types.CreateMessageRequest(params=params), result_type)

    async def on_elicitation(self, context: Any, params: types.ElicitRequestParams) -> Any:
        """The server asks the user for input: ask the client whose call is in flight."""
        return await self._ask_client(types.ElicitRequest(params=params), types.ElicitResult)

    async def answer_inputs(self, requests: Any) -> dict[str, Any]:
        """The answers to the `inputRequests` of a 2026-07-28 `input_required` result (sampling,
        elicitation), asked of the client of the call in flight, as `inputResponses`.

        Raises:
            UpstreamError: a request the hub cannot relay, malformed, or the client's refusal.
        """
        if not isinstance(requests, dict):
            requests = {}
        answers: dict[str, Any] = {}
        for key, request in requests.items():
            answer = await self._answer_input(request)
            if isinstance(answer, types.ErrorData):
                raise UpstreamError(
                    f"server '{self._server}' asked for input the client did not give: {answer.message}"
                )
            answers[key] = answer.model_dump(mode="json", by_alias=True, exclude_none=True)
        return answers

    async def answer_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """The `result` or `error` member of the answer to a request the server sent on a call's
        stream (`actors.upstream.httpcall`): ping, sampling and elicitation (asked of the caller)."""
        if request.get("method") == "ping":
            return {"result": {}}
        answer = await self._answer_input(request)
        if isinstance(answer, types.ErrorData):
            return {"error": answer.model_dump(mode="json", exclude_none=True)}
        return {"result": answer.model_dump(mode="json", by_alias=True, exclude_none=True)}

    async def _answer_input(self, request: Any) -> Any:
        """The client's answer to one embedded request (its result, or an `ErrorData`)."""
        method = request.get("method") if isinstance(request, dict) else None
        try:
            if method == "sampling/createMessage":
                sampling = types.CreateMessageRequest.model_validate(request, by_name=False)
                return await self.on_sampling(None, sampling.params)
            if method == "elicitation/create":
                elicitation = types.ElicitRequest.model_validate(request, by_name=False)
                return await self.on_elicitation(None, elicitation.params)
        except ValueError as exc:
            return types.ErrorData(code=types.INVALID_PARAMS, message=f"malformed {method} request: {exc}")
        return types.ErrorData(code=types.METHOD_NOT_FOUND, message=f"the hub cannot relay {method!r}")

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        """A log message of the server: to the client of the call in flight, if any; else up, as a
        `ServerLogMessage`."""
        requester = self._requester()
        if requester is None:
            dumped = params.model_dump(mode="json", by_alias=True, exclude_none=True)
            self._tell(ServerLogMessage(self._tenant, self._server, self._session, dumped))
        else:
            try:
                await requester.log(params)
            except Exception as exc:  # a log that cannot be delivered is not worth failing a call
                log.debug("%s/%s: log message dropped: %s", self._tenant, self._server, describe(exc))

    async def on_raw_log(self, params: dict[str, Any]) -> None:
        """A log message taken off a stdio server's wire by the hub's own channel."""
        try:
            parsed = types.LoggingMessageNotificationParams.model_validate(params, by_name=False)
        except ValueError:
            log.debug("%s/%s: malformed log message dropped", self._tenant, self._server)
            return
        await self.on_log(parsed)
