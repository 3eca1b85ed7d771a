"""The official MCP conformance suite (runner 0.1.13, see tests/conformance.py) against our own fixture
server, tests/servers/conformanceserver.py, run directly (no hub in between): the baseline that a run
through the hub's facade is compared with.

The default (active) suite runs 30 server scenarios; every one must pass with no failed check and at
least one passed. The suite's two pending scenarios (`conformance.PENDING`: `json-schema-2020-12`,
`server-sse-polling`) are not in it, so they are not asserted on; the set the runner ran must be
exactly its listed scenarios minus those two, so an upgrade that changes the pending list fails here.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from conformance import CONFORMANCE_SERVER, PENDING, fixture_over_http, listed_scenarios, run_conformance
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client


def test_the_fixture_passes_every_active_scenario_directly(tmp_path: Path) -> None:
    with fixture_over_http(tmp_path / "fixture.stderr") as url:
        run = run_conformance(url)
    assert not run.problems(), run.report()
    assert len(run.started) == 30, run.report()
    assert set(run.started) == listed_scenarios() - set(PENDING), run.report()
    assert set(run.results) == set(run.started), run.report()
    assert run.returncode == 0, run.report()
    # the runner's figures agree with the checks it saved: nothing hidden behind a warning
    for name, (passed, failed) in run.results.items():
        assert (run.statuses[name]["SUCCESS"], run.statuses[name]["FAILURE"]) == (passed, failed), name
    assert run.statuses["elicitation-sep1330-enums"]["SUCCESS"] == 5  # one check per enum shape


def test_a_list_of_scenarios_runs_one_by_one_and_an_unknown_one_has_no_result(tmp_path: Path) -> None:
    # a pending scenario runs when named: the fixture serves json_schema_2020_12_tool as it asks
    with fixture_over_http(tmp_path / "fixture.stderr") as url:
        run = run_conformance(url, ["json-schema-2020-12", "no-such-scenario"])
    assert run.results == {"json-schema-2020-12": (4, 0)}, run.report()
    assert run.problems() == ["no-such-scenario: no result in the runner's output"], run.report()
    assert run.returncode == 1


async def _over_stdio(stderr_path: Path, mode: str) -> tuple[set[str], str]:
    with stderr_path.open("w") as errlog:
        params = StdioServerParameters(command=sys.executable, args=[CONFORMANCE_SERVER])
        async with Client(stdio_client(params, errlog=errlog), mode=mode, cache=None) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool("test_simple_text", {})
    block = result.content[0]
    return tools, getattr(block, "text", repr(block))


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_the_fixture_serves_over_stdio_in_both_eras(tmp_path: Path, mode: str) -> None:
    tools, text = asyncio.run(_over_stdio(tmp_path / "fixture.stderr", mode))
    assert {"test_simple_text", "test_sampling", "test_elicitation", "test_tool_with_progress"} <= tools
    assert text == "This is a simple text response for testing."
