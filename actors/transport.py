"""`Transport`: how a server is reached — the client of its transport (stdio, sse, http: each in
`actors.upstream`), the stdio child's sandbox, cgroup and watches, and the liveness pings of a
remote server.

A stdio child is watched from the moment it is spawned: its exit, or its stdout closing while it
runs (a line over the limit, a closed pipe), marks the connection lost, saying why (its exit code,
an OOM kill, its last stderr lines).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import mcp.types as types
from mcp import Client
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

import hub
from actors.limits import ServerCgroup
from actors.limits import shim as limits_shim
from actors.models import ServerState
from actors.sandbox import Sandbox, host_support, sandbox_for
from actors.upstream.http1 import Pool
from actors.upstream.httpcall import Channel, HttpChannel, Relayed, SessionWatch
from actors.upstream.rawcall import RawChannel, modern_envelope
from actors.upstream.remote import keep_alive, lean_pool, remote_transport
from actors.upstream.stdio import CappedLog, StdioProcess, child_environment, stdio_transport
from hub import timeouts
from hub.config import redact

if TYPE_CHECKING:
    from actors.server import ServerSupervisor


class Transport:
    """The way to one server, for each start of its connection.

    Every method runs on the server's loop (thread `server-<tenant>-<name>`).
    """

    def __init__(self, supervisor: ServerSupervisor) -> None:
        self._supervisor = supervisor
        self._spawned: RawChannel | None = None  # the hub's own channel to the child last spawned
        self._cgroup: ServerCgroup | None = None  # the cgroup of the child last spawned (`actors.limits`)
        self._watches: set[asyncio.Task[None]] = set()  # of the children spawned: exit, stdout
        self._pool: Pool | None = None  # an http server's: the keep-alive pool of the hub's own channel
        self._watch: SessionWatch | None = None  # the session id its SDK client sends
        self._lean: HttpChannel | None = None  # the hub's own channel to it, once up

    def sandbox(self) -> Sandbox | None:
        """The sandbox of the next start of a stdio server (None: unsandboxed).

        Raises:
            SandboxError: it cannot be built, or is required and this host cannot give it.
        """
        supervisor = self._supervisor
        config = supervisor.config
        if config.transport != "stdio":
            return None
        return sandbox_for(supervisor.sandbox_site, supervisor.tenant, config.sandbox, config.cwd)

    async def client_for(
        self, errlog: CappedLog, stack: contextlib.AsyncExitStack, sandbox: Sandbox | None
    ) -> Client:
        """The SDK client of the next connection, over the configured transport (not yet entered)."""
        self._spawned = None  # (from here on, a child of an earlier connection speaks for nobody)
        supervisor = self._supervisor
        config = supervisor.config
        if config.transport == "stdio":
            assert config.command is not None
            layers = (supervisor.tenant_env, config.env, supervisor.user_env)  # (the user's values win)
            env = child_environment(sandbox.environment if sandbox else {}, *layers)
            if sandbox is None and supervisor.sandbox_site is not None and config.sandbox.enabled:
                errlog.note(f"running unsandboxed: {host_support().detail}")
            self._cgroup = self._confinement()
            if self._cgroup is not None:
                stack.callback(self._cgroup.remove)  # (once the process is gone: the stack unwinds)
            target: Any = stdio_transport(
                config.command,
                config.args,
                env,
                config.cwd,
                errlog,
                supervisor.registry,
                self._on_spawn,
                sandbox,
                limits_shim(self._cgroup, config.sandbox.limits),
                supervisor.gate,
            )
        else:
            self._pool = lean_pool(config, errlog)
            self._watch = SessionWatch() if self._pool is not None else None
            if self._pool is not None:
                stack.callback(self._close_lean)
            target = await remote_transport(config, errlog, stack, self._watch)
        relay = supervisor.relay
        return Client(
            target,
            mode=config.protocol,  # type: ignore[arg-type]
            cache=None,
            message_handler=supervisor.discovery.on_message,
            sampling_callback=relay.on_sampling,
            elicitation_callback=relay.on_elicitation,
            logging_callback=relay.on_log,
            log_level="debug",  # 2026-07-28 servers log only for requests that opt in
            client_info=types.Implementation(name="mcp-hub", version=hub.__version__),
        )

    def open_channel(self, client: Client) -> Channel | None:
        """The hub's own channel for tool calls to a stdio or Streamable HTTP server, set up for
        the era just negotiated (None: calls take the SDK's client)."""
        supervisor = self._supervisor
        modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
        channel: Channel | None = None
        if supervisor.config.transport == "stdio" and self._spawned is not None:
            channel = self._spawned
            channel.on_log = supervisor.relay.on_raw_log
        elif self._pool is not None:
            relay = supervisor.relay
            relayed = Relayed(relay.on_raw_log, supervisor.discovery.on_message, relay.answer_request)
            watch = None if modern else self._watch
            channel = self._lean = HttpChannel(
                self._pool, client.protocol_version, watch, relayed, lambda: supervisor.listing.catalog
            )
        if channel is not None:
            channel.envelope = modern_envelope(client.protocol_version) if modern else None
        return channel

    def _close_lean(self) -> None:
        """The connection ended: the hub's own channel to the remote server closes with it."""
        if self._lean is not None:
            self._lean.close()
        elif self._pool is not None:
            self._pool.close()
        self._lean = self._pool = self._watch = None

    async def ping(self, client: Client) -> None:
        """Liveness of a remote (http/sse) server on a handshake-era connection: a failed ping is a crash.

        A stdio server's death is seen at once from its process; 2026-07-28 has no ping, so a
        remote modern server is found dead by the next call.
        """
        if (
            self._supervisor.config.transport == "stdio"
            or client.protocol_version in MODERN_PROTOCOL_VERSIONS
        ):
            return
        await keep_alive(client, self._supervisor.mark_lost)

    def _confinement(self) -> ServerCgroup | None:
        """The cgroup of the next start of this stdio server (None: it needs none, or the host
        gives the hub no cgroups: see `actors.limits`).

        Raises:
            LimitError: it cannot be made or its limits set.
        """
        supervisor = self._supervisor
        site = supervisor.sandbox_site
        cgroups = site.cgroups if site is not None else None
        limits = supervisor.config.sandbox.limits
        if cgroups is None or not cgroups.needed(supervisor.tenant, limits):
            return None
        return cgroups.server(supervisor.tenant, supervisor.config.name, limits)

    def _killed_for_memory(self, group: ServerCgroup | None) -> str | None:
        """ "killed: out of memory (limit 256 MB)" if the kernel's OOM killer killed a process of
        this start's cgroup, naming the limit reached (its own, its tenant's, or the host's)."""
        if group is None or not group.out_of_memory():
            return None
        supervisor = self._supervisor
        own = supervisor.config.sandbox.limits.memory_mb
        site = supervisor.sandbox_site
        cgroups = site.cgroups if site is not None else None
        quotas = cgroups.quotas(supervisor.tenant) if cgroups is not None else None
        if own is not None and group.hit_own_memory_limit():
            return f"killed: out of memory (limit {own} MB)"
        if quotas is not None and quotas.max_memory_mb is not None:
            return f"killed: out of memory (tenant limit {quotas.max_memory_mb} MB, quotas.max_memory_mb)"
        return "killed: out of memory"

    def _on_spawn(self, child: StdioProcess) -> None:
        supervisor = self._supervisor
        supervisor.set_state(ServerState.STARTING, pid=child.pid)
        self._spawned = child.channel
        group = self._cgroup

        async def watch() -> None:
            await child.exited.wait()
            reason = f"process {child.pid} exited with code {child.process.returncode}"
            killed = self._killed_for_memory(group)
            if killed is not None:
                reason = f"{killed}: {reason}"
            words = await child.last_words()
            if words:  # (an npm 404, a Python traceback: often the only clue, and in the log alone)
                said = redact(
                    " | ".join(words), supervisor.tenant_env, supervisor.config.env, supervisor.user_env
                )
                reason += f"; its last stderr lines: {said}"
            if self._spawned is child.channel:  # (a child stopped before a restart: its run is over)
                supervisor.mark_lost(reason)

        async def watch_stdout() -> None:
            """The hub reads no more of the child's stdout: unless the child exits (then `watch`
            says why), the channel is broken while it runs, which is a crash too."""
            await child.stdout_closed.wait()
            if child.broken is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(child.exited.wait(), timeouts.EXIT_GRACE)
                if child.exited.is_set():
                    return
            if self._spawned is child.channel:
                supervisor.mark_lost(child.broken or "closed its stdout but kept running")

        loop = asyncio.get_running_loop()
        for task in (loop.create_task(watch()), loop.create_task(watch_stdout())):
            self._watches.add(task)
            task.add_done_callback(self._watches.discard)
