"""A TCP relay with no logic at all: every byte from a client goes to the target port and back,
as it comes (asyncio protocols, one upstream connection per client connection). The floor of what
one more process on the path of a call costs (two more loopback hops and a Python process's
wake-ups), against which `bench_remote.py` reads the hub's own cost.

    python bench/servers/tcp_relay.py LISTEN_PORT TARGET_PORT
"""

from __future__ import annotations

import asyncio
import sys


class _Upstream(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class _Client(asyncio.Protocol):
    def __init__(self, target: int) -> None:
        self.target = target
        self.upstream: asyncio.Transport | None = None
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.opening = asyncio.ensure_future(self._open(transport))  # (held while it runs)

    async def _open(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        upstream, _ = await loop.create_connection(lambda: _Upstream(transport), "127.0.0.1", self.target)  # type: ignore[arg-type]
        self.upstream = upstream
        for data in self.early:
            upstream.write(data)

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.early.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def _main(listen: int, target: int) -> None:
    server = await asyncio.get_running_loop().create_server(lambda: _Client(target), "127.0.0.1", listen)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2])))
