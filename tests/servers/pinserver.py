"""A test server whose tools come from a JSON file the test rewrites (pinned tools, issue 23).

    python tests/servers/pinserver.py --tools-file FILE [testserver.py flags, e.g. --list-changed]

FILE is `{"tools": {"<name>": {"description": "...", "schema": {...}}}}` (`schema` optional: an
empty object schema). Each of its tools answers `<name>: ok <arguments as JSON>`. Tool `reread`
reads FILE again and announces that the tool list changed (both eras, as testserver.py's
`add_tool` does: run with `--list-changed`). Every tool of testserver.py is there too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import mcp.types as types
import testserver
from testserver import _EMPTY_SCHEMA, Ctx, TestServer, text_result


class PinServer(TestServer):
    """testserver.py's server, plus the tools of FILE and `reread`."""

    file: Path

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self._from_file: set[str] = set()
        self._load()
        self.add("reread", "Read the tools file again and announce the change.", _EMPTY_SCHEMA, self._reread)

    def _load(self) -> None:
        for name in self._from_file:
            self.tools.pop(name, None)
        data = json.loads(self.file.read_text())
        for name, spec in data["tools"].items():
            self.add(name, spec["description"], spec.get("schema", _EMPTY_SCHEMA), self._answer_as(name))
        self._from_file = set(data["tools"])

    def _answer_as(self, name: str) -> Any:
        async def answer(ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
            return text_result(f"{name}: ok {json.dumps(args, sort_keys=True)}")

        return answer

    async def _reread(self, ctx: Ctx, args: dict[str, Any]) -> types.CallToolResult:
        self._load()
        await self._announce(ctx)
        return text_result(f"reread: {sorted(self._from_file)}")


def main() -> int:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--tools-file", required=True, type=Path)
    known, rest = own.parse_known_args()
    PinServer.file = known.tools_file
    testserver.TestServer = PinServer  # type: ignore[misc]  (its `serve` builds this class)
    return testserver.main(rest)


if __name__ == "__main__":
    sys.exit(main())
