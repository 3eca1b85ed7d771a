"""Shared fixtures: a hub on a real configuration, a test MCP server, and leak checks.

Every test's hub gives its tenants an environment marker (`MCP_HUB_TEST_MARK`), which every
child process inherits; after each test, no process carrying the marker may be left, and no
actor may be alive.

Helpers that more than one test file uses are here or in the `helpers` package (tests/helpers/,
one module per concern); the fixtures here import it lazily, since it imports this module. A test
file never imports from another test file (tests/test_setup.py checks).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import pykka
import pytest
import yaml

from hub.config import HubConfig, parse_config
from hub.runtime import Hub

ROOT = Path(__file__).resolve().parent.parent
# Hubs under test listen where their test says, whatever the developer's shell exports.
for _name in ("MCP_HUB_HOST", "MCP_HUB_PORT", "MCP_HUB_MCP_PORT", "MCP_HUB_WS_PORT"):
    os.environ.pop(_name, None)
SERVERS_DIR = ROOT / "tests" / "servers"
TEST_SERVER = str(SERVERS_DIR / "testserver.py")
MARK = f"mcp-hub-test-{uuid.uuid4().hex[:12]}"


def marked_pids(mark: str = MARK) -> list[int]:
    """Pids of live processes whose environment carries `mark` (children of hubs under test)."""
    pids = []
    needle = f"MCP_HUB_TEST_MARK={mark}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read() and not process_gone(int(entry)):
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


def server_pids(mark: str = MARK) -> list[int]:
    """`marked_pids`, less the bwrap processes around sandboxed servers: the servers' own processes
    (and their children)."""
    pids = []
    for pid in marked_pids(mark):
        try:
            if not os.readlink(f"/proc/{pid}/exe").endswith("/bwrap"):
                pids.append(pid)
        except OSError:
            continue
    return pids


def process_gone(pid: int) -> bool:
    """Whether process `pid` has exited (a zombie not yet reaped by its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def host_pid(answer: Mapping[str, Any]) -> int:
    """The pid, as this host sees it, of the test server that answered `answer` (its `pid` tool's
    structured content): sandboxed, a server has its own pid namespace and pid."""
    if answer["pid_namespace"] == os.readlink("/proc/self/ns/pid"):
        return int(answer["pid"])
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/ns/pid") == answer["pid_namespace"]:
                with open(f"/proc/{entry}/status") as f:
                    nspid = next(line for line in f if line.startswith("NSpid:")).split()
                if int(nspid[-1]) == answer["pid"]:
                    return int(entry)
        except (OSError, StopIteration):
            continue
    raise LookupError(f"no process is {answer}")


def server_process(pid: int) -> int:
    """The pid of a stdio server's own process, given the pid the hub reports for it: bwrap's when
    sandboxed (bwrap → its init → the server), else the server's."""
    for _ in range(2):
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = f.read().split()
        except OSError:
            return pid
        if not children or not os.readlink(f"/proc/{pid}/exe").endswith("bwrap"):
            return pid
        pid = int(children[0])
    return pid


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds: only for outside facts with no event (processes gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def server(*flags: str, **settings: object) -> dict[str, object]:
    """The config of a test server run with `flags` (see tests/servers/testserver.py)."""
    return {"command": "python", "args": [TEST_SERVER, *flags], "sandbox": binds(SERVERS_DIR), **settings}


def binds(*paths: str | os.PathLike[str], mode: str = "ro", **sandbox: object) -> dict[str, object]:
    """A server's `sandbox` setting that shows it `paths` (a sandboxed server sees only the system,
    the hub's Python, its tenant's home and what its configuration binds)."""
    return {"binds": [{"path": str(path), "mode": mode} for path in paths], **sandbox}


def config_of(tenants: dict[str, dict[str, object]], **sections: object) -> HubConfig:
    """A validated config from python data; each tenant gets the leak marker in its env."""
    data: dict[str, object] = {"tenants": {}}
    for name, tenant in tenants.items():
        tenant = dict(tenant)
        tenant["env"] = {**dict(tenant.get("env", {})), "MCP_HUB_TEST_MARK": MARK}  # type: ignore[arg-type]
        data["tenants"][name] = tenant  # type: ignore[index]
    orchestrator = {"startup_timeout": 20, "backoff_initial": 0.1, "backoff_max": 0.5, "shutdown_grace": 2}
    orchestrator.update(sections.pop("orchestrator", {}))  # type: ignore[arg-type]
    data["orchestrator"] = orchestrator
    data.update(sections)
    return parse_config(yaml.safe_dump(data))


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Start hubs on a config (see `config_of`); all are stopped at the end of the test."""
    hubs: list[Hub] = []

    def make(tenants: dict[str, dict[str, object]], **sections: object) -> Hub:
        hub = Hub(config_of(tenants, **sections), data_dir=tmp_path / f"hub{len(hubs)}")
        hubs.append(hub)
        return hub.start()

    yield make
    for hub in hubs:
        hub.stop()


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """After each test: no actor alive, no child process of any hub left."""
    yield
    alive = pykka.ActorRegistry.get_all()
    pykka.ActorRegistry.stop_all(timeout=30)
    assert not alive, f"actors outlived the test: {alive}"
    assert wait_until(lambda: not marked_pids(), 5), f"child processes outlived the test: {marked_pids()}"


SETUP = "bash tests/setup.sh"
NODE_MODULES = Path(os.environ.get("MCP_HUB_NODE_MODULES") or ROOT / "tests" / ".deps" / "node_modules")
CHROMIUM = os.environ.get("MCP_HUB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MCP_HUB_CHROMEDRIVER", "/usr/bin/chromedriver")


def missing(what: str) -> NoReturn:
    """Fail the test with one line naming what is missing and the step that installs it."""
    pytest.fail(f"{what} is missing: `{SETUP}` installs it (see README, Tests)", pytrace=False)


def needs_bwrap() -> None:
    """Fail with one line unless this host can sandbox servers (bubblewrap, see docs/security.md):
    for tests whose outcome depends on the sandbox, which is on by default."""
    from actors.sandbox import host_support

    support = host_support()
    if not support.available:
        missing(f"a working bubblewrap, `bwrap` ({support.detail})")


def needs_npx() -> None:
    """Fail with one line unless npm's `npx` is on the PATH, for tests whose servers it starts."""
    if shutil.which("npx") is None:
        missing("npm's `npx` (Node.js 20 with npm)")


def node_package(name: str, *path: str) -> Path:
    """A file of npm package `name` installed by tests/setup.sh (Node.js is needed to run it)."""
    entry = NODE_MODULES.joinpath(name, *path)
    if shutil.which("node") is None:
        missing("Node.js (`node`)")
    if not entry.exists():
        missing(f"npm package {name} ({entry})")
    return entry


CLUSTER_SECRET = "test-cluster-secret-" + "0123456789abcdef" * 2  # (fixed: every replica of a test shares it)


def cluster_section(url: str, replica: str | None, heartbeat: float, **more: object) -> dict[str, object]:
    """A `cluster:` section for a replica of a test's cluster on the Redis at `url`."""
    section: dict[str, object] = {"redis_url": url, "secret": CLUSTER_SECRET, "heartbeat": heartbeat}
    if replica is not None:
        section["replica_id"] = replica
    return {**section, **more}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[str]:
    """A real `redis-server` (Debian's) on a free loopback port, without persistence, in a tmp
    dir; its URL. Stopped (and its files gone with tmp_path) at the end of the test."""
    with running_redis(tmp_path) as url:
        yield url


@contextlib.contextmanager
def running_redis(tmp_path: Path) -> Iterator[str]:
    """`redis_server`, for fixtures of a wider scope."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server (Debian's redis-server)")
    with socket.socket() as probe:  # a free port (redis-server cannot be told to pick one)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tmp_path / "redis"
    folder.mkdir()
    argv = [binary, "--save", "", "--appendonly", "no", "--port", str(port), "--bind", "127.0.0.1"]
    log = (folder / "redis.log").open("w")
    proc = subprocess.Popen([*argv, "--dir", str(folder)], stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return proc.poll() is not None  # (exited: stop waiting, fail below)

    try:
        assert wait_until(answers, 10) and proc.poll() is None, (folder / "redis.log").read_text()
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
        log.close()


# As config/haproxy.cfg's backend: a tool call without an Idempotency-Key gets one, and keyed
# requests are sent again when their replica died.
_RETRIES = (
    "    option http-buffer-request\n    retries 2\n    option redispatch 1\n"
    "    retry-on conn-failure empty-response\n"
    "    acl tool_call path_beg /api/tools/\n    acl tool_call path /mcp\n"
    "    acl tool_call path_reg ^/tenants/[^/]+/(servers/[^/]+/)?mcp$\n"
    "    http-request set-header Idempotency-Key %[uuid()] if METH_POST tool_call"
    " !{ req.hdr(idempotency-key) -m found }\n"
    "    http-request disable-l7-retry unless { req.hdr(idempotency-key) -m found }\n"
)


@contextlib.contextmanager
def running_haproxy(tmp_path: Path, backends: Iterable[str], balance: str = "roundrobin") -> Iterator[str]:
    """A real HAProxy (Debian's) on a free loopback port, round robin over `backends` (base URLs),
    per request and with no stickiness (or `balance first`: all to the first that is up): its URL.
    As config/haproxy.cfg, a tool call (REST or the MCP facade) without an `Idempotency-Key` gets
    one, and a request with one whose replica closed its connection without answering is sent
    again to another one."""
    binary = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
    if binary is None:
        missing("haproxy (Debian's haproxy)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    servers = "\n".join(
        f"    server b{i} {url.split('://', 1)[1].rstrip('/')} check inter 1s"
        for i, url in enumerate(backends)
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 5m\n    timeout server 5m\n"
        "    timeout tunnel 1h\n"
        f"frontend front\n    bind 127.0.0.1:{port}\n    default_backend hubs\n"
        f"backend hubs\n    balance {balance}\n    option httpchk GET /health\n{_RETRIES}{servers}\n"
    )
    log = (tmp_path / "haproxy.log").open("w")
    proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return proc.poll() is not None

    try:
        assert wait_until(answers, 10) and proc.poll() is None, (tmp_path / "haproxy.log").read_text()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(binary) is None:
            missing(f"{binary} (Debian's chromium and chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for driver.get_log
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def initialize_request(request_id: int = 1) -> dict[str, Any]:
    """A 2025-11-25 `initialize` request, as a raw JSON-RPC client sends it."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }


def dedent(text: str) -> str:
    """`textwrap.dedent`, for inline YAML."""
    return textwrap.dedent(text)


__all__ = [
    "MARK",
    "NODE_MODULES",
    "ROOT",
    "SERVERS_DIR",
    "TEST_SERVER",
    "binds",
    "config_of",
    "host_pid",
    "initialize_request",
    "marked_pids",
    "missing",
    "needs_bwrap",
    "node_package",
    "process_gone",
    "server",
    "server_pids",
    "server_process",
    "sys",
    "wait_until",
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start `python -m hub serve` on a configuration (its tenants started); stopped cleanly after."""
    from helpers.served import start_hub, stop_hub
    from helpers.served import write_config as write_service_config

    started = []

    def run(tenants: dict[str, Any], **sections: Any):
        hub = start_hub(write_service_config(tmp_path, tenants, **sections), tmp_path)
        started.append(hub)
        for tenant in tenants:
            key = sections.get("auth", {}).get("admin_keys", [None])[0]
            assert hub.post(f"/api/tenants/{tenant}/start", key=key).status == 200
        return hub

    yield run
    for hub in started:
        assert stop_hub(hub) == 0


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start `python -m hub serve` on a configuration (see `helpers.served.write_config`) with
    further command-line arguments; each must exit 0 on SIGTERM at the end of the test."""
    from helpers.served import ServedHub, start_hub, stop_hub, write_config

    started: list[ServedHub] = []

    def run(tenants: dict[str, Any], *extra: str, **sections: Any) -> ServedHub:
        served = start_hub(write_config(tmp_path, tenants, **sections), tmp_path, *extra)
        started.append(served)
        return served

    yield run
    for served in started:
        assert stop_hub(served) == 0, served.log()[-3000:]
