"""End-to-end tests of the demo SQLite MCP server (``hub.demo_sqlite``).

Every test starts the server as a real subprocess (``python -m hub.demo_sqlite``) and talks to it over
stdio with the ``mcp`` client, exactly as the hub will.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import mcp.types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_URI = "schema://sqlite-demo/schema"
USER_COLUMNS = ["id", "name", "email", "created_at"]

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """Run the async tests on asyncio only."""
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database path whose parent directories do not exist yet."""
    return tmp_path / "data" / "nested" / "demo.db"


@asynccontextmanager
async def connect(
    db_path: Path, log_path: Path, mode: Literal["auto", "legacy"] = "auto"
) -> AsyncIterator[Client]:
    """Start the demo server over stdio and yield a connected client.

    Args:
        db_path: Database file handed to ``--db-path``.
        log_path: File that receives the server's stderr (appended to).
        mode: Client protocol mode.

    Yields:
        The connected client (no response caching).
    """
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "hub.demo_sqlite", "--db-path", str(db_path)],
        cwd=REPO_ROOT,
    )
    with log_path.open("a", encoding="utf-8") as errlog:
        async with Client(stdio_client(params, errlog=errlog), cache=None, mode=mode) as client:
            yield client


def text_of(result: types.CallToolResult) -> str:
    """Concatenate the text blocks of a tool result."""
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def call_ok(client: Client, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call a tool that must succeed and return its structured content."""
    result = await client.call_tool(name, arguments or {})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, name: str, arguments: dict[str, Any]) -> str:
    """Call a tool that must fail with a tool error and return the error text."""
    result = await client.call_tool(name, arguments)
    assert result.is_error, f"expected a tool error, got {result!r}"
    message = text_of(result)
    assert message
    return message


async def user_count(client: Client) -> int:
    """Count the rows of ``users`` through the query tool."""
    data = await call_ok(client, "query", {"sql": "SELECT count(*) AS n FROM users"})
    return data["rows"][0][0]


async def test_tools_are_listed_with_input_schemas(db_path: Path, tmp_path: Path) -> None:
    async with connect(db_path, tmp_path / "server.log") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert {"query", "list_tables", "describe_table"} <= tools.keys()
        for tool in tools.values():
            assert tool.input_schema["type"] == "object"
            assert tool.description
        assert tools["query"].input_schema["required"] == ["sql"]
        assert tools["query"].input_schema["properties"]["sql"]["type"] == "string"
        assert tools["describe_table"].input_schema["required"] == ["table"]
        assert not tools["list_tables"].input_schema.get("required")
        assert tools["query"].annotations is not None and tools["query"].annotations.read_only_hint


async def test_select_returns_rows_as_structured_and_text(db_path: Path, tmp_path: Path) -> None:
    async with connect(db_path, tmp_path / "server.log") as client:
        result = await client.call_tool("query", {"sql": "SELECT * FROM users LIMIT 10"})
        assert not result.is_error, text_of(result)
        data = result.structured_content
        assert data is not None
        assert data["columns"] == USER_COLUMNS
        assert data["row_count"] == 10
        assert len(data["rows"]) == 10
        assert data["truncated"] is False
        assert all(len(row) == len(USER_COLUMNS) for row in data["rows"])
        assert all("@" in row[2] for row in data["rows"])
        assert json.loads(text_of(result)) == data


async def test_query_caps_rows_and_flags_truncation(db_path: Path, tmp_path: Path) -> None:
    sql = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n LIMIT 1500) SELECT x FROM n"
    async with connect(db_path, tmp_path / "server.log") as client:
        data = await call_ok(client, "query", {"sql": sql})
        assert data["row_count"] == 1000
        assert len(data["rows"]) == 1000
        assert data["truncated"] is True


async def test_list_tables_and_describe_table(db_path: Path, tmp_path: Path) -> None:
    async with connect(db_path, tmp_path / "server.log") as client:
        tables = (await call_ok(client, "list_tables"))["tables"]
        assert {"users", "orders"} <= set(tables)

        description = await call_ok(client, "describe_table", {"table": "users"})
        assert description["table"] == "users"
        columns = {column["name"]: column for column in description["columns"]}
        assert list(columns) == USER_COLUMNS
        assert set(columns["id"]) == {"name", "type", "notnull", "default", "pk"}
        assert columns["id"]["pk"] == 1
        assert columns["email"]["type"] == "TEXT"
        assert columns["email"]["notnull"] is True

        message = await call_error(client, "describe_table", {"table": "no_such_table"})
        assert "no_such_table" in message


WRITES = [
    "DELETE FROM users",
    "UPDATE users SET name = 'x'",
    "INSERT INTO users (name, email) VALUES ('x', 'x@example.com')",
    "DROP TABLE users",
    "CREATE TABLE evil (x)",
    "ATTACH DATABASE ':memory:' AS other",
    "WITH doomed AS (SELECT id FROM users) DELETE FROM users WHERE id IN (SELECT id FROM doomed)",
    "PRAGMA user_version = 42",
]


async def test_writes_are_tool_errors_and_data_survives(db_path: Path, tmp_path: Path) -> None:
    async with connect(db_path, tmp_path / "server.log") as client:
        assert await user_count(client) == 10
        for sql in WRITES:
            message = await call_error(client, "query", {"sql": sql})
            assert "not allowed" in message, (sql, message)
        assert await user_count(client) == 10
        tables = (await call_ok(client, "list_tables"))["tables"]
        assert sorted(tables) == ["orders", "users"]
        version = await call_ok(client, "query", {"sql": "PRAGMA user_version"})
        assert version["rows"] == [[0]]
    # The file itself is untouched too.
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (10,)
    conn.close()


async def test_multiple_statements_are_rejected(db_path: Path, tmp_path: Path) -> None:
    async with connect(db_path, tmp_path / "server.log") as client:
        message = await call_error(client, "query", {"sql": "SELECT 1; DELETE FROM users"})
        assert "single statement" in message
        message = await call_error(client, "query", {"sql": "SELECT 1; SELECT 2"})
        assert "single statement" in message
        # A trailing semicolon, or one inside a literal, is still a single statement.
        data = await call_ok(client, "query", {"sql": "SELECT 'a;b' AS s;"})
        assert data["rows"] == [["a;b"]]
        assert await user_count(client) == 10


async def test_sql_errors_are_tool_errors_naming_the_problem(db_path: Path, tmp_path: Path) -> None:
    async with connect(db_path, tmp_path / "server.log") as client:
        message = await call_error(client, "query", {"sql": "SELECT * FROM users WHERE AND id = 1"})
        assert 'near "AND": syntax error' in message
        message = await call_error(client, "query", {"sql": "SELECT * FROM missing_table"})
        assert "no such table: missing_table" in message
        # A typo of a statement keyword is a syntax error, not a forbidden statement.
        message = await call_error(client, "query", {"sql": "SELEC oops"})
        assert 'near "SELEC": syntax error' in message and "did you mean SELECT?" in message, message
        assert "not allowed" not in message
        message = await call_error(client, "query", {"sql": "(SELECT 1)"})
        assert 'near "(": syntax error' in message and "not allowed" not in message, message
        # The server keeps serving after errors.
        assert await user_count(client) == 10


async def test_schema_resource(db_path: Path, tmp_path: Path) -> None:
    async with connect(db_path, tmp_path / "server.log") as client:
        resources = (await client.list_resources()).resources
        assert SCHEMA_URI in {str(resource.uri) for resource in resources}
        result = await client.read_resource(SCHEMA_URI)
        assert len(result.contents) == 1
        content = result.contents[0]
        assert isinstance(content, types.TextResourceContents)
        assert "CREATE TABLE users" in content.text
        assert "CREATE TABLE orders" in content.text


async def test_legacy_handshake_client(db_path: Path, tmp_path: Path) -> None:
    async with connect(db_path, tmp_path / "server.log", mode="legacy") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"query", "list_tables", "describe_table"} <= names
        assert await user_count(client) == 10


async def test_database_created_on_first_run_and_reused_after(db_path: Path, tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    assert not db_path.parent.exists()
    async with connect(db_path, log_path) as client:
        assert await user_count(client) == 10
    assert db_path.is_file()
    assert "seeded" in log_path.read_text(encoding="utf-8")  # logs reach stderr, not the protocol stream

    # Change the data behind the server's back: a re-seed or a clobbered file would lose this row.
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO users (name, email) VALUES ('Zoe Sentinel', 'zoe@example.com')")
    conn.close()

    async with connect(db_path, log_path) as client:
        assert await user_count(client) == 11
        data = await call_ok(
            client, "query", {"sql": "SELECT name FROM users WHERE email = 'zoe@example.com'"}
        )
        assert data["rows"] == [["Zoe Sentinel"]]
    assert log_path.read_text(encoding="utf-8").count("seeded") == 1
