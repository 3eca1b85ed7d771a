"""Fast unit tests, with no process and no actor: the tenant's call gate (quotas), the event board
that threads wait on, and the wake logic of on_demand servers and session instances.

Time is a fake clock where the code reads `time.monotonic`; the wake tests replace only the
tenant's `wake_server` ask (the real one starts an actor and a server process) with a fake that
answers the way a tenant does: with the status the server has when asked.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import config_of, server

from actors import call_gate as call_gate_module
from actors.call_gate import CallGate
from actors.models import InstanceStateChanged, ServerState, ServerStateChanged, ServerStatus
from hub.config import Quotas
from hub.errors import CallTimeout, HubError, NotFound, NotRunning, QuotaExceeded, ShuttingDown, UpstreamError
from hub.loops import HubLoops
from hub.runtime import EventBoard, Hub

# --------------------------------------------------------------------------- CallGate


class FakeClock:
    """`time.monotonic` under the test's control."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(call_gate_module.time, "monotonic", fake)
    return fake


def admitted(gate: CallGate, tenant: str = "acme") -> bool:
    """Whether one call is let through now (it ends at once)."""
    try:
        with gate.admit(tenant):
            return True
    except QuotaExceeded:
        return False


def test_gate_refuses_a_call_beyond_max_concurrent_calls_until_one_ends() -> None:
    gate = CallGate(Quotas(max_concurrent_calls=2))
    first, second = gate.admit("acme"), gate.admit("acme")
    first.__enter__()
    second.__enter__()
    assert gate.in_flight == 2
    with pytest.raises(QuotaExceeded) as refused:
        gate.admit("acme").__enter__()
    assert str(refused.value) == "tenant 'acme' has 2 calls in flight (max_concurrent_calls 2)"
    assert refused.value.retry_after == 1.0
    first.__exit__(None, None, None)
    assert gate.in_flight == 1 and admitted(gate)
    second.__exit__(None, None, None)
    assert gate.in_flight == 0


def test_gate_frees_the_slot_of_a_call_that_raised() -> None:
    gate = CallGate(Quotas(max_concurrent_calls=1))
    with pytest.raises(RuntimeError), gate.admit("acme"):
        raise RuntimeError("the upstream broke")
    assert gate.in_flight == 0 and admitted(gate)


def test_gate_window_slides_over_one_minute(clock: FakeClock) -> None:
    gate = CallGate(Quotas(max_calls_per_minute=3))
    for at in (0.0, 10.0, 20.0):
        clock.now = 1000.0 + at
        assert admitted(gate)
    clock.now = 1030.0
    with pytest.raises(QuotaExceeded) as refused:
        gate.admit("acme").__enter__()
    assert str(refused.value) == "tenant 'acme' made 3 calls in the last minute (max_calls_per_minute 3)"
    assert refused.value.retry_after == pytest.approx(30.0)  # when the call at 0 s leaves the window
    clock.now = 1059.95
    assert not admitted(gate) and gate.calls_last_minute() == 3  # a refused call is not counted
    clock.now = 1060.0  # the first call is a minute old: one more call is allowed, not three
    assert admitted(gate) and not admitted(gate)
    clock.now = 1080.0  # the calls at 10 s and 20 s are gone
    assert gate.calls_last_minute() == 1
    assert admitted(gate) and admitted(gate) and not admitted(gate)


def test_gate_retry_after_is_never_below_a_tenth_of_a_second(clock: FakeClock) -> None:
    gate = CallGate(Quotas(max_calls_per_minute=1))
    assert admitted(gate)
    clock.now += 59.999
    with pytest.raises(QuotaExceeded) as refused:
        gate.admit("acme").__enter__()
    assert refused.value.retry_after == 0.1


def test_gate_applies_reloaded_quotas_and_keeps_its_counts(clock: FakeClock) -> None:
    gate = CallGate(Quotas(max_concurrent_calls=5, max_calls_per_minute=10))
    held = gate.admit("acme")
    held.__enter__()
    for _ in range(3):
        assert admitted(gate)
    gate.update(Quotas(max_concurrent_calls=1, max_calls_per_minute=10))
    assert gate.in_flight == 1 and gate.calls_last_minute() == 4  # a reload forgets nothing
    assert not admitted(gate)  # the held call fills the new concurrency limit
    held.__exit__(None, None, None)
    gate.update(Quotas(max_calls_per_minute=5))
    assert admitted(gate) and not admitted(gate)  # 4 before the reload count against the new 5
    gate.update(Quotas())  # unlimited
    assert all(admitted(gate) for _ in range(50))


# --------------------------------------------------------------------------- EventBoard


def status(
    state: ServerState, seq: int, server: str = "s", session: str | None = None, **more: Any
) -> ServerStatus:
    return ServerStatus(tenant="t", server=server, state=state, seq=seq, session=session, **more)


def test_board_wait_for_wakes_on_the_event_that_makes_it_true() -> None:
    board = EventBoard()
    checking = threading.Event()

    def running() -> bool:
        checking.set()  # the waiter holds the board's lock: the tell below comes after this check
        current = board.status("t", "s")
        return current is not None and current.state is ServerState.RUNNING

    def teller() -> None:
        checking.wait(10)
        board.tell(ServerStateChanged(status(ServerState.STARTING, 1)))
        board.tell(ServerStateChanged(status(ServerState.RUNNING, 2)))

    thread = threading.Thread(target=teller)
    began = time.monotonic()
    thread.start()
    assert board.wait_for(running, 20)
    assert time.monotonic() - began < 10  # woken by the event, not by the timeout
    thread.join(10)


def test_board_wait_for_answers_false_on_timeout() -> None:
    board = EventBoard()
    board.tell(ServerStateChanged(status(ServerState.STARTING, 1)))
    assert board.wait_for(lambda: board.status("t", "s").state is ServerState.RUNNING, 0.05) is False  # type: ignore[union-attr]


def test_board_keeps_the_newest_instance_status_and_drops_gone_instances() -> None:
    board = EventBoard()
    key = ("t", "s", "http:one")
    board.tell(InstanceStateChanged(status(ServerState.RUNNING, 5, session="http:one", pid=42)))
    board.tell(InstanceStateChanged(status(ServerState.STARTING, 4, session="http:one")))  # told late
    assert board.instance_status(key).state is ServerState.RUNNING  # type: ignore[union-attr]
    board.tell(InstanceStateChanged(status(ServerState.RUNNING, 1, server="s", session="ws:two")))
    board.tell(InstanceStateChanged(status(ServerState.RUNNING, 1, server="x", session="ws:two")))
    assert {i.session for i in board.instances("t")} == {"http:one", "ws:two"} and not board.instances("u")
    board.tell(InstanceStateChanged(status(ServerState.STOPPED, 6, session="http:one")))
    assert board.instance_status(key) is None
    assert [(i.server, i.session) for i in board.instances()] == [("s", "ws:two"), ("x", "ws:two")]


def test_board_listeners_see_every_event_in_order_and_a_broken_one_harms_no_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    board = EventBoard()
    seen: list[tuple[int, ServerState | None]] = []

    def broken(event: Any) -> None:
        raise ValueError("listener bug")

    def recorder(event: Any) -> None:
        # The board records a status before it tells listeners: one that reads it sees the new one.
        latest = board.status("t", "s")
        seen.append((event.status.seq, latest.state if latest else None))

    board.add_listener(broken)
    board.add_listener(recorder)
    with caplog.at_level(logging.ERROR, logger="hub.events"):
        for seq, state in enumerate((ServerState.STARTING, ServerState.RUNNING, ServerState.BACKOFF), 1):
            board.tell(ServerStateChanged(status(state, seq)))
    assert seen == [(1, ServerState.STARTING), (2, ServerState.RUNNING), (3, ServerState.BACKOFF)]
    assert caplog.text.count("event listener") == 3 and "listener bug" in caplog.text
    board.remove_listener(recorder)
    board.remove_listener(recorder)  # twice is harmless
    board.tell(ServerStateChanged(status(ServerState.RUNNING, 4)))
    assert len(seen) == 3 and board.status("t", "s").seq == 4  # type: ignore[union-attr]


def test_board_keeps_only_the_last_thousand_events() -> None:
    board = EventBoard()
    for seq in range(1, 2501):
        board.tell(ServerStateChanged(status(ServerState.RUNNING, seq)))
    assert len(board.events) == 1000 and board.events[0].status.seq == 1501  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- wakes of on_demand servers


class FakeTenant:
    """Stands in for a tenant actor's proxy: starting a server for real needs the actor tree and a
    server process, and the wake logic only needs the status the tenant answers with. `answer`
    runs on the asking thread, like the ask's reply; it may tell events to the board first."""

    def __init__(self, answer: Callable[[str], ServerStatus]) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def wake_server(self, name: str) -> Any:
        self.asked.append(name)
        return _Reply(lambda: self.answer(name))

    def session_instance(self, name: str, session: str, user_env: Any = None) -> Any:
        self.asked.append(f"{name} for {session}")
        return _Reply(lambda: (object(), self.answer(name)))  # (its endpoint, its status)


class _Reply:
    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute = compute

    def get(self, timeout: float) -> Any:
        return self.compute()


@pytest.fixture
def hub(tmp_path: Any) -> Iterator[Hub]:
    """A hub that is never started: its board and wake logic only."""
    config = config_of(
        {"t": {"servers": {"s": server(lifecycle="on_demand")}}}, orchestrator={"startup_timeout": 1}
    )
    yield Hub(config, data_dir=tmp_path)


def fake_tenant(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, answer: Callable[[str], ServerStatus]
) -> FakeTenant:
    tenant = FakeTenant(answer)
    monkeypatch.setattr(hub, "_tenant", lambda name: tenant)
    return tenant


def wake(hub: Hub, tenant: str, server: str, session: str | None = None) -> None:
    """Wait for a wake as a call does (on a loop of its own)."""
    asyncio.run(hub.wakes.wake_async(tenant, server, session))


def test_concurrent_first_calls_share_one_start(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    second_waits = threading.Event()
    pending_wake = hub.wakes.pending

    def pending(key: Any) -> Any:
        future, first = pending_wake(key)
        if not first:
            second_waits.set()
        return future, first

    monkeypatch.setattr(hub.wakes, "pending", pending)

    def answer(name: str) -> ServerStatus:
        assert second_waits.wait(10), "the second call did not join the start"
        hub.board.tell(ServerStateChanged(status(ServerState.STARTING, 1)))
        hub.board.tell(ServerStateChanged(status(ServerState.RUNNING, 2)))  # before the ask's reply
        return status(ServerState.STARTING, 1)

    tenant = fake_tenant(hub, monkeypatch, answer)
    errors: list[BaseException] = []

    def first_call() -> None:
        try:
            wake(hub, "t", "s")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=first_call)
    thread.start()
    wake(hub, "t", "s")  # the second call: waits for the first one's start
    thread.join(10)
    assert not errors and tenant.asked == ["s"]  # one start for both
    assert not hub.wakes.starts  # settled: the next call after an idle stop asks again


def test_a_failed_start_answers_every_waiter_with_its_reason(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    def answer(name: str) -> ServerStatus:
        hub.board.tell(
            ServerStateChanged(status(ServerState.FAILED, 2, last_error="failed to start: no such db"))
        )
        return status(ServerState.STARTING, 1)

    fake_tenant(hub, monkeypatch, answer)

    async def two_calls() -> list[Any]:
        return await asyncio.gather(
            hub.wakes.wake_async("t", "s"), hub.wakes.wake_async("t", "s"), return_exceptions=True
        )

    first, second = asyncio.run(two_calls())
    for error in (first, second):
        assert isinstance(error, UpstreamError)
        assert str(error) == "server 's' of tenant 't' failed to start: no such db"


def test_an_older_failure_does_not_fail_a_new_start(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server failed a while ago (seq 3); a call starts it again (seq 4): the board's stale
    # status must not fail the call, and the `running` that follows answers it.
    hub.board.tell(ServerStateChanged(status(ServerState.FAILED, 3, last_error="old crash")))
    fake_tenant(hub, monkeypatch, lambda name: status(ServerState.STARTING, 4))
    future, first = hub.wakes.pending(("t", "s", None))
    assert first
    hub.wakes.ask(("t", "s", None))
    assert not future.done()
    hub.board.tell(ServerStateChanged(status(ServerState.RUNNING, 5)))
    assert future.result(timeout=0).seq == 5


@pytest.mark.parametrize(
    ("answered", "then", "error", "message"),
    [
        (
            status(ServerState.BACKOFF, 7, last_error="exit code 1"),
            None,
            NotRunning,
            "server 's' of tenant 't' is restarting after a crash: exit code 1",
        ),
        (
            status(ServerState.STARTING, 7),
            status(ServerState.STOPPED, 8),
            NotRunning,
            "server 's' of tenant 't' was stopped while it was starting",
        ),
        (
            status(ServerState.STARTING, 7),
            status(ServerState.BACKOFF, 8, last_error="failed to start: timeout"),
            UpstreamError,
            "server 's' of tenant 't' failed to start: timeout",
        ),
        (
            status(ServerState.STARTING, 7, session="ws:a"),
            status(ServerState.FAILED, 8, session="ws:a"),
            UpstreamError,
            "the instance of server 's' of tenant 't' for this session failed to start: failed",
        ),
    ],
    ids=["in-backoff", "stopped-meanwhile", "start-failed", "instance-failed"],
)
def test_what_a_waiting_call_is_told(
    hub: Hub,
    monkeypatch: pytest.MonkeyPatch,
    answered: ServerStatus,
    then: ServerStatus | None,
    error: type[HubError],
    message: str,
) -> None:
    key = answered.instance_key
    fake_tenant(hub, monkeypatch, lambda name: answered)
    future, first = hub.wakes.pending(key)
    assert first
    hub.wakes.ask(key)
    if then is not None:
        assert not future.done()  # still starting
        event = ServerStateChanged(then) if then.session is None else InstanceStateChanged(then)
        hub.board.tell(event)
    with pytest.raises(error) as told:
        future.result(timeout=0)
    assert str(told.value) == message


def test_a_start_that_takes_too_long_times_out_and_a_late_start_still_serves_the_next_call(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hub.wakes._WAKE_MARGIN", 0.0)  # the wait is then startup_timeout: 1 s
    tenant = fake_tenant(hub, monkeypatch, lambda name: status(ServerState.STARTING, 1))
    with pytest.raises(CallTimeout, match="server 's' did not start within 1 s"):
        wake(hub, "t", "s")
    # The start goes on: the next call joins it (no second ask) and is answered once it runs.
    pending_wake = hub.wakes.pending

    def pending(key: Any) -> Any:
        future, first = pending_wake(key)
        if not first:
            hub.board.tell(ServerStateChanged(status(ServerState.RUNNING, 2)))
        return future, first

    monkeypatch.setattr(hub.wakes, "pending", pending)
    wake(hub, "t", "s")
    assert tenant.asked == ["s"]


def test_abandoned_starts_fail_only_their_waiters(hub: Hub) -> None:
    keys = [("t", "a", None), ("t", "b", None), ("u", "a", None), ("t", "a", "ws:1"), ("t", "b", "ws:2")]
    futures = {key: hub.wakes.pending(key)[0] for key in keys}
    hub.wakes.abandon(NotFound("no server 'a'"), tenant="t", servers={"a"})
    assert {key for key, f in futures.items() if f.done()} == {("t", "a", None), ("t", "a", "ws:1")}
    hub.wakes.abandon(NotRunning("the session of this call has ended"), session="ws:2")
    assert futures[("t", "b", "ws:2")].exception(0).__class__ is NotRunning
    hub.wakes.abandon(ShuttingDown("the hub is shutting down"))  # what `stop` does
    assert all(f.done() for f in futures.values()) and not hub.wakes.starts
    assert isinstance(futures[("u", "a", None)].exception(0), ShuttingDown)
    assert isinstance(futures[("t", "a", None)].exception(0), NotFound)  # settled once, first reason kept


def test_a_call_of_an_ended_session_starts_no_instance(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_tenant(name: str) -> Any:
        raise AssertionError("an ended session asked its tenant for an instance")

    monkeypatch.setattr(hub, "_tenant", no_tenant)
    assert hub.end_session("http:gone") == 0  # it had no instance
    with pytest.raises(NotRunning, match="the session of this call has ended"):
        wake(hub, "t", "s", "http:gone")
    assert not hub.wakes.starts


def test_the_blocking_api_refuses_a_loop_thread_and_a_hub_that_does_not_run(hub: Hub) -> None:
    async def on_a_loop() -> None:
        hub.call_tool("t", "s.echo", {})  # would block the loop: refused at once, not a hang

    with pytest.raises(RuntimeError, match="on an asyncio loop, await its async form"):
        asyncio.run(on_a_loop())
    with pytest.raises(ShuttingDown):  # never started
        hub.call_tool("t", "s.echo", {})


def test_the_loops_lent_to_blocking_calls_leave_no_thread_behind() -> None:
    loops = HubLoops()
    loops.start()

    async def ask_off_the_loop() -> str:
        return await asyncio.get_running_loop().run_in_executor(None, threading.current_thread)

    def blocking_call() -> str:
        return loops.run(ask_off_the_loop()).name

    names = {blocking_call(), blocking_call()}
    with concurrent.futures.ThreadPoolExecutor(4) as callers:  # concurrent callers borrow loops of their own
        names |= set(callers.map(lambda _: blocking_call(), range(8)))
    assert all(name.startswith("hub-blocking") for name in names)
    loops.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("hub-blocking")]
    with pytest.raises(ShuttingDown):
        blocking_call()
