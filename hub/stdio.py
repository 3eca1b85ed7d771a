"""`python -m hub stdio --tenant T [--server S] [--key K]`: a hub in-process, serving one tenant
(or one server of it, under its own names: `web.facade_scope`) as MCP on stdin/stdout.

For Claude Desktop, Cursor and other stdio clients. The process's stdin and stdout are claimed
first: the wire moves to private duplicates and, while the facade serves, fd 0 reads the null
device and fd 1 points at stderr, so a stray print cannot corrupt the protocol. The wire is read
and written by asyncio pipe transports on the serving loop (the SDK's own `stdio_server` reads
and writes through worker threads, three thread hops per call); stdin or stdout that is not a
pipe, socket or terminal (a regular file) falls back to the SDK's path. On the claimed wire,
`tools/call` lines are served by the facade's lane (`web.mcp_lane_stdio.StdioLane`), not the SDK.
Then the hub starts and the tenant's enabled servers are started; the facade serves until stdin
closes or SIGTERM/SIGINT, then every server and child process is stopped. Runs on the main
thread's asyncio loop.

The configuration it gets holds its tenant only (`hub.config.only_tenant`): no other tenant's
server is started, nor are their variables or any key needed. Its client is the tenant by
construction and may use everything of it, unless it is given one of the tenant's keys (`--key`,
or `$MCP_HUB_KEY`): then it has that key's grants and subject (`hub.permissions`), and a key that
is not one of the tenant's is refused at startup. With `--server`, the tenant keeps
that server alone: no other server of it is started either. A `cluster:` section is ignored: the
stdio hub is no replica (docs/cluster.md), it runs its tenant's servers itself. Its data (server
logs, catalog caches) lives apart from a service's on the same file, under `<data_dir>/stdio/`;
its servers' pinned tools are the service's, `<data_dir>/pins/` (`hub.pins`: an admin approves a
change through the service's API or panel; the stdio hub reads them as it starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from mcp.server.stdio import stdio_server

from hub import loops
from hub.config import HubConfig
from hub.errors import Unauthorized
from hub.pins import PinStore
from hub.runtime import Hub
from web.auth import Caller, Keys
from web.facade_scope import Scope

log = logging.getLogger(__name__)

_LINE_LIMIT = 64 * 1024 * 1024  # the longest JSON-RPC line accepted from the client


class _LineReader:
    """The client's lines as `str`, for the SDK's `stdio_server` (`async for line in stdin`);
    a line `take` returns True for is served by the facade's lane instead (`web.mcp_lane_stdio`)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self.take: Callable[[bytes], bool] = lambda line: False

    async def __aiter__(self) -> AsyncIterator[str]:
        while True:
            try:
                line = await self._reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                log.error("a line from the client is longer than %d bytes: closing", _LINE_LIMIT)
                return
            if not line:
                return
            if not self.take(line):
                yield line.decode("utf-8", errors="replace")


class _LineWriter:
    """Writes to the client, for the SDK's `stdio_server`; `flush` waits out back-pressure."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode())

    def write_line(self, line: bytes) -> None:
        """Write one whole line now (the lane's; lines written on one loop never interleave)."""
        self._writer.write(line)

    async def flush(self) -> None:
        await self._writer.drain()


def _divert(fd: int, diversion: int) -> int:
    """Move the wire of `fd` to a private close-on-exec duplicate (returned); `fd` gets `diversion`."""
    private = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.dup2(diversion, fd)
    os.close(diversion)
    return private


@contextlib.asynccontextmanager
async def claimed_stdio() -> AsyncIterator[tuple[_LineReader, _LineWriter] | None]:
    """Claim fds 0 and 1 and serve the wire with asyncio pipe transports; yields None (nothing
    claimed) when either is not a pipe, socket or character device, for the SDK's own path.
    Both descriptors are restored on the way out. Runs on the serving loop."""
    if not all(
        stat.S_ISFIFO(m) or stat.S_ISSOCK(m) or stat.S_ISCHR(m)
        for m in (os.fstat(0).st_mode, os.fstat(1).st_mode)
    ):
        yield None
        return
    loop = asyncio.get_running_loop()
    private_in = _divert(0, os.open(os.devnull, os.O_RDONLY))
    private_out = _divert(1, os.dup(2))
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    # The transports close these file objects; the descriptors stay open (closefd=False) until
    # they have been put back on fds 0 and 1 below.
    wire_in = open(private_in, "rb", buffering=0, closefd=False)  # noqa: SIM115
    wire_out = open(private_out, "wb", buffering=0, closefd=False)  # noqa: SIM115
    read_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), wire_in)
    write_transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, wire_out)
    writer = asyncio.StreamWriter(write_transport, protocol, None, loop)
    try:
        yield _LineReader(reader), _LineWriter(writer)
    finally:
        read_transport.close()
        write_transport.close()
        for fd, private in ((0, private_in), (1, private_out)):
            with contextlib.suppress(OSError):
                os.set_blocking(private, True)
                os.dup2(private, fd)
            os.close(private)


def data_dir(config: HubConfig) -> Path:
    """Where the stdio facade of `tenant` keeps server logs and catalog caches: shared by the
    stdio clients of that tenant, apart from a service running on the same configuration."""
    return Path(config.orchestrator.data_dir) / "stdio"


def run(config: HubConfig, tenant: str, server: str | None = None, key: str | None = None) -> int:
    """Serve `tenant` (or only its `server`) over stdio, to a client with `key`'s grants (None:
    everything of the tenant); the process exit code. `config` should hold `tenant` alone
    (`load_config(..., tenant=tenant)`, with `keys=True` for a `key`); other tenants in it would be
    started by `auto_start`."""
    if tenant not in config.tenants:
        known = ", ".join(config.tenants) or "none"
        print(f"mcp-hub: no tenant {tenant!r} in {config.source} (tenants: {known})", file=sys.stderr)
        return 2
    caller = client_of(config, tenant, key)
    if caller is None:
        refused = f"the key given (--key or $MCP_HUB_KEY) is not a key of tenant {tenant!r}"
        print(f"mcp-hub: {refused}", file=sys.stderr)
        return 2
    if server is not None:
        servers = config.tenants[tenant].servers
        if server not in servers:
            known = ", ".join(servers) or "none"
            print(f"mcp-hub: no server {server!r} in tenant {tenant!r} (servers: {known})", file=sys.stderr)
            return 2
        config = only_server(config, tenant, server)
    try:
        with asyncio.Runner(loop_factory=loops.serving_loop) as runner:
            return runner.run(_serve(config, Scope.of(tenant, server, caller.grants), caller))
    except KeyboardInterrupt:
        return 0


def client_of(config: HubConfig, tenant: str, key: str | None) -> Caller | None:
    """Who the stdio client is: without a key, the tenant itself (everything of it; `stdio` in the
    audit log); with one, that key's caller (its grants, its subject); None if `key` is not a key
    of `tenant` in `config` (unknown, another tenant's, or the tenant has none)."""
    if key is None:
        return Caller(False, tenant, "stdio")
    keys = Keys(config)
    try:
        caller = None if keys.open else keys.authenticate(key)
    except Unauthorized:
        return None
    return caller if caller is not None and caller.tenant == tenant else None


def only_server(config: HubConfig, tenant: str, server: str) -> HubConfig:
    """`config` with `tenant` keeping `server` alone."""
    kept = config.tenants[tenant]
    kept = kept.model_copy(update={"servers": {server: kept.servers[server]}})
    return config.model_copy(update={"tenants": {**config.tenants, tenant: kept}})


async def _serve(config: HubConfig, scope: Scope, caller: Caller) -> int:
    from web.facade import Facade
    from web.mcp_lane_stdio import StdioLane

    loop = asyncio.get_running_loop()
    loops.serve_calls_here()  # (tool calls to Streamable HTTP servers run on this loop)
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    # Alone, even on a cluster's configuration: its one client needs every server of its tenant here.
    hub_ = Hub(config.model_copy(update={"cluster": None}), data_dir=data_dir(config))
    # Its servers' tools are screened against the service's pins, which an admin approves there.
    hub_.pins = PinStore(Path(config.orchestrator.data_dir) / "pins")
    # The stdio client is one session: its instances of per_session servers live until it exits.
    tenant = scope.tenant
    facade = Facade(hub_, lambda ctx: scope, lambda ctx: caller, lambda ctx: "stdio")
    async with claimed_stdio() as claimed, stdio_server(*(claimed or ())) as (read_stream, write_stream):
        lane = None
        if claimed is not None:  # tools/call skips the SDK (web.mcp_calls), once the hub serves
            lane = StdioLane(facade, scope, claimed[1].write_line, caller)
            claimed[0].take = lane.take
        try:
            try:
                await loop.run_in_executor(None, hub_.start)
            except Exception as exc:  # a failing start is said on stderr, with a non-zero exit
                log.exception("the hub could not start")
                print(f"mcp-hub: the hub could not start: {exc}", file=sys.stderr)
                return 1
            outcome = await loop.run_in_executor(None, hub_.start_tenant, tenant)
            for server, state in outcome.items():
                if state not in ("running", "on_demand", "per_session"):
                    log.warning("server %s of tenant %s is %s", server, tenant, state)
            facade.attach(loop)
            if lane is not None:
                lane.serving = True
            with contextlib.suppress(asyncio.CancelledError):
                await facade.server.run(read_stream, write_stream, facade.init_options(scope))
        finally:
            if lane is not None:
                lane.close()
            facade.detach()
            # (Stopping the hub stops every instance too; ending the session first says why.)
            with contextlib.suppress(Exception):
                await asyncio.shield(loop.run_in_executor(None, hub_.end_session, "stdio"))
            await asyncio.shield(loop.run_in_executor(None, hub_.stop))
    return 0
