"""`python -m hub serve`: the hub as a service, one flat script from start to stop.

Order: validate the configuration, refuse an open hub on a non-loopback address, bind every
listener (a port in use exits 1 before any server starts), start the actor tree, serve until
SIGTERM or SIGINT, then drain: new requests get 503, calls in flight get up to
`orchestrator.shutdown_grace` to finish, every server and child process is stopped, exit 0.
SIGHUP (and, with `--reload`, any change of the file) re-reads the configuration file and
applies it; an invalid one changes nothing. SIGUSR1 logs every thread's stack (`hub.log`).
Runs on the main thread, which also runs the web loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import tornado.httpserver

import hub
from hub import listeners, loops
from hub.cluster import ClusterUnavailable
from hub.config import HubConfig
from hub.credentials import startup_problems
from hub.errors import ConfigError
from hub.log import hide_keys, install_stack_dump
from hub.oauth_provider import issuer_problem
from hub.runtime import Hub

log = logging.getLogger(__name__)

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


def serve(config: HubConfig, plan: listeners.Plan, watch: bool = False) -> int:
    """Run the service on `plan`'s host and listeners until a stop signal; the process exit code."""
    host = plan.host
    if not config.has_keys and host not in LOOPBACK:
        print(
            f"mcp-hub: refusing to serve on {host}: no keys are configured, so the hub would be open "
            "to anyone who can reach it. Configure auth.admin_keys or tenant api_keys, or listen on "
            f"127.0.0.1 (the host comes from {plan.host_origin}).",
            file=sys.stderr,
        )
        return EXIT_USAGE
    refused = issuer_problem(config, host)
    if refused is not None:
        print(f"mcp-hub: {refused}", file=sys.stderr)
        return EXIT_USAGE
    unstorable = startup_problems(config)  # (per_user servers' values need HUB_SECRET_KEY)
    if unstorable:
        print(f"{config.source}: invalid configuration:", *unstorable, sep="\n  ", file=sys.stderr)
        return EXIT_USAGE
    from web.connections import raise_open_files_limit

    before, after = raise_open_files_limit()  # before binding: each connection is a descriptor
    if after != before:
        log.info("open files limit raised from %d to %d", before, after)
    bound = listeners.bind(plan)
    if isinstance(bound, str):
        print(f"mcp-hub: {bound}", file=sys.stderr)
        return EXIT_RUNTIME
    if not config.has_keys:
        log.warning("no keys configured: the hub is open to every local user (loopback only)")
    try:
        with asyncio.Runner(loop_factory=loops.serving_loop) as runner:
            return runner.run(_serve(config, plan, bound, watch))
    except KeyboardInterrupt:
        return EXIT_OK
    except ClusterUnavailable as exc:  # (nothing started; the hub stopped cleanly)
        print(f"mcp-hub: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


async def _serve(
    config: HubConfig,
    plan: listeners.Plan,
    bound: list[list[socket.socket]],
    watch: bool = False,
) -> int:
    from web.app import app_registry, make_app
    from web.connections import ConnectionBudget
    from web.listener import EdgeServer
    from web.mcp_endpoint import McpEndpoint
    from web.mcp_fast import FastLane
    from web.sizes import HEADER_READ_BYTES, SizeGuard

    seen = _stamp(config.source)  # before anything else: a change from now on is a change
    executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="web-blocking")
    hub_ = Hub(config)
    hide_keys(_key_values(hub_))
    if hub_.cluster is not None and config.cluster is not None:  # where the others forward requests
        main = next(s for listener, s in zip(plan.listeners, bound, strict=True) if listener.only is None)
        hub_.cluster.advertise(config.cluster.advertised(plan.host, main[0].getsockname()[1]))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    servers: list[tornado.httpserver.HTTPServer] = []
    apps = []
    # Signals first: from here on, SIGTERM or SIGINT at any moment is a graceful stop.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(executor, _reload, hub_))
    restore_sigusr1 = install_stack_dump(signal.SIGUSR1)
    host = plan.host
    mcp = McpEndpoint(hub_, host)
    mcp_task = asyncio.create_task(mcp.run())
    try:
        await loop.run_in_executor(executor, hub_.start)
        await loop.run_in_executor(executor, hub_.users.health)  # (logs values that do not decrypt)
        await mcp.ready()
        gateway = config.gateway
        body_limit = max(2 * gateway.max_body_bytes, 1024 * 1024)
        apps_ = app_registry(hub_)
        budget = ConnectionBudget.of(gateway.max_connections, gateway.max_connections_per_client)
        for listener, sockets in zip(plan.listeners, bound, strict=True):
            only = listener.only
            app = make_app(hub_, executor, mcp=mcp, apps=apps_, only=only, bound_host=host)
            server: tornado.httpserver.HTTPServer = EdgeServer(
                SizeGuard(FastLane(app) if only in (None, "mcp") else app, body_limit),  # (MCP routes)
                max_body_size=body_limit,
                max_header_size=HEADER_READ_BYTES,
                idle_connection_timeout=gateway.idle_connection_timeout,
                body_timeout=gateway.body_timeout,
                budget=budget,
            )
            server.add_sockets(sockets)
            servers.append(server)
            apps.append(app)
            actual, what = sockets[0].getsockname()[1], f" ({only} listener)" if only else ""
            print(
                f"MCP Hub {hub.__version__} listening on http://{_url_host(host)}:{actual}{what}", flush=True
            )
        watcher = asyncio.create_task(_watch(hub_, executor, seen)) if watch else None
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
        log.info(
            "stopping: new requests get 503; calls in flight get %gs", config.orchestrator.shutdown_grace
        )
        for app in apps:
            app.settings["draining"] = True
    finally:
        mcp.stop()
        await loop.run_in_executor(executor, hub_.stop)
        for server in servers:
            server.stop()
            await server.close_all_connections()
        await mcp_task
        executor.shutdown(wait=False, cancel_futures=True)
        if servers:
            budget.close()
        restore_sigusr1()
    log.info("stopped")
    return EXIT_OK


def _key_values(hub_: Hub) -> Callable[[], tuple[str, ...]]:
    """The keys of `hub_`'s configuration as it is now (after a reload too), for the log to hide;
    the same tuple while the configuration does not change."""
    cache: list[Any] = [None, ()]

    def keys() -> tuple[str, ...]:
        config = hub_.config
        if cache[0] is not config:
            tenant_keys = (k.key for t in config.tenants.values() for k in t.api_keys)
            cluster = (config.cluster.secret, config.cluster.redis_url) if config.cluster is not None else ()
            cache[:] = [config, tuple(k.reveal() for k in (*config.auth.admin_keys, *tenant_keys, *cluster))]
        return cache[1]

    return keys


def _stamp(path: str) -> tuple[float, int] | None:
    """The file's modification time and size, or None if it cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime, info.st_size


async def _watch(hub_: Hub, executor: ThreadPoolExecutor, seen: tuple[float, int] | None) -> None:
    """`--reload`: apply the configuration file whenever it changes from `seen` (polling its mtime
    and size every second: no dependency, and it works on every file system, network mounts too)."""
    path = hub_.config.source
    while True:
        await asyncio.sleep(1.0)
        now = _stamp(path)
        if now is not None and now != seen:
            seen = now
            log.info("%s changed: reloading", path)
            await asyncio.get_running_loop().run_in_executor(executor, _reload, hub_)


def _reload(hub_: Hub) -> None:
    """SIGHUP or `--reload` (on a worker thread): re-read and apply the configuration file, or say why not."""
    try:
        hub_.reload_file()
        if hub_.replica is not None:  # (every replica reloads its copy of the file: `hub.replica`)
            hub_.replica.announce("reload")
    except ConfigError as exc:
        log.error(
            "the configuration was not reloaded; the old one stays in force:\n%s",
            "\n".join(exc.problems),
        )
    except Exception:  # isolation: a failed reload must not take the service down
        log.exception("reloading failed")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run(args: argparse.Namespace, config: HubConfig) -> int:
    """`serve` with the host and ports of the command line, else the environment, else `config`."""
    try:
        plan = listeners.plan(args, config, os.environ)
    except listeners.ListenError as exc:
        print(f"mcp-hub: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return serve(config, plan, watch=args.reload)
