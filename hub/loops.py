"""The asyncio loops the hub lends to its blocking API, which runs the (async) call path on them.

The call path (`hub.calls`) is written once, as coroutines. Code on a loop (the web frontend)
awaits them on its own loop. The blocking API (`Hub.call_tool`, `Hub.read_resource`,
`Hub.get_prompt`) borrows a loop here and runs the coroutine on it to the end, on the caller's own
thread: the answer then wakes the caller straight from the server's loop, as it did before the
path was async (a loop on a thread of the hub's own would add two thread hops to every call).
The blocking asks that the path makes off the loop (`run_in_executor`) go to one executor the
hub owns (threads `hub-blocking-*`). `Hub.start` opens the loops, `Hub.stop` closes them and joins
the executor's threads. `serving_loop` makes the main thread's own loop of `hub serve` and
`hub stdio` (uvloop's where installed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

from hub.errors import ShuttingDown

log = logging.getLogger(__name__)

T = TypeVar("T")
_SERVING: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def serving_loop() -> asyncio.AbstractEventLoop:
    """A new loop for the main thread of `hub serve` (the web loop) or `hub stdio` (the facade's):
    uvloop's (libuv, in C) where it is installed, unless `MCP_HUB_EVENT_LOOP=asyncio` asks for
    asyncio's own. Every request, every stdio client line and every tool call to a Streamable HTTP
    server runs on it; uvloop takes ~0.05-0.1 ms of the hub's CPU off each call (issue 24). The
    servers' own loops stay asyncio's (their child processes)."""
    if os.environ.get("MCP_HUB_EVENT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:  # (not on this platform: asyncio's loop serves alike)
            pass
        else:
            log.info("serving loop: uvloop %s", uvloop.__version__)
            return uvloop.new_event_loop()
    log.info("serving loop: asyncio")
    return asyncio.new_event_loop()


def serve_calls_here() -> None:
    """Mark the running loop as one that serves clients for as long as the hub runs (the web
    loop, the stdio facade's): a tool call to a Streamable HTTP server made on it runs there,
    with a keep-alive pool of that loop's own (`actors.calls.ServerCalls.here`). On any other
    loop (one the blocking API borrows, a program's own `asyncio.run`), which may end before the
    hub does, calls take the hop to the server's loop."""
    _SERVING.add(asyncio.get_running_loop())


def serving(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether `loop` was marked by `serve_calls_here` (any thread)."""
    return loop in _SERVING


class HubLoops:
    """Idle loops that blocking callers borrow, one per caller at a time, and the executor they share.

    Every method may be called from any thread; `run` never from one that runs an asyncio loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[asyncio.AbstractEventLoop] = []  # guarded by `_lock`, as is `_executor`
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Lend loops from now on (the hub's starting thread)."""
        with self._lock:
            self._executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="hub-blocking")

    def stop(self) -> None:
        """Lend no more loops, close the idle ones (one in use closes when it is given back) and
        join the executor's threads (the hub's stopping thread)."""
        with self._lock:
            executor, self._executor = self._executor, None
            idle, self._idle = self._idle, []
        if executor is not None:
            executor.shutdown(wait=True)  # (asks fail fast once the router has stopped)
        for loop in idle:
            loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` to the end on a borrowed loop, on the caller's thread (never a loop's).

        Raises:
            RuntimeError: the caller's thread runs an asyncio loop, which waiting would block: await
                the coroutine's `..._async` form there instead.
            ShuttingDown: the hub is not started, or stopped.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop on this thread: waiting is fine
        else:
            coro.close()
            raise RuntimeError(
                "the hub's blocking API waits for its answer: on an asyncio loop, await its async form"
            )
        loop = self._borrow(coro)
        task = loop.create_task(coro)
        try:
            return loop.run_until_complete(task)
        except RuntimeError:  # the executor refuses work once the hub stopped
            if self._executor is None:
                raise ShuttingDown("the hub is shutting down") from None
            raise
        except BaseException:
            if not task.done():  # e.g. a KeyboardInterrupt while waiting: cancel the call too
                task.cancel()
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(task)
            raise
        finally:
            self._give_back(loop)

    def _borrow(self, coro: Coroutine[Any, Any, Any]) -> asyncio.AbstractEventLoop:
        """An idle loop, or a new one (closes `coro` and raises `ShuttingDown` once stopped)."""
        with self._lock:
            executor = self._executor
            if executor is not None and self._idle:
                return self._idle.pop()
        if executor is None:
            coro.close()
            raise ShuttingDown("the hub is shutting down")
        loop = asyncio.new_event_loop()
        loop.set_default_executor(executor)  # (closing the loop shuts it down: only `stop` does)
        return loop

    def _give_back(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if self._executor is not None:
                self._idle.append(loop)
                return
        loop.close()  # stopped meanwhile
