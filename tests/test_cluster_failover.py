"""Failover of calls in a cluster (issue 21, item 5): when the replica a call was forwarded to is
SIGKILLed mid-call, a call of a tool that says a retry is harmless (`readOnlyHint`) is tried again
on the survivor that takes its server over, any other call in flight fails at once with a clear
error, and a call made after the kill waits for the survivor to run the server; a keyed call whose client
connection was to the killed replica is sent again by HAProxy to the survivor, which runs it again
if it is read-only and refuses it otherwise (REST: 409; the MCP facade, whose client sends no key
and gets one from HAProxy: a tool error).
Real replicas (`python -m hub serve`) on a real Redis.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import json
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import TEST_SERVER, cluster_section, running_haproxy, server, server_pids, wait_until
from helpers.facade import modern_call
from helpers.served import ServedHub, start_hub, stop_hub, write_config

from hub import placement

HEARTBEAT = 0.5  # a replica's key lives 1.5 s
SERVERS = ("s0", "s1", "s2", "s3")


def _servers(hub: ServedHub) -> dict[str, dict[str, Any]]:
    return {s["server"]: s for s in hub.get("/api/servers?tenant=t").body["servers"]}


def _in_flight(hub: ServedHub) -> float:
    for line in hub.get("/metrics").text.splitlines():
        if line.startswith('mcp_hub_tool_calls_in_flight{tenant="t"}'):
            return float(line.split()[-1])
    return 0.0


def _tool_names(hub: ServedHub) -> set[str]:
    return {t["name"] for t in hub.get("/api/tools?tenant=t").body["tools"]}


@contextlib.contextmanager
def _replicas(redis_server: str, tmp_path: Path, start_delay: float = 0.0) -> Iterator[dict[str, ServedHub]]:
    """Replicas `stays` and `dies` sharing SERVERS, converged (each server running once); `dies` is
    SIGKILLed by the test, `stays` must stop cleanly. Each server's process sleeps `start_delay`
    seconds before it serves."""
    config = server("--read-only-sleep")
    if start_delay:
        script = f'sleep {start_delay}; exec "{sys.executable}" "$0" --read-only-sleep'
        config = {**config, "command": "sh", "args": ["-c", script, TEST_SERVER]}
    tenants = {"t": {"servers": {name: dict(config) for name in SERVERS}}}
    hubs: dict[str, ServedHub] = {}
    try:
        for replica in ("dies", "stays"):
            folder = tmp_path / replica
            folder.mkdir()
            section = cluster_section(redis_server, replica, HEARTBEAT)
            hubs[replica] = start_hub(
                write_config(folder, tenants, cluster=section, orchestrator={"auto_start": True}), folder
            )

        def converged() -> bool:
            views = [{n: (s["state"], s["replica"]) for n, s in _servers(h).items()} for h in hubs.values()]
            running = all(state == "running" for state, _ in views[0].values())
            shares = [h.get("/health").body["components"]["cluster"] for h in hubs.values()]
            placed = all(
                c["servers_running"] == c["servers_owned"] and len(c["members"]) == 2 for c in shares
            )
            return running and placed and views[0] == views[1] and len(server_pids()) == len(SERVERS)

        assert wait_until(converged, 60)
        yield hubs
    finally:
        for replica, hub in hubs.items():
            if replica == "dies":
                hub.proc.kill()
                hub.proc.wait(10)
                hub.proc.stdout.close()  # type: ignore[union-attr]
            else:
                assert stop_hub(hub) == 0, hub.log()[-3000:]


def test_a_read_only_call_survives_the_death_of_its_replica_and_another_fails_at_once(
    redis_server: str, tmp_path: Path
) -> None:
    with _replicas(redis_server, tmp_path) as hubs:
        stays, dies = hubs["stays"], hubs["dies"]
        theirs = sorted(n for n, s in _servers(stays).items() if s["replica"] == "dies")
        assert theirs, _servers(stays)  # (placement over two replicas: both get some)
        name = theirs[0]

        def call(tool: str) -> tuple[int, Any, float]:
            answer = stays.post(f"/api/tools/{name}.{tool}/call?tenant=t", {"text": "after"})
            return answer.status, answer.body, time.monotonic()

        # Facade calls with a progress token: the first progress of each shows it reached its server
        # on `dies` (one killed before that would wait and run on the survivor, by design).
        url = f"{stays.url}/tenants/t/mcp"
        read_only = _StreamedCall(url, f"{name}__peek", {"seconds": 3})
        plain = _StreamedCall(url, f"{name}__sleep", {"seconds": 3})
        read_only.until_progress()
        plain.until_progress()
        dies.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        answer, at = plain.answer()
        text = answer["result"]["content"][0]["text"]
        assert answer["result"]["isError"] and text.startswith("upstream_error:"), answer
        assert "'dies'" in text and "went away" in text, answer
        assert at - killed < 1.0  # answered at once, not after a timeout
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # A call made now (the channel to `dies` is known broken), of a tool with no hint,
            # reaches no server until the survivor runs it: it waits for it instead of failing (the
            # cluster is settling). (One sent on the channel before its break was seen fails like
            # `plain`.)
            after = pool.submit(call, "echo")
            answer, at = read_only.answer()
            assert answer["result"]["content"][0]["text"] == "slept", answer  # tried again on `stays`
            status, body, _ = after.result(60)
        assert status == 200 and body["structured_content"] == {"text": "after"}, body
        assert _servers(stays)[name]["replica"] == "stays"
        assert at - killed < 3 * HEARTBEAT + HEARTBEAT + 20  # (ttl + a heartbeat + start and call)
        # Every server runs again, on the survivor, and once: the killed replica's children are gone.
        assert wait_until(lambda: len(server_pids()) == len(SERVERS), 20), server_pids()
        assert all(s["replica"] == "stays" and s["state"] == "running" for s in _servers(stays).values())


def test_a_facade_call_of_a_tool_whose_replica_died_waits_for_the_survivor_to_run_it(
    redis_server: str, tmp_path: Path
) -> None:
    with _replicas(redis_server, tmp_path, start_delay=2.0) as hubs:
        stays, dies = hubs["stays"], hubs["dies"]
        name = next(n for n, s in _servers(stays).items() if s["replica"] == "dies")
        dies.proc.send_signal(signal.SIGKILL)
        # Once `dies` leaves the live set, `stays` lists its servers' tools no more until it runs
        # them (2 s at least: their processes start slowly). A facade call made then, as a REST
        # call, waits for the server instead of failing ("Unknown tool"): the cluster is settling.
        assert wait_until(lambda: f"{name}.echo" not in _tool_names(stays), 10)
        status, body, _ = _mcp_post(f"{stays.url}/tenants/t/mcp", f"{name}__echo", {"text": "after"})
        assert status == 200 and body["result"]["structuredContent"] == {"text": "after"}, body
        assert _servers(stays)[name]["replica"] == "stays"


class _StreamedCall:
    """A 2026-07-28 `tools/call` with a progress token, over HTTP, its answer read as it streams."""

    def __init__(self, url: str, name: str, arguments: dict[str, Any]) -> None:
        message = modern_call(name, arguments)
        message["params"]["_meta"] = {**message["params"]["_meta"], "progressToken": name}
        parts = urllib.parse.urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/call",
            "Mcp-Name": name,
        }
        self.connection.request("POST", parts.path, json.dumps(message), headers)
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.read()

    def _next(self) -> dict[str, Any]:
        """The next JSON-RPC message of the stream."""
        while line := self.response.readline():
            if line.startswith(b"data:") and line[5:].strip():
                return json.loads(line[5:])
        raise AssertionError("the stream ended with no answer")

    def until_progress(self) -> None:
        while self._next().get("method") != "notifications/progress":
            continue

    def answer(self) -> tuple[dict[str, Any], float]:
        """The call's answer, and when it came."""
        while "id" not in (message := self._next()):
            continue
        self.connection.close()
        return message, time.monotonic()


def _keyed_post(url: str, arguments: dict[str, Any], key: str) -> tuple[int, Any, float]:
    request = urllib.request.Request(url, data=json.dumps(arguments).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Idempotency-Key", key)
    return _answer(request)


def _mcp_post(url: str, name: str, arguments: dict[str, Any]) -> tuple[int, Any, float]:
    """A 2026-07-28 `tools/call` as an MCP client sends it over HTTP: no Idempotency-Key."""
    message = modern_call(name, arguments)
    request = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST")
    for header, value in (
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", name),
    ):
        request.add_header(header, value)
    return _answer(request)


def _answer(request: urllib.request.Request) -> tuple[int, Any, float]:
    """Status, JSON body (else its text) and when it came."""
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status, text = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    try:
        body = json.loads(text)
    except ValueError:
        body = text
    return status, body, time.monotonic()


def test_a_tool_call_whose_client_was_connected_to_the_killed_replica_is_sent_again_by_haproxy(
    redis_server: str, tmp_path: Path
) -> None:
    with _replicas(redis_server, tmp_path) as hubs:
        stays, dies = hubs["stays"], hubs["dies"]
        name = next(n for n, s in _servers(stays).items() if s["replica"] == "dies")
        # `balance first`: every request goes to `dies` while it is up, and to `stays` once it is not.
        with (
            running_haproxy(tmp_path, [dies.url, stays.url], balance="first") as url,
            concurrent.futures.ThreadPoolExecutor(4) as pool,
        ):
            rest = f"{url}/api/tools/{name}"
            read_only = pool.submit(_keyed_post, f"{rest}.peek?tenant=t", {"seconds": 2}, "k1")
            plain = pool.submit(_keyed_post, f"{rest}.sleep?tenant=t", {"seconds": 2}, "k2")
            # The same over the MCP facade, with no key: HAProxy sets one.
            facade = f"{url}/tenants/t/mcp"
            mcp_read_only = pool.submit(_mcp_post, facade, f"{name}__peek", {"seconds": 2})
            mcp_plain = pool.submit(_mcp_post, facade, f"{name}__sleep", {"seconds": 2})
            assert wait_until(lambda: _in_flight(dies) == 4, 10)  # all received by `dies`, running
            dies.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            status, body, at = plain.result(30)
            # HAProxy sent it again to `stays`, which knows its key: it may have run, so not again.
            assert status == 409 and body["error"]["code"] == "duplicate_call", body
            assert "'dies'" in body["error"]["message"] and "may already have run" in body["error"]["message"]
            assert at - killed < 1.0, at - killed
            # The facade's: the same refusal, as the facade says a hub's error (a tool error).
            status, body, at = mcp_plain.result(30)
            assert status == 200 and body["result"]["isError"] is True, body
            text = body["result"]["content"][0]["text"]
            assert text.startswith("duplicate_call: ") and "'dies'" in text and f"'{name}__sleep'" in text, (
                text
            )
            assert at - killed < 1.0, at - killed
            # The read-only calls run again on `stays` (once its server runs there).
            status, body, _ = read_only.result(60)
            assert status == 200 and body["content"][0]["text"] == "slept", body
            status, body, _ = mcp_read_only.result(60)
        assert status == 200 and body["result"]["content"][0]["text"] == "slept", body
        assert body["result"]["isError"] is False, body


def test_a_server_a_newcomer_wins_is_handed_over_once_its_calls_in_flight_end(
    redis_server: str, tmp_path: Path
) -> None:
    tenants = {"t": {"servers": {name: server() for name in SERVERS}}}
    name = next(n for n in SERVERS if placement.owner(["old", "new"], "t", n) == "new")
    hubs: dict[str, ServedHub] = {}

    def start(replica: str) -> ServedHub:
        folder = tmp_path / replica
        folder.mkdir()
        section = cluster_section(redis_server, replica, HEARTBEAT)
        config = write_config(folder, tenants, cluster=section, orchestrator={"auto_start": True})
        hubs[replica] = start_hub(config, folder)
        return hubs[replica]

    try:
        old = start("old")
        assert wait_until(lambda: all(s["state"] == "running" for s in _servers(old).values()), 30)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            slow = pool.submit(old.post, f"/api/tools/{name}.sleep/call?tenant=t", {"seconds": 4})
            assert wait_until(lambda: _in_flight(old) == 1, 10)
            new = start("new")

            def handed_over() -> bool:
                listed = [_servers(h)[name] for h in (old, new)]
                return all(s["replica"] == "new" and s["state"] == "running" for s in listed) and len(
                    server_pids()
                ) == len(SERVERS)

            answers = []  # calls to the moving server through both replicas, while it moves
            while not handed_over():
                for hub in (old, new):
                    answers.append(hub.post(f"/api/tools/{name}.echo/call?tenant=t", {"text": "x"}).status)
                assert len(answers) < 2000, "the server was not handed over"
            answer = slow.result(30)
        # The call in flight on the old owner ran to its end there (a stop would have failed it:
        # `sleep` says nothing of retries, so it is not tried again), and no call failed meanwhile.
        assert answer.status == 200 and answer.body["content"][0]["text"] == "slept", answer.body
        assert answers and set(answers) == {200}, Counter(answers)
        assert f"cluster: rebalance: handing t/{name} over to replica new" in old.log()
    finally:
        for hub in hubs.values():
            assert stop_hub(hub) == 0, hub.log()[-3000:]
