"""Apps: manifests, static hosting with no way out of an app's folder, and the WebSocket gateway."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from conftest import server, wait_until
from helpers.apps import ACME, ADMIN, close, connect, frame, make_plugins, raw_get, until
from helpers.served import start_hub, stop_hub, write_config


@pytest.fixture
def apps_hub(tmp_path: Path):
    plugins = make_plugins(tmp_path)
    config = write_config(
        tmp_path,
        {"acme": {"api_keys": [ACME], "servers": {"s": server()}}, "default": {"servers": {"s": server()}}},
        auth={"admin_keys": [ADMIN]},
        gateway={"plugins_dir": str(plugins)},
    )
    hub = start_hub(config, tmp_path)
    assert hub.post("/api/tenants/acme/start", key=ADMIN).status == 200
    yield hub
    assert stop_hub(hub) == 0


def test_manifests_are_validated_and_bad_ones_skipped(apps_hub) -> None:
    listed = apps_hub.get("/api/apps", key=ADMIN).body
    assert {a["id"] for a in listed["apps"]} == {"hello", "sql-console"}
    problems = "\n".join(listed["problems"])
    assert "broken/manifest.json: cannot read" in problems
    assert "noname/manifest.json: name: 'name' is required" in problems
    assert "mismatch/manifest.json: id: 'other' differs from the app's folder name 'mismatch'" in problems
    assert "badentry/manifest.json: entry:" in problems
    # A tenant key sees only the apps of its tenant, and never the problems.
    acme = apps_hub.get("/api/apps", key=ACME).body
    assert [a["id"] for a in acme["apps"]] == ["hello"] and "problems" not in acme
    assert apps_hub.get("/api/apps/hello", key=ACME).body["url"] == "/apps/hello"
    assert apps_hub.get("/api/apps/sql-console", key=ACME).status == 404


def test_static_files_config_injection_and_etag(apps_hub) -> None:
    status, headers, _ = raw_get(apps_hub, f"/apps/hello?token={ACME}")
    assert status == 302 and headers["location"] == f"/apps/hello/?token={ACME}"
    status, headers, page = raw_get(apps_hub, f"/apps/hello/?token={ACME}")
    assert status == 200 and headers["content-type"].startswith("text/html")
    config = json.loads(page.split(b"window.MCP_HUB_CONFIG = ", 1)[1].split(b";</script>", 1)[0])
    assert (
        config["app_id"] == "hello"
        and config["tenant_id"] == "acme"
        and config["config"] == {"greeting": "hi"}
    )
    assert config["ws_url"].endswith(f"/ws/app/hello/acme?token={ACME}")
    status, headers, body = raw_get(apps_hub, "/apps/hello/app.js", {"Authorization": f"Bearer {ACME}"})
    assert status == 200 and "javascript" in headers["content-type"] and body == b"console.log('hello');"
    etag = headers["etag"]
    status, _, body = raw_get(
        apps_hub, "/apps/hello/app.js", {"Authorization": f"Bearer {ACME}", "If-None-Match": etag}
    )
    assert status == 304 and body == b""
    assert raw_get(apps_hub, "/apps/hello/sub/data.json", {"Authorization": f"Bearer {ACME}"})[0] == 200
    assert raw_get(apps_hub, "/apps/hello/")[0] == 401


TRICKS = [
    "/apps/hello/../../secret.txt",
    "/apps/hello/..%2f..%2fsecret.txt",
    "/apps/hello/%2e%2e/%2e%2e/secret.txt",
    "/apps/hello/%252e%252e/%252e%252e/secret.txt",
    "/apps/hello/..%5c..%5csecret.txt",
    "/apps/hello/sub/../../../secret.txt",
    "/apps/hello//etc/passwd",
    "/apps/hello/%2fetc%2fpasswd",
    "/apps/hello/app.js%00.html",
    "/apps/hello/escape.txt",
    "/apps/hello/manifest.json/../../secret.txt",
    "/apps/sql-console/../hello/app.js",
]


def test_no_path_leaves_the_app_folder(apps_hub) -> None:
    for trick in TRICKS:  # one hub for every trick
        status, _, body = raw_get(apps_hub, trick, {"Authorization": f"Bearer {ADMIN}"})
        assert status in (400, 404), (trick, status, body[:100])
        assert b"TOP SECRET" not in body and b"root:" not in body, trick
    # The same folder's real files are served.
    assert raw_get(apps_hub, "/apps/hello/app.js", {"Authorization": f"Bearer {ADMIN}"})[0] == 200


# --------------------------------------------------------------------------- WebSocket gateway


def test_gateway_messages(apps_hub) -> None:
    async def scenario() -> None:
        ws = await connect(apps_hub, "hello", "acme")
        ws.write_message(json.dumps({"type": "app_ready", "data": {}}))
        state = await until(ws, "app_state")
        assert state["data"]["app_id"] == "hello" and state["data"]["config"] == {"greeting": "hi"}
        assert "s.echo" in {t["name"] for t in state["data"]["tools"]}
        ws.write_message(json.dumps({"type": "ping", "id": "p1"}))
        assert (await until(ws, "pong"))["id"] == "p1"
        ws.write_message(
            json.dumps(
                {"type": "tool_call", "id": 7, "data": {"tool_name": "s.echo", "arguments": {"text": "ws"}}}
            )
        )
        result = await until(ws, "tool_result", 7)
        assert result["data"]["structured_content"] == {"text": "ws"} and result["data"]["is_error"] is False
        ws.write_message(
            json.dumps(
                {
                    "type": "tool_call",
                    "id": "p",
                    "data": {"tool_name": "s.sleep", "arguments": {"seconds": 0.3}},
                }
            )
        )
        progress = await until(ws, "tool_progress", "p")
        assert progress["data"]["total"] == 0.3
        assert (await until(ws, "tool_result", "p"))["data"]["is_error"] is False
        for bad, code in (
            (b"not json", "bad_request"),
            ("[1, 2]", "bad_request"),
            ('{"type": 5}', "bad_request"),
            ('{"type": "launch_missiles", "id": 9}', "bad_request"),
            ("x" * (2 * 1024 * 1024), "payload_too_large"),
        ):
            ws.write_message(bad)
            assert (await until(ws, "error"))["data"]["code"] == code
        ws.write_message(json.dumps({"type": "tool_call", "id": 10, "data": {"tool_name": "nope.echo"}}))
        assert (await until(ws, "error", 10))["data"]["code"] == "not_found"
        ws.write_message(
            json.dumps(
                {
                    "type": "tool_call",
                    "id": 11,
                    "data": {"tool_name": "s.add", "arguments": {"a": "x", "b": 1}},
                }
            )
        )
        assert "arguments.a" in (await until(ws, "error", 11))["data"]["message"]
        # Still open after every bad frame; server changes are pushed.
        assert apps_hub.post("/api/servers/acme/s/restart?wait=false", key=ADMIN).status == 200
        status = await until(ws, "server_status")
        assert status["data"]["server"] == "s"
        assert (await until(ws, "catalog_changed"))["data"]["server"] == "s"
        await close(ws)

    asyncio.run(scenario())


def test_app_state_carries_the_tenants_servers(apps_hub) -> None:
    """An app shows the servers' states at load, before any of them changes (issue 16, item 4)."""

    async def scenario() -> None:
        ws = await connect(apps_hub, "hello", "acme")
        ws.write_message(json.dumps({"type": "app_ready", "id": "r1", "data": {}}))
        servers = (await until(ws, "app_state", "r1"))["data"]["servers"]
        rest = apps_hub.get("/api/servers/acme/s", key=ADMIN).body
        assert [(s["server"], s["state"], s["pid"]) for s in servers] == [("s", "running", rest["pid"])]
        # The same objects a server_status frame carries, so an app handles both alike.
        assert apps_hub.post("/api/servers/acme/s/stop", key=ADMIN).status == 200
        while (pushed := (await until(ws, "server_status"))["data"])["state"] != "stopped":
            pass
        assert set(servers[0]) == set(pushed)
        ws.write_message(json.dumps({"type": "app_ready", "id": "r2", "data": {}}))
        servers = (await until(ws, "app_state", "r2"))["data"]["servers"]
        assert [(s["server"], s["state"], s["pid"]) for s in servers] == [("s", "stopped", None)]
        await close(ws)

    asyncio.run(scenario())


def test_gateway_runs_100_calls_concurrently_on_one_connection(apps_hub) -> None:
    async def scenario() -> None:
        ws = await connect(apps_hub, "hello", "acme")
        began = time.monotonic()
        for i in range(100):
            ws.write_message(
                json.dumps(
                    {
                        "type": "tool_call",
                        "id": i,
                        "data": {
                            "tool_name": "s.sleep" if i % 10 == 0 else "s.echo",
                            "arguments": {"seconds": 0.5} if i % 10 == 0 else {"text": str(i)},
                        },
                    }
                )
            )
        answers: dict[int, dict[str, Any]] = {}
        while len(answers) < 100:
            message = await frame(ws)
            if message["type"] == "tool_result":
                answers[message["id"]] = message["data"]
        assert all(answers[i]["structured_content"] == {"text": str(i)} for i in range(100) if i % 10)
        assert time.monotonic() - began < 5  # ten half-second sleeps ran at once, not one after another
        await close(ws)

    asyncio.run(scenario())


def test_gateway_refuses_wrong_origin_tenant_app_and_key(apps_hub) -> None:
    async def refused(**kwargs: Any) -> int:
        with pytest.raises(tornado.httpclient.HTTPClientError) as caught:
            await connect(apps_hub, **{"app": "hello", "tenant": "acme", **kwargs})
        return caught.value.code

    async def scenario() -> None:
        assert await refused(origin="http://evil.example") == 403
        assert await refused(tenant="default") == 404  # the app is not for that tenant
        assert await refused(app="sql-console") == 404  # nor this app for acme's key
        assert await refused(key=None) == 401
        assert await refused(key="wrong") == 401
        ws = await connect(apps_hub, "hello", "acme", origin=apps_hub.url)
        await close(ws)

    asyncio.run(scenario())


def test_200_connections_across_two_tenants(apps_hub) -> None:
    async def scenario() -> None:
        sockets = [
            await connect(
                apps_hub, "sql-console" if i % 2 else "hello", "default" if i % 2 else "acme", key=ADMIN
            )
            for i in range(200)
        ]
        for ws in sockets:
            ws.write_message(json.dumps({"type": "app_ready"}))
        states = [await until(ws, "app_state") for ws in sockets]
        assert {s["data"]["tenant_id"] for s in states} == {"acme", "default"}
        for i, ws in enumerate(sockets):
            assert states[i]["data"]["tenant_id"] == ("default" if i % 2 else "acme")
            await close(ws)

    asyncio.run(scenario())


def test_disconnect_during_a_call_cancels_it(apps_hub, tmp_path: Path) -> None:
    async def scenario() -> None:
        ws = await connect(apps_hub, "hello", "acme")
        ws.write_message(
            json.dumps(
                {"type": "tool_call", "id": 1, "data": {"tool_name": "s.sleep", "arguments": {"seconds": 30}}}
            )
        )
        await until(ws, "tool_progress", 1)
        await close(ws)

    asyncio.run(scenario())
    log = tmp_path / "data" / "logs" / "acme" / "s.log"
    assert wait_until(lambda: "sleep cancelled" in log.read_text(), 10)
    assert apps_hub.post("/api/tools/s.echo?tenant=acme", {"text": "fine"}, key=ADMIN).status == 200


def test_an_app_opened_with_a_token_gets_its_files_by_a_cookie_that_holds_no_key(apps_hub) -> None:
    # A browser opens /apps/hello/?token=KEY, then fetches app.js with no key: a signed cookie,
    # scoped to the app's path, carries the key's id.
    status, headers, _ = raw_get(apps_hub, f"/apps/hello/?token={ACME}")
    assert status == 200
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "Path=/apps/hello/" in cookie and "SameSite=Strict" in cookie
    assert ACME not in cookie
    value = cookie.split(";", 1)[0]
    status, _, body = raw_get(apps_hub, "/apps/hello/app.js", {"Cookie": value})
    assert status == 200 and body == b"console.log('hello');"
    name, _, signed = value.partition("=")
    forged = f"{name}={signed[:-4]}{'0000' if not signed.endswith('0000') else '1111'}"
    assert raw_get(apps_hub, "/apps/hello/app.js", {"Cookie": forged})[0] == 401
    assert raw_get(apps_hub, "/apps/hello/app.js")[0] == 401
    # The cookie is no key for the API.
    assert raw_get(apps_hub, "/api/tenants", {"Cookie": value})[0] == 401


def test_a_reload_that_removes_a_key_closes_its_connections(apps_hub, tmp_path: Path) -> None:
    async def scenario() -> None:
        tenant_ws = await connect(apps_hub, "hello", "acme")
        admin_ws = await connect(apps_hub, "hello", "acme", key=ADMIN)
        write_config(  # the same hub, with acme's key replaced
            tmp_path,
            {
                "acme": {"api_keys": ["acme-new-key-0123456789"], "servers": {"s": server()}},
                "default": {"servers": {"s": server()}},
            },
            auth={"admin_keys": [ADMIN]},
            gateway={"plugins_dir": str(tmp_path / "plugins")},
        )
        assert apps_hub.post("/api/admin/reload", key=ADMIN).status == 200
        tenant_ws.write_message(json.dumps({"type": "ping", "id": 1}))
        assert await asyncio.wait_for(tenant_ws.read_message(), 10) is None  # closed, nothing answered
        assert tenant_ws.close_code == 1008
        tenant_ws.close()
        admin_ws.write_message(json.dumps({"type": "ping", "id": 2}))
        assert (await until(admin_ws, "pong"))["id"] == 2
        fresh = await connect(apps_hub, "hello", "acme", key="acme-new-key-0123456789")  # the new key works
        fresh.write_message(json.dumps({"type": "ping", "id": 3}))
        assert (await until(fresh, "pong"))["id"] == 3
        await close(fresh)
        await close(admin_ws)

    asyncio.run(scenario())
