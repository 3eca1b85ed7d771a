"""The short way of the MCP facade's tool calls (`web/mcp_fast.py`, issue 24): a 2026-07-28 call it
serves looks to its client, the access log and the metrics exactly as one the handler serves (a
call with a query string, such as `?tenant=`, still goes to the handler: the two are compared);
everything it does not take (a wrong key, another tenant, an unknown server, bad JSON, a request
that is no call) is answered by the handler as before. Real hub, real HTTP."""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
from typing import Any

from conftest import server
from helpers.facade import MODERN_ENVELOPE, modern_call
from helpers.served import ACME_KEY, ADMIN_KEY, BETA_KEY, Response, ServedHub
from mcp.shared.inbound import _ROUTING_HEADER_NAMES as _SDK_ROUTING_HEADERS

from web.mcp_lane_http import _ROUTING_HEADERS

HEADERS = {
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/call",
}


def _call(hub: ServedHub, path: str, name: str, key: str | None, raw: bytes | None = None) -> Response:
    body = raw if raw is not None else json.dumps(modern_call(name, {"text": "hi"})).encode()
    return hub.request("POST", path, raw=body, key=key, headers={**HEADERS, "Mcp-Name": name})


def _tenants() -> dict[str, Any]:
    return {
        "acme": {"api_keys": [ACME_KEY], "servers": {"a": server()}},
        "beta": {"api_keys": [BETA_KEY], "servers": {"b": server()}},
    }


def _metric(hub: ServedHub, route: str, status: int) -> float:
    wanted = f'mcp_hub_http_requests_total{{method="POST",route="{route}",status="{status}"}} '
    for line in hub.get("/metrics", key=ADMIN_KEY).text.splitlines():
        if line.startswith(wanted):
            return float(line.split()[-1])
    return 0.0


def test_a_call_served_the_short_way_answers_counts_and_logs_as_the_handler_does(served) -> None:
    hub = served(_tenants(), auth={"admin_keys": [ADMIN_KEY]})
    short = _call(hub, "/tenants/acme/mcp", "a__echo", ACME_KEY)
    handled = _call(hub, "/mcp?tenant=acme", "a__echo", ADMIN_KEY)  # (a query: the handler's way)
    for answer in (short, handled):
        assert answer.status == 200, answer.text
        assert answer.body["result"]["structuredContent"] == {"text": "hi"}
    assert short.body == handled.body
    assert [n for n, _ in short.headers.items()] == [n for n, _ in handled.headers.items()]
    for name in ("Server", "Content-Type", "X-Content-Type-Options", "Cache-Control", "Content-Length"):
        assert short.headers[name] == handled.headers[name], name
    # Each of the three routes, with the key's own tenant and one server's names.
    assert _call(hub, "/mcp", "a__echo", ACME_KEY).body["result"]["structuredContent"] == {"text": "hi"}
    one = _call(hub, "/tenants/acme/servers/a/mcp", "echo", ACME_KEY)
    assert one.body["result"]["structuredContent"] == {"text": "hi"}, one.text
    assert _metric(hub, "/tenants/{tenant}/mcp", 200) == 1
    assert _metric(hub, "/mcp", 200) == 2
    assert _metric(hub, "/tenants/{tenant}/servers/{server}/mcp", 200) == 1
    log = hub.log()
    assert re.search(r"POST /tenants/\{tenant\}/mcp 200 [\d.]+ms key=acme:[0-9a-f]{12}\n", log), log[-2000:]
    assert re.search(r"POST /tenants/\{tenant\}/servers/\{server\}/mcp 200 [\d.]+ms key=", log), log[-2000:]
    assert ACME_KEY not in log


def test_what_the_short_way_does_not_take_is_answered_by_the_handler(served) -> None:
    hub = served(_tenants(), auth={"admin_keys": [ADMIN_KEY]})
    wrong = _call(hub, "/tenants/acme/mcp", "a__echo", "not-a-key-0123456789")
    assert wrong.status == 401 and "WWW-Authenticate" in wrong.headers, wrong.text
    assert _call(hub, "/tenants/acme/mcp", "a__echo", None).status == 401
    other = _call(hub, "/tenants/acme/mcp", "a__echo", BETA_KEY)  # another tenant's: not found
    assert other.status == 404 and other.body["error"]["code"] == "not_found", other.text
    unknown = _call(hub, "/tenants/acme/servers/zz/mcp", "echo", ACME_KEY)
    assert unknown.status == 404, unknown.text
    bad = _call(hub, "/tenants/acme/mcp", "a__echo", ACME_KEY, raw=b'{"jsonrpc": "2.0", "id": 1,')
    assert bad.status == 400 and bad.body["error"]["code"] == -32700, bad.text
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": MODERN_ENVELOPE}}
    listed = hub.request(
        "POST",
        "/tenants/acme/mcp",
        raw=json.dumps(listing).encode(),
        key=ACME_KEY,
        headers={**HEADERS, "Mcp-Method": "tools/list"},
    )
    assert listed.status == 200, listed.text
    assert "a__echo" in [t["name"] for t in listed.body["result"]["tools"]]
    # The handler's answers are counted and logged as they were.
    assert _metric(hub, "/tenants/{tenant}/mcp", 401) == 2
    assert _metric(hub, "/tenants/{tenant}/mcp", 404) == 1


def _raw_call(hub: ServedHub, lines: list[tuple[str, str]]) -> tuple[int, Any]:
    """POST a call to acme's `/mcp` with header `lines` as given (a name may repeat): status, JSON."""
    body = json.dumps(modern_call("a__echo", {"text": "hi"})).encode()
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(hub.url).netloc, timeout=60)
    try:
        connection.putrequest("POST", "/tenants/acme/mcp")
        for name, value in [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *lines]:
            connection.putheader(name, value)
        connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read() or b"null")
    finally:
        connection.close()


def test_a_routing_header_sent_twice_is_refused_as_the_sdk_refuses_it(served) -> None:
    hub = served(_tenants(), auth={"admin_keys": [ADMIN_KEY]})
    lines = [("Authorization", f"Bearer {ACME_KEY}"), *HEADERS.items(), ("Mcp-Name", "a__echo")]
    status, answer = _raw_call(hub, lines)
    assert status == 200 and answer["result"]["structuredContent"] == {"text": "hi"}, answer
    # Each routing header once more, in another case and with the same value: the SDK's
    # `find_duplicated_routing_header` refuses the request (first and last copy readers could
    # disagree), and so does the hub, whichever way serves it.
    for name, value in [
        ("mcp-method", "tools/call"),
        ("MCP-NAME", "a__echo"),
        ("mcp-protocol-version", "2026-07-28"),
    ]:
        status, answer = _raw_call(hub, [*lines, (name, value)])
        assert status == 400, (name, status, answer)
        assert "result" not in answer and name.lower() in answer["error"]["message"].lower(), (name, answer)
    assert {name.lower() for name in _ROUTING_HEADERS} == _SDK_ROUTING_HEADERS
