"""Tool calls to stdio servers go over the hub's own wire channel (`actors/upstream/rawcall.py`): what the
SDK client used to check for the hub, the channel must check, and every odd answer is a clear error."""

from __future__ import annotations

import sys

import pytest
from conftest import SERVERS_DIR, binds, server, wait_until

from hub.errors import BadRequest, CallTimeout, UpstreamError

WIRE = {
    "command": sys.executable,
    "args": [str(SERVERS_DIR / "wireserver.py")],
    "sandbox": binds(SERVERS_DIR),
}


@pytest.fixture
def wire_hub(make_hub):
    hub = make_hub({"t": {"servers": {"w": dict(WIRE, call_timeout=1)}}})
    assert hub.start_tenant("t") == {"w": "running"}
    return hub


def test_a_normal_answer_and_the_odd_ones(wire_hub) -> None:
    hub = wire_hub
    result = hub.call_tool("t", "w.echo", {"text": "hi"})
    assert (result.content, result.structured_content, result.is_error) == (
        ({"type": "text", "text": "hi"},),
        {"text": "hi"},
        False,
    )
    with pytest.raises(UpstreamError, match="answered tool 'bad_content' without a valid 'content' list"):
        hub.call_tool("t", "w.bad_content", {})
    with pytest.raises(UpstreamError, match="'structuredContent' that is not an object"):
        hub.call_tool("t", "w.bad_structured", {})
    # (an input_required round is answered and the call sent again, a bounded number of times)
    with pytest.raises(UpstreamError, match="asked for input more than 16 times in one call"):
        hub.call_tool("t", "w.input", {})
    with pytest.raises(UpstreamError, match="neither a result nor an error"):
        hub.call_tool("t", "w.neither", {})
    with pytest.raises(UpstreamError, match="answered with an error: no way"):
        hub.call_tool("t", "w.refuse", {})
    with pytest.raises(BadRequest, match="rejected the arguments: wrong arguments"):
        hub.call_tool("t", "w.wrong_args", {})
    # None of it cost the connection: same process, still answering.
    pid = hub.server("t", "w").pid
    assert hub.call_tool("t", "w.echo", {"text": "still"}).structured_content == {"text": "still"}
    assert hub.server("t", "w").pid == pid and hub.server("t", "w").restarts == 0


def test_lines_that_merely_mention_the_id_prefix_are_not_taken_for_answers(wire_hub) -> None:
    result = wire_hub.call_tool("t", "w.mention", {})
    assert result.content == ({"type": "text", "text": '"hub-2" is just text'},)
    assert wire_hub.call_tool("t", "w.echo", {"text": "next"}).structured_content == {"text": "next"}


def test_a_call_that_times_out_is_cancelled_on_the_server(wire_hub) -> None:
    with pytest.raises(CallTimeout, match="timed out after 1 s"):
        wire_hub.call_tool("t", "w.wait", {})
    assert wait_until(
        lambda: any(line.startswith("cancelled hub-") for line in wire_hub.server_log("t", "w")), 5
    )
    assert wire_hub.call_tool("t", "w.echo", {"text": "after"}).structured_content == {"text": "after"}


def test_junk_and_sdk_servers_still_work_over_the_channel(make_hub) -> None:
    hub = make_hub({"t": {"servers": {"junk": server("--junk-stdout"), "legacy": server("--legacy-only")}}})
    hub.start_tenant("t")
    for name in ("junk", "legacy"):
        assert hub.call_tool("t", f"{name}.echo", {"text": name}).structured_content == {"text": name}
        assert hub.call_tool("t", f"{name}.fail", {}).is_error
