"""Chaos benchmark of a cluster (docs/cluster.md): clients call through HAProxy while one replica
is SIGKILLed and later started again.

Run from the repository root after the README's install command (it needs Debian's
`redis-server` and `haproxy`, which tests/setup.sh installs):

    python bench/bench_cluster_chaos.py [--clients 32] [--seconds 60] [--kill-at 15] [--restart-at 35]
                                        [--facade-share 0.5]

Starts a `redis-server`, three replicas (heartbeat 1 s: a dead one leaves within 3 s) sharing six
test servers, and HAProxy in front (round robin per request, health checks every second, a tool
call without an `Idempotency-Key` given one, a request whose connection fails before it is sent,
or a keyed one whose replica closed the connection without answering, tried on another replica:
as config/haproxy.cfg). `--clients` keep-alive clients call at once, each call a random server's
`peek` (annotated `readOnlyHint`) or `echo` (no hint). A `--facade-share` of the clients (default
half) are MCP clients: each call a 2026-07-28 `tools/call` POSTed to the facade
(`/tenants/bench/mcp`) with no `Idempotency-Key`, as MCP clients send it (HAProxy sets one); the
others call REST (`POST /api/tools/{name}`), each call with a fresh `Idempotency-Key` of its own.
At `--kill-at` s replica r2 is SIGKILLed; at `--restart-at` s it starts again with the same id.
HAProxy sends a call whose replica died before answering to another replica, which runs it again
if its tool is read-only (`peek`) and refuses it otherwise (`echo`: it may have run on the dead
replica; REST: 409, the facade: a tool error `duplicate_call`).
Prints: calls made, failed (by kind of client and tool, and whether the client's own connection
was to the killed replica and the call was refused as a possible duplicate, or the call was
forwarded to it and lost with it), the failures that are no error of the hub (REST: no JSON
error; the facade: no JSON-RPC error or tool error naming a hub's error code), the longest time a
failed call took to be answered after the kill, hung calls (no answer within 35 s), the time until
every server ran again on the survivors, and the killed replica's server processes left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from _common import ROOT, free_port, wait_port, write_hub_config
from bench_cluster import SECRET, redis_server

TEST_SERVER = str(ROOT / "tests" / "servers" / "testserver.py")
SERVERS = tuple(f"s{i}" for i in range(6))
HUNG = 35.0


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def start_replica(folder: Path, redis_url: str, replica: str, port: int) -> subprocess.Popen[str]:
    """`python -m hub serve` as replica `replica` on `port`; its servers carry BENCH_REPLICA."""
    data = folder / replica
    data.mkdir(exist_ok=True)
    echo = {"command": "python", "args": [TEST_SERVER, "--read-only-sleep"]}
    tenants = {"bench": {"env": {"BENCH_REPLICA": replica}, "servers": {s: dict(echo) for s in SERVERS}}}
    config = write_hub_config(data / "hub.yaml", tenants, data, auto_start=True)
    text = yaml.safe_load(config.read_text())
    text["cluster"] = {"redis_url": redis_url, "secret": SECRET, "replica_id": replica, "heartbeat": 1}
    config.write_text(yaml.safe_dump(text))
    with (data / "hub.stderr").open("a") as stderr:  # (the child keeps its own descriptor)
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve", "--config", str(config), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=ROOT,
            env={**os.environ, "LOG_LEVEL": "WARNING"},
        )
    wait_port(port)
    return proc


@contextlib.contextmanager
def haproxy(folder: Path, ports: dict[str, int]) -> Iterator[int]:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    port = free_port()
    servers = "\n".join(
        f"    server {r} 127.0.0.1:{p} check inter 1s fall 2 rise 1" for r, p in ports.items()
    )
    config = folder / "haproxy.cfg"
    config.write_text(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 60s\n    timeout server 60s\n"
        f"frontend front\n    bind 127.0.0.1:{port}\n    default_backend hubs\n"
        f"backend hubs\n    balance roundrobin\n    option httpchk GET /health\n"
        # As config/haproxy.cfg: a tool call without a key gets one, and a keyed request whose
        # replica died before answering goes to another.
        "    option http-buffer-request\n    retries 2\n    option redispatch 1\n"
        "    retry-on conn-failure empty-response\n"
        "    acl tool_call path_beg /api/tools/\n    acl tool_call path /mcp\n"
        "    acl tool_call path_reg ^/tenants/[^/]+/(servers/[^/]+/)?mcp$\n"
        "    http-request set-header Idempotency-Key %[uuid()] if METH_POST tool_call"
        " !{ req.hdr(idempotency-key) -m found }\n"
        f"    http-request disable-l7-retry unless {{ req.hdr(idempotency-key) -m found }}\n{servers}\n"
    )
    proc = subprocess.Popen(
        [binary, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


MCP_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
}
HUB_ERROR = re.compile(r"[a-z_]+: ")  # how the facade's tool error starts: a hub's error code


def rest_request(port: int, server: str, tool: str, arguments: dict[str, Any]) -> bytes:
    """A REST tool call with a fresh `Idempotency-Key`."""
    body = json.dumps(arguments).encode()
    return (
        b"POST /api/tools/%s.%s?tenant=bench HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\nIdempotency-Key: %s\r\nContent-Length: %d\r\n\r\n%s"
        % (
            server.encode(),
            tool.encode(),
            port,
            uuid.uuid4().hex.encode(),
            len(body),
            body,
        )
    )


def mcp_request(port: int, server: str, tool: str, arguments: dict[str, Any]) -> bytes:
    """A 2026-07-28 `tools/call` of the facade as an MCP client sends it: no `Idempotency-Key`."""
    name = f"{server}__{tool}".encode()
    params = {"name": name.decode(), "arguments": arguments, "_meta": MCP_META}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}).encode()
    return (
        b"POST /tenants/bench/mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n"
        b"Mcp-Method: tools/call\r\nMcp-Name: %s\r\nContent-Length: %d\r\n\r\n%s"
        % (port, name, len(body), body)
    )


def judge(call: dict[str, Any], text: str) -> None:
    """Whether a call that got an HTTP answer `text` failed, and if so whether clearly (an error
    of the hub: REST's JSON error; the facade's JSON-RPC error or tool error naming its code)."""
    if call["kind"] == "rest":
        call["failed"] = call["status"] != 200
        call["clear"] = text.startswith('{"error"')
        call["text"] = text[:300]
        return
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    if not isinstance(message, dict):  # (HAProxy's 502 page, a cut body)
        call["failed"], call["clear"], call["text"] = True, False, text[:300]
        return
    result = message.get("result")
    if isinstance(result, dict) and not result.get("isError"):
        call["failed"], call["clear"], call["text"] = False, True, ""
    elif isinstance(result, dict):  # a tool error: the hub's says its code first
        said = " ".join(c.get("text", "") for c in result.get("content", []) if isinstance(c, dict))
        call["failed"], call["clear"], call["text"] = True, bool(HUB_ERROR.match(said)), said[:300]
    else:
        call["failed"], call["clear"] = True, isinstance(message.get("error"), dict)
        call["text"] = json.dumps(message.get("error"))[:300]


async def client(
    port: int, until: float, calls: list[dict[str, Any]], rng: random.Random, kind: str = "rest"
) -> None:
    """One keep-alive client (`kind`: "rest" or "mcp", the facade), reconnecting after a broken
    connection, until `until`."""
    reader = writer = None
    request = mcp_request if kind == "mcp" else rest_request
    while time.monotonic() < until:
        server, tool = rng.choice(SERVERS), rng.choice(("peek", "echo"))
        arguments = {"seconds": 0.05} if tool == "peek" else {"text": "x"}
        call: dict[str, Any] = {"kind": kind, "server": server, "tool": tool, "start": time.monotonic()}
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            writer.write(request(port, server, tool, arguments))
            async with asyncio.timeout(HUNG):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                text = await reader.readexactly(length)
            call["status"] = int(head.split(b" ", 2)[1])
            judge(call, text.decode(errors="replace"))
        except TimeoutError:
            call["status"], call["failed"], call["clear"] = "hung", True, False
        except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration) as exc:
            call["status"], call["text"], call["failed"], call["clear"] = "broken", repr(exc), True, False
        call["end"] = time.monotonic()
        calls.append(call)
        if call["failed"] and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def left_behind(replica: str) -> int:
    """Live processes whose environment says they are `replica`'s servers."""
    needle = f"BENCH_REPLICA={replica}".encode()
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (
                    needle in (entry / "environ").read_bytes()
                    and b"State:\tZ" not in (entry / "status").read_bytes()
                ):
                    count += 1
    return count


async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with redis_server(folder) as redis_url:
        ports = {r: free_port() for r in ("r1", "r2", "r3")}
        procs = {r: start_replica(folder, redis_url, r, p) for r, p in ports.items()}
        try:
            urls = {r: f"http://127.0.0.1:{p}" for r, p in ports.items()}
            deadline = time.monotonic() + 120
            while (
                sum(_get(u + "/health")["components"]["cluster"]["servers_running"] for u in urls.values())
                != 6
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not start")
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # (replicas started at once converge within a heartbeat)
            with haproxy(folder, ports) as port:
                calls: list[dict[str, Any]] = []
                began = time.monotonic()
                until = began + args.seconds
                rng = random.Random(1)
                facade = round(args.clients * getattr(args, "facade_share", 0.5))
                kinds = ["mcp"] * facade + ["rest"] * (args.clients - facade)
                clients = [asyncio.create_task(client(port, until, calls, rng, kind)) for kind in kinds]
                await asyncio.sleep(args.kill_at)
                procs["r2"].send_signal(signal.SIGKILL)
                killed = time.monotonic()
                procs["r2"].wait(10)  # (reaped: its Popen is replaced at the restart)
                out["killed_at"] = killed - began
                while True:
                    listed = _get(urls["r1"] + "/api/servers?tenant=bench")["servers"]
                    if all(s["state"] == "running" and s["replica"] in ("r1", "r3") for s in listed):
                        out["servers_back_after"] = time.monotonic() - killed
                        break
                    if time.monotonic() - killed > 60:
                        out["servers_back_after"] = None
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1)
                out["left_behind"] = left_behind("r2")
                await asyncio.sleep(max(0.0, began + args.restart_at - time.monotonic()))
                procs["r2"] = start_replica(folder, redis_url, "r2", ports["r2"])
                await asyncio.gather(*clients)
                out["calls"], out["killed"] = calls, killed
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                proc.wait(60)
    return out


def verdict(out: dict[str, Any]) -> dict[str, Any]:
    """The issue's criteria over a run's calls (REST's and the facade's alike): failed read-only
    calls, hung calls, failures that are no error of the hub, the slowest failure after the kill
    (s), when every server ran again (s after the kill, None: not within 60 s) and the killed
    replica's processes left; and the calls and failed read-only calls of each kind of client."""
    calls, killed = out["calls"], out["killed"]
    failed = [c for c in calls if c["failed"]]
    return {
        "calls": len(calls),
        "failed": len(failed),
        "failed_read_only": sum(c["tool"] == "peek" for c in failed),
        "hung": sum(c["status"] == "hung" for c in calls),
        "unclear": sum(not c["clear"] for c in failed),
        "slowest_failure": max((c["end"] - max(c["start"], killed) for c in failed), default=0.0),
        "servers_back_after": out["servers_back_after"],
        "left_behind": out["left_behind"],
        "by_kind": {
            kind: {
                "calls": sum(c["kind"] == kind for c in calls),
                "failed": sum(c["kind"] == kind for c in failed),
                "failed_read_only": sum(c["kind"] == kind and c["tool"] == "peek" for c in failed),
            }
            for kind in ("rest", "mcp")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--kill-at", type=float, default=15)
    parser.add_argument("--restart-at", type=float, default=35)
    parser.add_argument(
        "--facade-share", type=float, default=0.5, help="the share of clients that call the MCP facade"
    )
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        out = asyncio.run(run(args, Path(tmp)))
    calls, killed = out["calls"], out["killed"]
    failed = [c for c in calls if c["failed"]]
    duplicates = [c for c in failed if "duplicate_call" in c.get("text", "")]
    forwarded = [c for c in failed if "replica 'r2'" in c.get("text", "") and c not in duplicates]
    own = [c for c in failed if c not in forwarded and c not in duplicates]
    judged = verdict(out)
    print(
        f"\n{args.clients} clients through HAProxy for {args.seconds:g} s; r2 SIGKILLed at "
        f"{out['killed_at']:.1f} s, started again at {args.restart_at:g} s:"
    )
    print(f"  calls made                      {len(calls):7d}   {dict(Counter(c['kind'] for c in calls))}")
    by = dict(Counter(f"{c['kind']} {c['tool']}" for c in failed))
    print(f"  failed                          {len(failed):7d}   {by}")
    by_tool = dict(Counter(f"{c['kind']} {c['tool']}" for c in duplicates))
    print(f"    sent to r2, again elsewhere:  {len(duplicates):7d}   {by_tool} (duplicate_call: ran on r2?)")
    by_tool = dict(Counter(f"{c['kind']} {c['tool']}" for c in forwarded))
    print(f"    forwarded to r2, lost with it {len(forwarded):7d}   {by_tool}")
    print(f"    other (connection to r2, ...) {len(own):7d}   {dict(Counter(str(c['status']) for c in own))}")
    by_kind = {k: v["failed_read_only"] for k, v in judged["by_kind"].items()}
    print(f"  failed read-only (peek) calls   {judged['failed_read_only']:7d}   {by_kind} (target 0)")
    print(f"  failed without a hub's error    {judged['unclear']:7d}   (HAProxy's 502, a broken connection)")
    print(f"  hung calls (> {HUNG:g} s)            {judged['hung']:7d}   (target 0)")
    print(f"  slowest failure after the kill  {judged['slowest_failure']:7.2f} s (target <= 1 s)")
    back = out["servers_back_after"]
    print(
        f"  all servers running again after {back:7.2f} s (ttl 3 s + a heartbeat + start)"
        if back is not None
        else "  servers NOT all running again within 60 s"
    )
    print(f"  r2's server processes left      {out['left_behind']:7d}   (target 0)")
    examples = sorted({c.get("text", "")[:160] for c in failed})[:5]
    for text in examples:
        print(f"    e.g. {text}")
    for c in failed:  # (each failure: when, relative to the kill, and what)
        when, took, text = c["start"] - killed, c["end"] - c["start"], c.get("text", "")[:110]
        print(
            f"    {c['kind']:4s} {c['tool']:4s} {when:+7.2f} s after the kill, {took:5.2f} s: "
            f"{c['status']} {text}"
        )


if __name__ == "__main__":
    main()
