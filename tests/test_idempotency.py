"""The `Idempotency-Key` header of REST tool calls on a lone hub (`hub.idempotency`): a request
sent again with its key runs again only if its tool is read-only or idempotent; otherwise it is a
clear 409 and the tool does not run twice. A real `python -m hub serve` and a real test server.
"""

from __future__ import annotations

from conftest import server


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
