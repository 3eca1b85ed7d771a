"""`python -m hub serve` as a real listening process, driven by a real HTTP client."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from conftest import (
    MARK,
    ROOT,
    initialize_request,
    marked_pids,
    needs_bwrap,
    process_gone,
    server,
    wait_until,
)
from helpers.served import (
    ACME_KEY,
    ADMIN_KEY,
    BETA_KEY,
    SECRETS,
    Response,
    ServedHub,
    keyed_tenants,
    start_hub,
    stop_hub,
    write_config,
)

from actors.sandbox import host_support
from hub.config import parse_config

# --------------------------------------------------------------------------- the seed's quick start


def test_the_seeds_curl_calls(serve, tmp_path: Path) -> None:
    demo = {"command": "python", "args": ["-m", "hub.demo_sqlite", "--db-path", str(tmp_path / "demo.db")]}
    hub = serve({"default": {"description": "Default tenant", "servers": {"sqlite-demo": demo}}})
    health = hub.get("/health")
    assert health.status == 200 and health.body["status"] == "ok"
    tenants = hub.get("/api/tenants").body["tenants"]
    assert [t["name"] for t in tenants] == ["default"]
    assert hub.get("/api/tools").body == {"tools": []}  # nothing started yet (auto_start is off)
    started = hub.post("/api/tenants/default/start")
    assert started.status == 200 and started.body["servers"] == {"sqlite-demo": "running"}
    servers = hub.get("/api/servers").body["servers"]
    assert servers[0]["server"] == "sqlite-demo" and servers[0]["state"] == "running" and servers[0]["pid"]
    assert "sqlite-demo.query" in {t["name"] for t in hub.get("/api/tools").body["tools"]}
    # The seed: curl -X POST .../api/tools/sqlite-demo.query -d '{"sql": "SELECT * FROM users LIMIT 10"}'
    answer = hub.post("/api/tools/sqlite-demo.query", {"sql": "SELECT * FROM users LIMIT 10"})
    assert answer.status == 200, answer.text
    assert answer.body["tool"] == "sqlite-demo.query" and answer.body["is_error"] is False
    assert answer.body["structured_content"]["row_count"] == 10
    # A write is a tool error: 200 with is_error.
    write = hub.post("/api/tools/sqlite-demo.query/call", {"sql": "DELETE FROM users"})
    assert write.status == 200 and write.body["is_error"] is True


def test_root_and_openapi_and_metrics(serve) -> None:
    hub = serve({"t": {"servers": {"s": server()}}})
    root = hub.get("/").body
    assert root["name"] == "MCP Hub" and root["tenants"] == 1 and root["servers"] == 1
    assert hub.get("/openapi.json").body["openapi"].startswith("3.1")
    hub.post("/api/tenants/t/start")
    hub.post("/api/tools/s.echo?tenant=t", {"text": "x"})
    metrics = hub.get("/metrics")
    assert metrics.status == 200 and metrics.headers["Content-Type"].startswith("text/plain")
    text = metrics.text
    assert 'mcp_hub_tool_calls_total{outcome="ok",server="s",tenant="t"} 1.0' in text
    assert 'mcp_hub_server_state{server="s",state="running",tenant="t"} 1.0' in text
    assert "mcp_hub_tool_call_duration_seconds_bucket" in text
    assert 'mcp_hub_http_requests_total{method="POST",route="/api/tools/{name}",status="200"}' in text


def test_health_says_name_version_and_uptime_and_no_names(serve) -> None:
    """Issue 16: only `/` said which hub answered and for how long; `/health` is what probes read."""
    import jsonschema

    from web.openapi import document

    hub = serve({"secret-tenant": {"servers": {"hidden-server": server()}}})
    hub.post("/api/tenants/secret-tenant/start")
    health = hub.get("/health")
    assert health.status == 200
    assert health.body["name"] == "MCP Hub" and health.body["version"] == hub.get("/").body["version"]
    assert 0 < health.body["uptime_seconds"] < 120
    assert health.body["components"]["servers"] == {"running": 1}
    sandbox = "available" if host_support().available else "unavailable"
    assert health.body["components"]["sandbox"] == sandbox
    assert "secret-tenant" not in health.text and "hidden-server" not in health.text
    doc = document("0")
    schema = doc["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]
    schema = {"schema": doc["components"]["schemas"][schema["schema"]["$ref"].rsplit("/", 1)[1]]}  # Health
    jsonschema.validate(health.body, schema["schema"])
    assert set(health.body) == set(schema["schema"]["properties"])


# --------------------------------------------------------------------------- every endpoint


def test_tenant_server_tool_resource_prompt_endpoints(serve) -> None:
    hub = serve(
        {"t": {"quotas": {"max_servers": 5}, "servers": {"s": server(), "off": server(enabled=False)}}}
    )
    tenant = hub.get("/api/tenants/t").body
    assert tenant["quotas"]["max_servers"] == {"limit": 5, "used": 0}
    assert hub.post("/api/tenants/t/start").body["servers"] == {"s": "running", "off": "disabled"}
    assert {t["name"] for t in hub.get("/api/tenants/t/tools").body["tools"]} >= {"s.echo", "s.add"}
    detail = hub.get("/api/servers/t/s").body
    assert detail["state"] == "running" and "echo" in detail["tool_names"] and detail["restarts"] == 0
    old_pid = detail["pid"]
    restarted = hub.post("/api/servers/t/s/restart").body
    assert restarted["state"] == "running" and restarted["pid"] != old_pid
    listed = lambda: {t["name"] for t in hub.get("/api/tools").body["tools"]}  # noqa: E731
    assert "off.echo" not in listed() and "s.echo" in listed()  # (kept encoded until a change)
    assert hub.post("/api/servers/t/off/start").body["state"] == "running"
    assert "off.echo" in listed() and "off.echo" in {
        t["name"] for t in hub.get("/api/tools?tenant=t").body["tools"]
    }
    assert hub.post("/api/servers/t/off/stop").body["state"] == "stopped"
    assert "off.echo" not in listed() and "s.echo" in listed()
    resources = hub.get("/api/tenants/t/resources").body["resources"]
    assert any(r["uri"] == "test://info" and r["server"] == "s" for r in resources)
    read = hub.get("/api/tenants/t/resources/read?uri=test://info")
    assert read.status == 200 and read.body["contents"][0]["uri"] == "test://info"
    prompts = hub.get("/api/tenants/t/prompts").body["prompts"]
    assert any(p["name"] == "s.greet" for p in prompts)
    prompt = hub.post("/api/tenants/t/prompts/s.greet", {"name": "Ada"})
    assert prompt.status == 200 and "Ada" in json.dumps(prompt.body["messages"])
    logs = hub.get("/api/servers/t/s/logs?tail=5").body
    assert 0 < len(logs["lines"]) <= 5
    assert hub.post("/api/tenants/t/stop").body["servers"] == {"s": "stopped", "off": "stopped"}
    assert hub.get("/api/servers/t/s").body["state"] == "stopped"


def test_resources_and_resource_templates_are_listed_apart(serve) -> None:
    hub = serve({"t": {"servers": {"s": server("--template")}}})
    hub.post("/api/tenants/t/start")
    body = hub.get("/api/tenants/t/resources").body
    assert [(r["uri"], r["server"]) for r in body["resources"]] == [("test://info", "s")]
    assert [(r["uriTemplate"], r["server"]) for r in body["resource_templates"]] == [
        ("test://echo/{text}", "s")
    ]
    # The answer is what GET /openapi.json says it is.
    document = hub.get("/openapi.json").body
    answer = document["paths"]["/api/tenants/{tenant}/resources"]["get"]["responses"]["200"]
    schema = answer["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(body)
    read = hub.get("/api/tenants/t/resources/read?uri=test://echo/hello")  # a URI the template matches
    assert read.status == 200 and read.body["contents"][0]["text"] == "hello", read.text


# --------------------------------------------------------------------------- errors


def test_every_error_status_has_the_one_json_shape(serve) -> None:
    hub = serve(
        {
            "t": {
                "servers": {
                    "s": server(),
                    "slow": server(call_timeout=0.5),
                    "crashy": server("--crash-after", "0"),
                }
            }
        },
        gateway={"max_body_bytes": 2048},
        orchestrator={"max_retries": 0},
    )
    hub.post("/api/tenants/t/start")

    def error(response: Response, status: int, code: str) -> str:
        assert response.status == status, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        assert set(response.body) == {"error"} and response.body["error"]["code"] == code
        return response.body["error"]["message"]

    assert "malformed JSON" in error(
        hub.request("POST", "/api/tools/s.echo?tenant=t", raw=b"{nope"), 400, "bad_request"
    )
    assert "must be a JSON object" in error(
        hub.post("/api/tools/s.echo?tenant=t", [1, 2]), 400, "bad_request"
    )
    message = error(hub.post("/api/tools/s.add?tenant=t", {"a": "one", "b": 2}), 400, "bad_request")
    assert "arguments.a: 'one' is not of type 'integer'" in message
    error(hub.post("/api/tools/s.nope?tenant=t", {}), 404, "not_found")
    error(hub.get("/no/such/route"), 404, "not_found")
    error(hub.get("/api/tenants/ghost"), 404, "not_found")
    error(hub.get("/api/servers/t/ghost"), 404, "not_found")
    not_allowed = hub.request("DELETE", "/api/tools")
    error(not_allowed, 405, "method_not_allowed")
    assert not_allowed.headers["Allow"] == "GET"
    error(hub.post("/api/tools/s.echo?tenant=t", {"text": "x" * 5000}), 413, "payload_too_large")
    assert "crashed during the call" in error(
        hub.post("/api/tools/crashy.echo?tenant=t", {"text": "x"}), 502, "upstream_error"
    )
    assert "timed out after 0.5 s" in error(
        hub.post("/api/tools/slow.sleep?tenant=t", {"seconds": 5}), 504, "timeout"
    )
    hub.post("/api/servers/t/s/stop")
    assert "is stopped" in error(
        hub.post("/api/tools/s.echo?tenant=t", {"text": "x"}), 409, "server_not_running"
    )
    error(hub.get("/api/servers/t/s/logs?tail=-1"), 400, "bad_request")
    error(hub.get("/api/tenants/t/resources/read"), 400, "bad_request")
    tool_error = hub.post("/api/tools/slow.fail?tenant=t", {})
    assert tool_error.status == 200 and tool_error.body["is_error"] is True


def test_last_error_carries_the_last_stderr_lines_with_env_values_masked(serve) -> None:
    """A server that exits says why only on stderr (npm's 404 for a mistyped package): its last
    lines are in `last_error`, with the tenant's and the server's env values masked."""
    script = (
        'echo "npm error code E404" >&2; '
        'echo "npm error 404 Not Found - GET https://registry.npmjs.org/@acme%2fmistyped" >&2; '
        'echo "npm error auth $ACME_SECRET $S" >&2; exit 1'
    )
    hub = serve(
        {
            "acme": {
                "env": {"ACME_SECRET": "acme-env-secret"},
                "servers": {
                    "npx": {"command": "sh", "args": ["-c", script], "env": {"S": "server-env-secret"}}
                },
            }
        },
        orchestrator={"max_retries": 0},
    )
    assert hub.post("/api/tenants/acme/start").body["servers"] == {"npx": "failed"}
    error = hub.get("/api/servers/acme/npx").body["last_error"]
    assert re.fullmatch(
        r"failed to start: process \d+ exited with code 1; its last stderr lines: npm error code E404 \| "
        r"npm error 404 Not Found - GET https://registry\.npmjs\.org/@acme%2fmistyped \| "
        r"npm error auth \*{8} \*{8}",
        error,
    ), error
    lines = hub.get("/api/servers/acme/npx/logs").body["lines"]  # the log itself: masked alike
    assert "npm error auth ******** ********" in lines, lines
    everything = "\n".join(hub.responses)
    assert "acme-env-secret" not in everything and "server-env-secret" not in everything


def test_rate_limit_is_429_with_retry_after(serve) -> None:
    hub = serve({"t": {"quotas": {"max_calls_per_minute": 2}, "servers": {"s": server()}}})
    hub.post("/api/tenants/t/start")
    for _ in range(2):
        assert hub.post("/api/tools/s.echo?tenant=t", {"text": "x"}).status == 200
    limited = hub.post("/api/tools/s.echo?tenant=t", {"text": "x"})
    assert limited.status == 429 and limited.body["error"]["code"] == "quota_exceeded"
    assert 50 <= int(limited.headers["Retry-After"]) <= 60


# --------------------------------------------------------------------------- auth and isolation


def test_keys_and_tenant_isolation(serve) -> None:
    hub = serve(keyed_tenants(), auth={"admin_keys": [ADMIN_KEY]}, orchestrator={"max_retries": 0})
    assert hub.get("/api/tenants").status == 401
    assert hub.get("/api/tenants", key="wrong-key").status == 401
    assert hub.get("/api/tenants").headers["WWW-Authenticate"].startswith("Bearer")
    assert hub.get("/health").status == 200  # public
    assert hub.post("/api/tenants/acme/start", key=ADMIN_KEY).status == 200
    assert hub.post("/api/tenants/beta/start", key=BETA_KEY).status == 200
    assert [t["name"] for t in hub.get("/api/tenants", key=ACME_KEY).body["tenants"]] == ["acme"]
    assert [t["name"] for t in hub.get("/api/tenants", key=ADMIN_KEY).body["tenants"]] == ["acme", "beta"]
    assert {t["tenant"] for t in hub.get("/api/tools", key=ACME_KEY).body["tools"]} == {"acme"}
    assert {t["tenant"] for t in hub.get("/api/tools", key=ADMIN_KEY).body["tools"]} == {"acme", "beta"}
    assert {s["tenant"] for s in hub.get("/api/servers", key=BETA_KEY).body["servers"]} == {"beta"}
    # A tenant key calls in its own tenant, whatever ?tenant= says.
    assert hub.post("/api/tools/a.echo", {"text": "mine"}, key=ACME_KEY).status == 200
    assert hub.post("/api/tools/b2.echo", {"text": "theirs"}, key=ACME_KEY).status == 404
    assert hub.post("/api/tools/b2.echo?tenant=beta", {"text": "x"}, key=ACME_KEY).status == 404
    assert hub.post("/api/tools/b2.echo?tenant=beta", {"text": "x"}, key=ADMIN_KEY).status == 200
    assert hub.get("/metrics", key=ACME_KEY).status == 404
    assert hub.get("/metrics", key=ADMIN_KEY).status == 200
    # Each tenant key against every route of the other tenant: 404, like a tenant that does not exist.
    for key, other, srv in ((ACME_KEY, "beta", "b2"), (BETA_KEY, "acme", "a")):
        for method, path in (
            ("GET", f"/api/tenants/{other}"),
            ("GET", f"/api/tenants/{other}/tools"),
            ("POST", f"/api/tenants/{other}/start"),
            ("POST", f"/api/tenants/{other}/stop"),
            ("GET", f"/api/servers/{other}/{srv}"),
            ("POST", f"/api/servers/{other}/{srv}/start"),
            ("POST", f"/api/servers/{other}/{srv}/stop"),
            ("POST", f"/api/servers/{other}/{srv}/restart"),
            ("GET", f"/api/servers/{other}/{srv}/logs"),
            ("GET", f"/api/tenants/{other}/resources"),
            ("GET", f"/api/tenants/{other}/resources/read?uri=test://info"),
            ("GET", f"/api/tenants/{other}/prompts"),
            ("POST", f"/api/tenants/{other}/prompts/{srv}.greet"),
            ("GET", f"/api/servers?tenant={other}"),
            ("GET", f"/api/tools?tenant={other}"),
        ):
            answer = hub.request(method, path, {} if method == "POST" else None, key=key)
            missing = hub.request(
                method, path.replace(other, "nosuchtenant"), {} if method == "POST" else None, key=key
            )
            assert answer.status == 404, (key[:4], method, path, answer.text)
            assert answer.body["error"]["code"] == missing.body["error"]["code"] == "not_found"
    # The other tenant's servers were never touched.
    assert hub.get("/api/servers/acme/a", key=ADMIN_KEY).body["state"] == "running"
    # No secret in any response, nor in the hub's log.
    everything = "\n".join(hub.responses)
    for secret in SECRETS:
        assert secret not in everything
    stop_hub(hub)
    for secret in SECRETS:
        assert secret not in hub.log()


def test_tenant_query_is_one_rule_on_every_route_that_takes_it(serve) -> None:
    """`?tenant=` with a tenant key: its own tenant works, any other (existing or not) is the same
    404, on the REST routes and the MCP HTTP facade alike; an admin key may name any tenant."""
    hub = serve(keyed_tenants(), auth={"admin_keys": [ADMIN_KEY]}, orchestrator={"max_retries": 0})
    assert hub.post("/api/tenants/acme/start", key=ADMIN_KEY).status == 200
    initialize = initialize_request()
    mcp_headers = {"Accept": "application/json, text/event-stream"}
    routes = (
        ("GET", "/api/tenants?tenant={}", None),
        ("GET", "/api/servers?tenant={}", None),
        ("GET", "/api/tools?tenant={}", None),
        ("POST", "/api/tools/a.echo?tenant={}", {"text": "x"}),
        ("POST", "/api/tools/a.echo/call?tenant={}", {"text": "x"}),
        ("POST", "/mcp?tenant={}", initialize),
    )
    for method, path, body in routes:
        own = hub.request(method, path.format("acme"), body, key=ACME_KEY, headers=mcp_headers)
        assert own.status == 200, (path, own.text)
        if own.body and "tenants" in own.body:
            assert [t["name"] for t in own.body["tenants"]] == ["acme"]
        answers = [
            hub.request(method, path.format(other), body, key=ACME_KEY, headers=mcp_headers)
            for other in ("beta", "nosuchtenant")
        ]
        assert [a.status for a in answers] == [404, 404], (path, [a.text for a in answers])
        messages = [a.body["error"]["message"] for a in answers]
        assert messages == ["no tenant 'beta'", "no tenant 'nosuchtenant'"]
    assert hub.get("/api/tenants?tenant=beta", key=ADMIN_KEY).body["tenants"][0]["name"] == "beta"
    assert hub.get("/api/tenants?tenant=nosuchtenant", key=ADMIN_KEY).status == 404


def test_open_hub_refuses_a_non_loopback_host(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"t": {}})
    result = subprocess.run(
        [sys.executable, "-m", "hub", "serve", "--config", str(config), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "refusing to serve on 0.0.0.0: no keys are configured" in result.stderr


def test_port_in_use_exits_1_naming_the_port(serve, tmp_path: Path) -> None:
    first = serve({"t": {}})
    port = first.url.rsplit(":", 1)[1]
    (tmp_path / "second").mkdir()
    config = write_config(tmp_path / "second", {"t": {}})
    result = subprocess.run(
        [sys.executable, "-m", "hub", "serve", "--config", str(config), "--port", port],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "in use" in result.stderr


@pytest.fixture
def taken() -> Iterator[list[int]]:
    """Three ports that something else listens on (on 127.0.0.1) for the whole test."""
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    yield [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()


def run_serve(config: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m hub serve --config config ...` that is expected to exit at once."""
    return subprocess.run(
        [sys.executable, "-m", "hub", "serve", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )


def test_a_port_in_use_names_the_setting_that_chose_it(tmp_path: Path, taken: list[int]) -> None:
    """Issue 16: anything on 8000 stopped `python -m hub`, and `--port` did not help."""
    mcp, ws, _ = taken
    config = write_config(tmp_path, {"t": {}}, gateway={"mcp_port": mcp})
    result = run_serve(config, "--port", "0")
    assert result.returncode == 1
    assert f"port {mcp} (gateway.mcp_port in {config}) is in use: cannot listen on 127.0.0.1:{mcp}" in (
        result.stderr
    )
    assert "use --mcp-port N or --mcp-port off" in result.stderr
    # The same port chosen by the environment, then by a flag.
    result = run_serve(write_config(tmp_path, {"t": {}}), "--port", "0", MCP_HUB_MCP_PORT=str(mcp))
    assert result.returncode == 1 and f"port {mcp} (MCP_HUB_MCP_PORT) is in use" in result.stderr
    result = run_serve(config, "--port", "0", "--mcp-port", "off", "--ws-port", str(ws))
    assert result.returncode == 1 and f"port {ws} (--ws-port) is in use" in result.stderr
    assert "use --ws-port N or --ws-port off" in result.stderr
    result = run_serve(config, "--mcp-port", "0", MCP_HUB_PORT=str(ws))
    assert result.returncode == 1 and f"port {ws} (MCP_HUB_PORT) is in use" in result.stderr
    assert "use --port N\n" in result.stderr
    # Values that are not ports are usage errors naming the flag or variable.
    assert "argument --mcp-port: must be a port" in run_serve(config, "--mcp-port", "x").stderr
    bad = run_serve(config, MCP_HUB_WS_PORT="8o81")
    assert bad.returncode == 2 and "MCP_HUB_WS_PORT must be a port from 0 to 65535 or 'off'" in bad.stderr
    clash = run_serve(config, "--port", "9", "--mcp-port", "off", "--ws-port", "9")
    assert clash.returncode == 2 and "port 9 is chosen for two listeners" in clash.stderr


def test_a_port_the_file_does_not_set_is_named_as_its_default() -> None:
    from hub.listeners import plan

    config = parse_config("tenants: {}\ngateway: {port: 8080}", source="hub.yaml")
    chosen = plan(argparse.Namespace(), config, {"MCP_HUB_WS_PORT": ""})
    assert [(x.port, x.origin) for x in chosen.listeners] == [
        (8080, "gateway.port in hub.yaml"),
        (8000, "gateway.mcp_port's default, not set in hub.yaml"),
        (8081, "gateway.websocket_port's default, not set in hub.yaml"),  # an empty variable is unset
    ]


def test_the_serving_loop_is_uvloops_unless_the_environment_asks_for_asyncios(tmp_path: Path) -> None:
    """Both loops serve the same call; the log says which one runs."""
    config = write_config(tmp_path, {"t": {"servers": {"s": server()}}})
    for setting, named in ((None, "serving loop: uvloop "), ("asyncio", "serving loop: asyncio")):
        hub = start_hub(config, tmp_path, env={"MCP_HUB_EVENT_LOOP": setting} if setting else None)
        try:
            assert named in hub.log(), hub.log()[-2000:]
            assert hub.post("/api/tenants/t/start").body["servers"] == {"s": "running"}
            assert hub.post("/api/tools/s.echo?tenant=t", {"text": "looped"}).body["structured_content"] == {
                "text": "looped"
            }
        finally:
            assert stop_hub(hub) == 0


def test_flags_beat_the_environment_which_beats_the_file(tmp_path: Path, taken: list[int]) -> None:
    """Every listener that the file puts on a taken port can be moved or turned off."""
    main, mcp, ws = taken
    config = write_config(tmp_path, {"t": {}}, gateway={"port": main, "mcp_port": mcp, "websocket_port": ws})
    # The environment beats the file: a free main port, no extra listener.
    off = {"MCP_HUB_MCP_PORT": "off", "MCP_HUB_WS_PORT": "0"}
    hub = start_hub(config, tmp_path, env={"MCP_HUB_PORT": "0", **off})
    assert hub.get("/health").status == 200
    hub.proc.send_signal(signal.SIGTERM)
    assert "listener" not in hub.proc.stdout.read()  # no other listening line
    assert stop_hub(hub) == 0
    # Flags beat the environment, which names the taken ports.
    hub = start_hub(
        config,
        tmp_path,
        "--port",
        "0",
        "--mcp-port",
        "off",
        "--ws-port",
        "off",
        env={"MCP_HUB_PORT": str(main), "MCP_HUB_MCP_PORT": str(mcp), "MCP_HUB_WS_PORT": str(ws)},
    )
    assert hub.get("/health").status == 200
    assert stop_hub(hub) == 0
    refused = run_serve(config, MCP_HUB_HOST="0.0.0.0", MCP_HUB_PORT="0")
    assert refused.returncode == 2 and "(the host comes from MCP_HUB_HOST)" in refused.stderr


# --------------------------------------------------------------------------- graceful stop


def test_sigterm_drains_a_call_in_flight_then_exits_0_with_no_child(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"t": {"servers": {"s": server()}}})
    hub = start_hub(config, tmp_path)
    try:
        assert hub.post("/api/tenants/t/start").status == 200
        pid = hub.get("/api/servers/t/s").body["pid"]
        result: list[Response] = []
        call = threading.Thread(
            target=lambda: result.append(hub.post("/api/tools/s.sleep?tenant=t", {"seconds": 1.5}))
        )
        call.start()
        assert wait_until(
            lambda: hub.get("/api/tenants/t").body["quotas"]["max_concurrent_calls"]["used"] == 1, 10
        )
        hub.proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: "stopping" in hub.log(), 10)
        assert hub.get("/health").status == 503
        call.join(30)
        assert result and result[0].status == 200 and not result[0].body["is_error"]
        assert hub.proc.wait(30) == 0
        assert process_gone(pid)
        assert wait_until(lambda: not marked_pids(), 5)
    finally:
        stop_hub(hub)


def test_default_config_serves_out_of_the_box(tmp_path: Path) -> None:
    """`python -m hub` with no arguments, from a copy of the repository's config folder."""
    needs_bwrap()
    (tmp_path / "config").mkdir()
    text = (ROOT / "config" / "hub.yaml").read_text().replace("mcp_port: 8000", "mcp_port: null")
    text = text.replace("websocket_port: 8081", "websocket_port: null")
    text = text.replace("data_dir: ../.mcp-hub", f"data_dir: {tmp_path / 'state'}")
    (tmp_path / "config" / "hub.yaml").write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "--port", "0"],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MCP_HUB_TEST_MARK": MARK},
    )
    line = proc.stdout.readline()
    hub = ServedHub(proc, re.search(r"(http://\S+)", line).group(1), tmp_path / "none")
    try:
        assert wait_until(lambda: hub.get("/api/servers").body["servers"][0]["state"] == "running", 30)
        rows = hub.post("/api/tools/sqlite-demo.query", {"sql": "SELECT * FROM users LIMIT 10"})
        assert rows.body["structured_content"]["row_count"] == 10
        assert (tmp_path / "state" / "homes" / "default" / "demo.db").exists()  # sandboxed: in its home
    finally:
        assert stop_hub(hub) == 0


# --------------------------------------------------------------------------- audit and log format


def test_audit_log_has_one_line_per_call_and_no_argument_or_secret(serve, tmp_path: Path) -> None:
    audit = tmp_path / "audit.log"
    hub = serve(
        {
            "acme": {
                "api_keys": [ACME_KEY],
                "env": {"ACME_SECRET": "acme-env-secret"},
                "servers": {"a": server()},
            }
        },
        auth={"admin_keys": [ADMIN_KEY]},
        audit={"file": str(audit)},
    )
    hub.post("/api/tenants/acme/start", key=ADMIN_KEY)
    assert hub.post("/api/tools/a.echo", {"text": "private words"}, key=ACME_KEY).status == 200
    assert hub.post("/api/tools/a.fail", {}, key=ACME_KEY).status == 200
    assert hub.post("/api/tools/a.nope", {"text": "x"}, key=ACME_KEY).status == 404
    assert hub.post("/api/tools/a.add", {"a": "private", "b": 1}, key=ACME_KEY).status == 400
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(line["tool"], line["outcome"]) for line in lines] == [
        ("a.echo", "ok"),
        ("a.fail", "tool_error"),
        ("a.nope", "not_found"),
        ("a.add", "bad_request"),
    ]
    assert all(line["tenant"] == "acme" and line["key"].startswith("acme:") for line in lines)
    fields = {"time", "tenant", "key", "subject", "tool", "duration_ms", "outcome"}
    assert all(set(line) == fields for line in lines)
    assert all(line["subject"] == line["key"] for line in lines)  # (a key without a subject: its id)
    text = audit.read_text()
    assert "private" not in text and all(secret not in text for secret in SECRETS)


def test_audit_log_includes_arguments_only_when_configured(serve, tmp_path: Path) -> None:
    audit = tmp_path / "audit.log"
    hub = serve({"t": {"servers": {"a": server()}}}, audit={"file": str(audit), "include_arguments": True})
    hub.post("/api/tenants/t/start")
    hub.post("/api/tools/a.echo?tenant=t", {"text": "keep me"})
    assert json.loads(audit.read_text().splitlines()[0])["arguments"] == {"text": "keep me"}


def test_log_format_json(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"t": {"servers": {"a": server()}}})
    result = subprocess.run(
        [sys.executable, "-m", "hub", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "LOG_FORMAT": "json"},
    )
    assert result.returncode == 0
    stderr = tmp_path / "json.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve", "--config", str(config), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "LOG_FORMAT": "json"},
        )
    proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    proc.stdout.close()
    records = [json.loads(line) for line in stderr.read_text().splitlines()]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r["logger"] == "hub.service" and r["message"] == "stopped" for r in records)


# --------------------------------------------------------------------------- SIGUSR1: a stack dump


def test_sigusr1_logs_every_threads_stack_and_the_hub_carries_on(serve) -> None:
    hub = serve({"t": {"servers": {"s": server()}}})
    assert hub.post("/api/tenants/t/start").body["servers"] == {"s": "running"}
    hub.proc.send_signal(signal.SIGUSR1)
    assert wait_until(lambda: "stack dump on SIGUSR1" in hub.log(), 10), hub.log()[-3000:]
    dump = hub.log().split("stack dump on SIGUSR1: ", 1)[1]
    sections = re.findall(r"thread (.+?) \(ident \d+(?: daemon)?\):\n((?:  .*\n?)+)", dump)
    threads = dict(sections)  # name: its frames
    assert next(iter(threads)) == "MainThread", list(threads)  # the web loop's thread comes first
    assert "runner.run(_serve(config, plan, bound, watch))" in threads["MainThread"]  # the web loop
    actor = next(name for name in threads if name.startswith("TenantActor-"))
    assert "pykka" in threads[actor] and 'File "' in threads[actor]
    assert any(name.startswith("server-t-s") for name in threads), list(threads)
    # A dump is all SIGUSR1 does: the hub still serves (SIGUSR1's default action would end it).
    assert hub.post("/api/tools/s.echo?tenant=t", {"text": "still here"}).status == 200
    assert hub.proc.poll() is None
