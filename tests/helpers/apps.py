"""Apps: a `plugins_dir` with good and bad apps, raw HTTP requests, WebSocket gateway clients."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shutil
from pathlib import Path
from typing import Any

import tornado.httpclient
import tornado.websocket
from conftest import ROOT

ADMIN = "admin-key-0123456789"
ACME = "acme-key-0123456789"


def make_plugins(tmp_path: Path) -> Path:
    plugins = tmp_path / "plugins"
    shutil.copytree(ROOT / "plugins" / "examples", plugins / "examples")
    good = plugins / "hello"
    good.mkdir()
    (good / "manifest.json").write_text(
        json.dumps({"id": "hello", "name": "Hello", "tenants": ["acme"], "config": {"greeting": "hi"}})
    )
    (good / "index.html").write_text("<html><head><title>x</title></head><body>hello</body></html>")
    (good / "app.js").write_text("console.log('hello');")
    (good / "sub").mkdir()
    (good / "sub" / "data.json").write_text('{"ok": true}')
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    os.symlink(tmp_path / "secret.txt", good / "escape.txt")
    for name, manifest in {
        "broken": "{not json",
        "noname": json.dumps({"id": "noname"}),
        "mismatch": json.dumps({"id": "other", "name": "x"}),
        "badentry": json.dumps({"id": "badentry", "name": "x", "entry": "../../secret.txt"}),
    }.items():
        (plugins / name).mkdir()
        (plugins / name / "manifest.json").write_text(manifest)
    return plugins


def raw_get(hub: Any, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A GET of `path` exactly as written (no client-side normalisation of the path)."""
    host, port = hub.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


async def connect(hub: Any, app: str, tenant: str, key: str | None = ACME, origin: str | None = None):
    url = hub.url.replace("http://", "ws://") + f"/ws/app/{app}/{tenant}" + (f"?token={key}" if key else "")
    headers = {"Origin": origin} if origin else {}
    request = tornado.httpclient.HTTPRequest(url, headers=headers)
    return await tornado.websocket.websocket_connect(request, max_message_size=64 * 1024 * 1024)


async def close(ws: Any) -> None:
    """Close and wait for the server's close frame (so no socket is left to the garbage collector)."""
    ws.close()
    with contextlib.suppress(TimeoutError):
        while await asyncio.wait_for(ws.read_message(), 10) is not None:
            pass


async def frame(ws: Any, timeout: float = 30) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.read_message(), timeout)
    assert message is not None, "the connection closed"
    return json.loads(message)


async def until(ws: Any, kind: str, frame_id: Any = None) -> dict[str, Any]:
    while True:
        message = await frame(ws)
        if message["type"] == kind and (frame_id is None or message.get("id") == frame_id):
            return message
