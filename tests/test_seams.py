"""The private names of the `mcp` SDK and of Tornado that the hub relies on (`hub/seams.py`) still
exist in the installed versions: an upgrade that removes one fails here, naming it.

Fast: no process, no server; a Tornado request handler is built on a socket pair.
"""

from __future__ import annotations

import asyncio
import importlib
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import tornado.httputil
import tornado.iostream
import tornado.web
from mcp.server import Server
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from tornado.http1connection import HTTP1Connection

_HOW_TO = "see hub/seams.py: read its use of the name against the new version, then fix the seam or the pin"


def _seams():  # type: ignore[no-untyped-def]
    """`hub.seams`, or a failure naming what its imports no longer find."""
    try:
        return importlib.import_module("hub.seams")
    except ImportError as exc:
        pytest.fail(f"hub/seams.py no longer imports: {exc} ({_HOW_TO})")


@contextmanager
def _handler() -> Iterator[tornado.web.RequestHandler]:
    """A Tornado request handler on an HTTP/1 connection over a socket pair (closed after)."""
    a, b = socket.socketpair()
    connection = HTTP1Connection(tornado.iostream.IOStream(a), is_client=False)
    try:
        request = tornado.httputil.HTTPServerRequest(
            start_line=tornado.httputil.RequestStartLine("GET", "/", "HTTP/1.1"),
            headers=tornado.httputil.HTTPHeaders({"Host": "hub"}),
            connection=connection,
        )
        yield tornado.web.RequestHandler(tornado.web.Application(), request)
    finally:
        connection.stream.close()
        b.close()


def _instance_names(owner: type) -> set[str]:
    """The attributes a fresh instance of `owner` has, built the way the hub gets one."""
    makers: dict[type, Callable[[], object]] = {
        StreamableHTTPSessionManager: lambda: StreamableHTTPSessionManager(app=Server("seams")),
        StreamableHTTPServerTransport: lambda: StreamableHTTPServerTransport("seams", idle_timeout=1.0),
    }
    if owner in makers:
        return set(vars(makers[owner]()))

    async def tornado_names() -> set[str]:
        with _handler() as handler:
            if owner is tornado.web.RequestHandler:
                return set(vars(handler))
            if owner is HTTP1Connection:
                return set(vars(handler.request.connection))
        raise AssertionError(f"tests/test_seams.py cannot build a {owner!r}: teach `_instance_names`")

    return asyncio.run(tornado_names())


def test_every_private_name_the_seams_use_still_exists() -> None:
    """Each (owner, name) in `hub.seams.PRIVATE_NAMES` is found where the seam expects it."""
    seams = _seams()
    missing = []
    for private in seams.PRIVATE_NAMES:
        owner = private.owner
        if private.where in ("module", "class"):
            found = hasattr(owner, private.name)
        elif private.where == "annotation":
            found = any(private.name in getattr(k, "__annotations__", {}) for k in owner.__mro__)
        else:
            found = private.name in _instance_names(owner)
        if not found:
            missing.append(f"{private} ({private.where})")
    assert not missing, f"the installed SDK/Tornado no longer has: {', '.join(missing)} ({_HOW_TO})"


def test_the_list_names_both_libraries() -> None:
    """The list is what the seams use: the SDK's and Tornado's names, each once."""
    seams = _seams()
    names = [str(p) for p in seams.PRIVATE_NAMES]
    assert len(names) == len(set(names))
    assert any(n.startswith("mcp.") for n in names)
    assert any(n.startswith("tornado.") for n in names)
    assert "mcp.server.streamable_http_manager.StreamableHTTPSessionManager._server_instances" in names
    assert "tornado.web.RequestHandler._finished" in names


def test_a_removed_name_is_named() -> None:
    """What a user of the test sees when an upgrade removes a name: the name itself."""
    seams = _seams()
    gone = seams.PrivateName(StreamableHTTPServerTransport, "_no_such_name", "instance")
    assert "_no_such_name" not in _instance_names(StreamableHTTPServerTransport)
    assert str(gone) == "mcp.server.streamable_http.StreamableHTTPServerTransport._no_such_name"


def test_the_seams_behave_as_the_library_does() -> None:
    """The Tornado readers agree with what the handler did; the idle hold counts like the SDK."""
    seams = _seams()

    async def check() -> None:
        with _handler() as handler:
            assert not seams.is_finished(handler) and not seams.headers_written(handler)
            handler.set_status(404)
            assert seams.reason(handler) == "Not Found"
            seams.no_transforms(handler)
            seams.set_nodelay(handler)
        manager = StreamableHTTPSessionManager(app=Server("seams"))
        assert seams.session_transport(manager, "nope") is None
        assert seams.session_transport(manager, None) is None

    asyncio.run(check())


def test_the_sdk_pin_is_the_tested_minor() -> None:
    """setup.cfg pins `mcp` and `tornado` to the minor versions installed here (the ones read)."""
    from importlib.metadata import version
    from pathlib import Path

    setup = (Path(__file__).parent.parent / "setup.cfg").read_text()
    for name in ("mcp", "tornado"):
        major, minor = version(name).split(".")[:2]
        pin = f"{name} >= {major}.{minor}, < {major}.{int(minor) + 1}"
        assert pin in setup, f"setup.cfg should pin `{pin}` (installed {version(name)}; see hub/seams.py)"
