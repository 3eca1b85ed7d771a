"""The `Idempotency-Key` header of tool calls on a lone hub (`hub.idempotency`), over REST and
the MCP facade (both eras): a request sent again with its key runs again only if its tool is
read-only or idempotent; otherwise it is a clear error (REST: 409; the facade: a tool error) and
the tool does not run twice. A real `python -m hub serve` and a real test server.
"""

from __future__ import annotations

import mcp.types as types
from conftest import initialize_request, server
from helpers.facade import MODERN_ENVELOPE


def _keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


def test_a_key_sent_again_runs_a_read_only_tool_again_and_no_other_tool_twice(served) -> None:
    hub = served({"t": {"servers": {"s": server("--read-only-sleep", "--extras")}}})

    def call(tool: str, arguments: dict[str, object], key: str | None = None):
        return hub.request(
            "POST", f"/api/tools/s.{tool}?tenant=t", arguments, headers=_keyed(key) if key else None
        )

    # A read-only tool: the same request twice runs twice.
    for _ in range(2):
        again = call("peek", {"seconds": 0}, "read-1")
        assert again.status == 200 and again.body["content"][0]["text"] == "slept", again.text
    # bump (no hints) counts its runs: the second request with its key is refused, not run.
    first = call("bump", {}, "bump-1")
    assert first.status == 200 and first.body["content"][0]["text"] == "1", first.text
    second = call("bump", {}, "bump-1")
    assert second.status == 409 and second.body["error"]["code"] == "duplicate_call", second.text
    message = second.body["error"]["message"]
    assert "may already have run" in message and "read-only" in message and "s.bump" in message, message
    # It did not run: the next bump (a new key) counts 2; one without a key behaves as before.
    assert call("bump", {}, "bump-2").body["content"][0]["text"] == "2"
    assert call("bump", {}).body["content"][0]["text"] == "3"
    assert call("bump", {}).body["content"][0]["text"] == "4"
    # The same key for another call: 422, whatever the tool.
    reused = call("peek", {"seconds": 0.01}, "read-1")
    assert reused.status == 422 and reused.body["error"]["code"] == "idempotency_key_reused", reused.text
    assert call("echo", {"text": "x"}, "bump-1").status == 422
    # A Structured Field string is the same key without its quotes.
    assert call("bump", {}, '"bump-1"').status == 409
    # A call that never reached its server (bad arguments) forgets its key: sent again, it runs.
    bad = call("echo", {"text": 1}, "echo-1")
    assert bad.status == 400 and bad.body["error"]["code"] == "bad_request", bad.text
    assert call("echo", {"text": 1}, "echo-1").status == 400  # (not 409: nothing ran)
    # Keys are per tenant's call: the same key with the corrected arguments is a new call now.
    fixed = call("echo", {"text": "y"}, "echo-1")
    assert fixed.status == 200 and fixed.body["structured_content"] == {"text": "y"}, fixed.text


def test_a_bad_idempotency_key_is_a_clear_400(served) -> None:
    hub = served({"t": {"servers": {"s": server()}}})
    for key, why in (("", "empty"), (" ", "empty"), ("k" * 256, "longer than 255"), ("clé", "printable")):
        answer = hub.request("POST", "/api/tools/s.echo?tenant=t", {"text": "x"}, headers=_keyed(key))
        assert answer.status == 400 and answer.body["error"]["code"] == "bad_request", (key, answer.text)
        assert "Idempotency-Key" in answer.body["error"]["message"] and why in answer.body["error"]["message"]
    assert (
        hub.request("POST", "/api/tools/s.echo?tenant=t", {"text": "x"}, headers=_keyed("k" * 255)).status
        == 200
    )


ACCEPT = {"Accept": "application/json, text/event-stream"}


def test_the_mcp_facade_honours_the_key_of_a_tools_call_in_both_eras(served) -> None:
    hub = served({"t": {"servers": {"s": server("--read-only-sleep", "--extras")}}})
    path = "/tenants/t/mcp"
    init = hub.request("POST", path, initialize_request(0), headers=ACCEPT)
    session = {
        **ACCEPT,
        "Mcp-Session-Id": init.headers["Mcp-Session-Id"],
        "MCP-Protocol-Version": "2025-11-25",
    }
    hub.request("POST", path, {"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
    counted = 0

    def call(era: str, name: str, arguments: dict[str, object], key: str | None = None) -> dict[str, object]:
        params: dict[str, object] = {"name": name, "arguments": arguments}
        if era == "2026-07-28":  # stateless: each request says what it is
            params["_meta"] = MODERN_ENVELOPE
            headers = {**ACCEPT, "MCP-Protocol-Version": era, "Mcp-Method": "tools/call", "Mcp-Name": name}
        else:
            headers = dict(session)
        if key is not None:
            headers["Idempotency-Key"] = key
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
        answer = hub.request("POST", path, message, headers=headers)
        assert answer.body is not None, answer.text
        return answer.body

    def text(answer: dict[str, object]) -> str:
        result = answer.get("result")
        assert isinstance(result, dict), answer
        return result["content"][0]["text"]

    for era in ("2026-07-28", "2025-11-25"):
        # A read-only tool: the same request twice runs twice.
        for _ in range(2):
            assert text(call(era, "s__peek", {"seconds": 0}, f"read-{era}")) == "slept"
        # bump (no hints) counts its runs: sent again with its key, it is a clear tool error, not run.
        counted += 1
        assert text(call(era, "s__bump", {}, f"bump-{era}")) == str(counted)
        again = call(era, "s__bump", {}, f"bump-{era}")
        assert again["result"]["isError"] is True, again  # type: ignore[index]
        message = text(again)
        assert message.startswith("duplicate_call: ") and "may already have run" in message, message
        assert "'s__bump'" in message, message  # (named as the client names it, not by its catalog id)
        counted += 1
        assert text(call(era, "s__bump", {}, f"bump-2-{era}")) == str(counted)  # (it did not run twice)
        counted += 1
        assert text(call(era, "s__bump", {})) == str(counted)  # (no key: as before)
        # The same key for another call: the 422 of REST, a tool error here.
        reused = text(call(era, "s__peek", {"seconds": 0.01}, f"read-{era}"))
        assert reused.startswith("idempotency_key_reused: "), reused
        # A call that never reached its server (bad arguments) forgets its key.
        for _ in range(2):
            bad = call(era, "s__echo", {"text": 1}, f"echo-{era}")
            assert bad["error"]["code"] == types.INVALID_PARAMS, bad  # type: ignore[index]
        assert text(call(era, "s__echo", {"text": "y"}, f"echo-{era}")) == "y"
        # A bad key: the 400 of REST, a JSON-RPC error naming the header.
        refused = call(era, "s__echo", {"text": "x"}, "clé")
        error = refused["error"]
        assert error["code"] == types.INVALID_PARAMS and "Idempotency-Key" in error["message"], refused  # type: ignore[index]
    # A key is per tenant and per call, whichever door it came through: REST sees the facade's.
    rest = hub.request("POST", "/api/tools/s.bump?tenant=t", {}, headers=_keyed("bump-2026-07-28"))
    assert rest.status == 409 and rest.body["error"]["code"] == "duplicate_call", rest.text
