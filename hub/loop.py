"""The hub's own asyncio loop: where the blocking Python API runs the (async) call path.

The call path (`hub.calls`) is written once, as coroutines. Code on a loop (the web frontend)
awaits them on its own loop; the blocking API (`Hub.call_tool`, `Hub.read_resource`,
`Hub.get_prompt`) submits them to this loop and waits on the caller's thread. The loop runs on a
daemon thread, `hub-calls`, started by `Hub.start` and stopped (tasks cancelled, its executor shut
down, the thread joined) by `Hub.stop`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from hub.errors import CallTimeout, ShuttingDown

log = logging.getLogger(__name__)

T = TypeVar("T")

_STOP_TIMEOUT = 30.0  # for the thread to finish its tasks and its executor's asks


class HubLoop:
    """An asyncio loop on a thread of its own, which blocking callers hand coroutines to.

    `start` and `stop` run on the hub's starting and stopping thread; `run` on any thread that
    runs no asyncio loop.
    """

    def __init__(self, name: str = "hub-calls") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the loop's thread (the hub's starting thread)."""
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(loop,), name=self._name, daemon=True)
        self._thread.start()
        self._loop = loop

    def stop(self) -> None:
        """Cancel what still runs on the loop, shut its executor down, and join its thread (the
        hub's stopping thread). A caller still waiting gets `ShuttingDown`."""
        loop, thread = self._loop, self._thread
        self._loop = None  # refuse new coroutines
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            log.error("the hub's loop thread is still alive %g s after stop", _STOP_TIMEOUT)

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        """The loop's thread: run until stopped, then cancel what is left and close."""
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the loop and wait for its result (caller's thread, never a loop's).

        `timeout` is a guard against a wedged loop: the coroutine bounds its own steps.

        Raises:
            RuntimeError: the caller's thread runs an asyncio loop, which waiting would block (and
                the hub's own loop would deadlock): await the coroutine's `..._async` form there.
            ShuttingDown: the loop does not run (the hub is not started, or stopped meanwhile).
            CallTimeout: no result within `timeout`; the coroutine is cancelled.
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
        loop = self._loop
        try:
            if loop is None:
                raise RuntimeError("not started")
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError:  # not started, or stopped (its loop closed) meanwhile
            coro.close()
            raise ShuttingDown("the hub is shutting down") from None
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:  # cancelled by `stop`
            raise ShuttingDown("the hub is shutting down") from None
        except TimeoutError:
            if future.done():
                raise  # the coroutine's own error
            future.cancel()
            raise CallTimeout(f"the hub did not answer within {timeout:g} s") from None
        except BaseException:  # e.g. KeyboardInterrupt while waiting: the call is cancelled too
            future.cancel()
            raise
