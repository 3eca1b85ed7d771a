"""The answer of a request that runs on another thread's loop (a server's), awaited on this one.

`asyncio.wrap_future` does the same for any `concurrent.futures.Future`: when the other thread
completes it, a callback is scheduled on the awaiting loop, which then reads the future's state
back with four calls that each take the future's lock (`done`, `cancelled`, `exception`,
`result`). Every tool call pays that on the web loop, the hub's busiest thread. `landed` reads the
state once, on the thread that completes the future (it holds the lock then anyway), and hands the
awaiting loop the outcome in one callback; a cancellation of the awaiting side still cancels the
request, as with `wrap_future`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def landed(future: concurrent.futures.Future[T]) -> asyncio.Future[T]:
    """`future` as a future of the running loop (on that loop). Cancelling the returned future
    cancels `future` (and so the request on the other loop)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[T] = loop.create_future()

    def given_up(w: asyncio.Future[T]) -> None:  # (the awaiting loop)
        if w.cancelled():
            future.cancel()

    def completed(f: concurrent.futures.Future[T]) -> None:  # (the thread that completed it)
        try:
            error = f.exception()
        except concurrent.futures.CancelledError:
            outcome: tuple[bool, Any, BaseException | None] = (True, None, None)
        else:
            outcome = (False, None if error is not None else f.result(), error)
        if not loop.is_closed():
            loop.call_soon_threadsafe(_settle, waiter, outcome)

    waiter.add_done_callback(given_up)
    future.add_done_callback(completed)
    return waiter


def _settle(waiter: asyncio.Future[Any], outcome: tuple[bool, Any, BaseException | None]) -> None:
    """Give `waiter` the outcome of the future it stands for (the awaiting loop)."""
    if waiter.done():
        return
    cancelled, result, error = outcome
    if cancelled:
        waiter.cancel()
    elif error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(result)


def hand(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Run `callback(*args)` on `loop` (another thread's), unless that loop is closed (any thread)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)
