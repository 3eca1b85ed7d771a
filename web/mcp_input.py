"""Input a server asks for during a 2026-07-28 call: its sampling and elicitation requests, sent to
the client in that era's way (an `InputRequiredResult`), and the client's retry that answers them.

2026-07-28 has no server-to-client requests: a server that needs input answers the call with
`resultType: "input_required"`, the requests (`inputRequests`, by key) and a `requestState`, and
the client sends the same request again with `inputResponses` (by the same keys) and that
`requestState`. The servers behind the hub ask the old way, mid-call (a legacy stdio server always
does), so the facade bridges: when a server asks during a lane's 2026-07-28 call
(`web.mcp_requester.CallRequester.ask`), the call is *parked* (`ParkedCall`): the upstream call
keeps running, its request waiting for an answer, and the client's request is answered with an
`InputRequiredResult` that carries the request (key `hub-i-N`) and a `requestState` minted here.

The `requestState` is a handle, not state: 32 random bytes (`secrets.token_urlsafe`), valid for
one retry, by the caller it was given to (its key id, client session and endpoint: `Owner`), for
the same tool and arguments, within `hub.timeouts.INPUT_WAIT` seconds. Anything else (unknown,
used, expired, another caller's, another request's) is a JSON-RPC error (INVALID_PARAMS) for the
retry; the parked call is left alone. A retry within the time resumes the call: each response is
handed to the request that waits for it, validated as its result type (a response missing or
malformed: that request gets an error answer), and the retry is answered by what the call does
next: its result, or another `InputRequiredResult` if the server asks again. The retry's progress
and log messages go on the retry's own stream (what the call sends while parked has nowhere to
go and is dropped). A call whose client does not come back in time is cancelled (the server's
requests get an error answer first); the call's own `call_timeout` also still bounds it, and a call
that ended while parked answers its next retry with how it ended.

Thread: the serving loop, except where a docstring says otherwise.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mcp.types as types
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from hub import timeouts

if TYPE_CHECKING:
    from web.facade_scope import Scope
    from web.mcp_calls import CallRequest, CallStream
    from web.mcp_requester import CallRequester

Owner = tuple["Scope", str | None, str | None]
"""Who may resume a parked call: the endpoint's scope, the key id and the client session of its call."""

_UNKNOWN = "unknown or expired requestState: it is valid once, for {wait:g} s, to the caller it was given to"


@dataclass(frozen=True)
class InputRequired:
    """A round of a call that ends with the server's requests: the `result` of its answer, sent
    once `recorded` (the record of where the call is parked, in a cluster) is done."""

    result: dict[str, Any]
    recorded: Awaitable[Any] | None = None


@dataclass
class _Ask:
    """One request of the server, waiting for the client's response."""

    request: Any  # types.CreateMessageRequest | types.ElicitRequest
    result_type: type[Any]
    answer: asyncio.Future[Any]
    key: str | None = None  # its key in an `InputRequiredResult`, once sent


@dataclass
class ParkedCall:
    """One 2026-07-28 call of a lane across its rounds: the call itself runs as `task`; each round
    (a client's request, the first or a retry) waits for the call's end or for requests of its
    server to send (serving loop)."""

    task: asyncio.Future[Any]
    requester: CallRequester
    owner: Owner
    parking: Parking
    _waiting: list[_Ask] = field(default_factory=list)  # asked, not yet sent
    _sent: dict[str, _Ask] = field(default_factory=dict)  # sent, by key, until the retry
    _round: asyncio.Future[Any] | None = None  # the round in progress, if any
    _keys: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.task.add_done_callback(self._ended)

    async def ask(self, request: Any, result_type: type[Any]) -> Any:
        """A request of the server (sent in the next `InputRequiredResult`): the client's response,
        validated as `result_type` (else `MCPError`). Runs on the serving loop, for the server's."""
        ask = _Ask(request, result_type, asyncio.get_running_loop().create_future())
        self._waiting.append(ask)
        self._settle()
        try:
            return await ask.answer
        finally:
            if ask in self._waiting:
                self._waiting.remove(ask)
            if ask.key is not None:
                self._sent.pop(ask.key, None)

    def next_round(self) -> asyncio.Future[Any]:
        """The next round: its outcome is the call's result (or its error), or `InputRequired`.
        Cancelling it (its client went away, or cancelled it) cancels the call. A future settled
        by callbacks, not a task: a call that asks nothing costs next to nothing more."""
        round_ = asyncio.get_running_loop().create_future()
        round_.add_done_callback(lambda done: self.task.cancel() if done.cancelled() else None)
        self._round = round_
        self._settle()
        return round_

    def _settle(self) -> None:
        """End the round in progress if the call has ended or its server has asked."""
        round_ = self._round
        if round_ is None or round_.done():
            return
        task = self.task
        if task.done():
            self._round = None
            if task.cancelled():
                round_.cancel()
            elif (error := task.exception()) is not None:
                round_.set_exception(error)
            else:
                round_.set_result(task.result())
        elif self._waiting:
            self._round = None
            round_.set_result(self._park())

    def _ended(self, task: asyncio.Future[Any]) -> None:
        self._settle()
        if not task.cancelled():
            task.exception()  # (retrieved: a retry still gets it, from `_settle`)
        self.fail("the call ended before the client answered")

    def _park(self) -> InputRequired:
        """Send what the server asked: the `InputRequiredResult`, under a fresh `requestState`."""
        requests = {}
        for ask in self._waiting:
            ask.key = f"hub-i-{next(self._keys)}"
            self._sent[ask.key] = ask
            requests[ask.key] = ask.request.model_dump(mode="json", by_alias=True, exclude_none=True)
        self._waiting.clear()
        state, recorded = self.parking.park(self)
        result = {"resultType": "input_required", "inputRequests": requests, "requestState": state}
        return InputRequired(result, recorded)

    def resume(self, call: CallRequest, stream: CallStream) -> None:
        """The client's retry `call`, on `stream`: the responses it carries go to the requests
        that wait for them, and the call's messages go to `stream` from now on."""
        self.requester.call = call
        self.requester.stream = stream
        responses = call.input_responses or {}
        sent, self._sent = self._sent, {}
        for key, ask in sent.items():
            if not ask.answer.done():
                _answer(ask, responses.get(key))

    def fail(self, message: str, code: int = types.INTERNAL_ERROR) -> None:
        """Every request of the server still waiting gets an error answer."""
        for ask in [*self._waiting, *self._sent.values()]:
            if not ask.answer.done():
                ask.answer.set_exception(MCPError(code=code, message=message))

    def expire(self) -> None:
        """The client did not come back in time: the server's requests fail, the call is cancelled."""
        self.fail(f"the client did not answer in {self.parking.wait:g} s", types.REQUEST_TIMEOUT)
        self.task.cancel()


def _answer(ask: _Ask, response: Any) -> None:
    """Hand `response` (from the client's `inputResponses`) to `ask`, or an error if it is no
    valid answer."""
    method = ask.request.method
    if not isinstance(response, Mapping):
        message = f"the client sent no response to {method}" if response is None else None
        ask.answer.set_exception(
            MCPError(
                code=types.INVALID_PARAMS,
                message=message or f"the client's response to {method} is not an object",
            )
        )
        return
    try:
        ask.answer.set_result(ask.result_type.model_validate(response, by_name=False))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "result"
        message = f"the client's response to {method} is malformed: {where}: {first['msg']}"
        ask.answer.set_exception(MCPError(code=types.INVALID_PARAMS, message=message))


class Parking:
    """The parked calls of one lane, by `requestState` (serving loop)."""

    def __init__(self, wait: float = timeouts.INPUT_WAIT) -> None:
        self.wait = wait
        self._parked: dict[str, tuple[ParkedCall, asyncio.TimerHandle]] = {}
        # Told each new `requestState` (a cluster's replica records where it is parked, so that a
        # retry another replica receives is passed on here: `web.cluster_sessions`); the client
        # is answered once what it returns is done.
        self.on_park: Callable[[str], Awaitable[Any] | None] | None = None

    def holds(self, state: str) -> bool:
        """Whether a call is parked here under `state`."""
        return state in self._parked

    def open(self, task: asyncio.Future[Any], requester: CallRequester, owner: Owner) -> ParkedCall:
        """A 2026-07-28 call that has just started as `task`, which may be parked."""
        parked = ParkedCall(task, requester, owner, self)
        requester.parked = parked
        return parked

    def park(self, parked: ParkedCall) -> tuple[str, Awaitable[Any] | None]:
        """Keep `parked` for its client's retry: its new `requestState`, and what to wait for
        before the client may have it (`on_park`'s record; None: nothing)."""
        state = secrets.token_urlsafe(32)
        timer = asyncio.get_running_loop().call_later(self.wait, self._expire, state)
        self._parked[state] = (parked, timer)
        return state, self.on_park(state) if self.on_park is not None else None

    def _expire(self, state: str) -> None:
        entry = self._parked.pop(state, None)
        if entry is not None:
            entry[0].expire()

    def claim(self, state: str, owner: Owner, call: CallRequest) -> ParkedCall:
        """The call a retry resumes, taken off the table (a `requestState` serves once).

        Raises:
            MCPError: `state` is unknown, used, expired or another caller's (INVALID_PARAMS; the
                parked call stays), or the retry is another request than the call's.
        """
        entry = self._parked.get(state)
        if entry is None or entry[0].owner != owner:
            raise MCPError(code=types.INVALID_PARAMS, message=_UNKNOWN.format(wait=self.wait))
        parked, timer = entry
        first = parked.requester.call
        if (call.name, dict(call.arguments)) != (first.name, dict(first.arguments)):
            raise MCPError(
                code=types.INVALID_PARAMS,
                message="requestState belongs to another request: a retry repeats its tool and arguments",
            )
        del self._parked[state]
        timer.cancel()
        return parked

    def close(self) -> None:
        """The lane is closing: every parked call is cancelled."""
        for state in list(self._parked):
            self._expire(state)
