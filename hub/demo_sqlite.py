"""Demo MCP server: read-only SQL over a small SQLite database.

This is the sample upstream server that ships with MCP Hub. It speaks MCP over stdio and exposes a
SQLite file through three read-only tools and one resource:

* ``query`` (``{"sql": str}``): run one ``SELECT`` / ``WITH`` / ``EXPLAIN`` / ``VALUES`` / read-only
  ``PRAGMA`` statement; rows come back as structured content
  ``{"columns", "rows", "row_count", "truncated"}`` (capped at 1000 rows) plus the same JSON as text.
* ``list_tables``: the user tables of the database.
* ``describe_table`` (``{"table": str}``): the columns of one table (name, type, notnull, default, pk).
* resource ``schema://sqlite-demo/schema``: the ``CREATE`` statements of the database.

Writes are impossible by construction: the file is opened with a ``mode=ro`` URI, the connection is
switched to ``query_only``, an SQLite authorizer denies every action but reads, and the statement text
must be a single read statement (both checks live in ``hub.demo_sql_guard``). Rejected statements
and SQL errors are returned as tool errors (``is_error: true``) carrying the reason, never as
crashes.

When the database file does not exist it is created (parent directories included) and seeded with a
``users`` table (10 people) and an ``orders`` table referencing them. An existing file is used as is.

Run it with::

    python -m hub.demo_sqlite --db-path ./data/demo.db

Only stdlib ``sqlite3`` and ``mcp`` (with its own dependencies pydantic and typing_extensions) are
used. Logs go to stderr; stdout carries nothing but the protocol.
"""

from __future__ import annotations

import argparse
import base64
import logging
import math
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations
from pydantic import Field
from typing_extensions import TypedDict  # pydantic needs it for nested TypedDicts before Python 3.12

from hub.demo_sql_guard import check_read_only_sql, read_only_authorizer

SERVER_NAME = "sqlite-demo"
SCHEMA_URI = "schema://sqlite-demo/schema"
MAX_ROWS = 1000
QUERY_TIMEOUT_S = 10.0
DEFAULT_DB_PATH = "./data/demo.db"

logger = logging.getLogger("hub.demo_sqlite")

# Excludes SQLite's own tables (sqlite_sequence, sqlite_stat1, ...).
_NOT_INTERNAL = "name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"

_SEED_SCHEMA = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    product TEXT NOT NULL,
    quantity INTEGER NOT NULL DEFAULT 1,
    total_cents INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX idx_orders_user_id ON orders(user_id);
"""

_SEED_USERS: list[tuple[int, str, str, str]] = [
    (1, "Alice Johnson", "alice.johnson@example.com", "2024-01-05 09:12:44"),
    (2, "Bruno Martins", "bruno.martins@example.com", "2024-01-17 14:03:10"),
    (3, "Chloé Dubois", "chloe.dubois@example.org", "2024-02-02 08:45:31"),
    (4, "Deepak Sharma", "deepak.sharma@example.net", "2024-02-20 17:22:05"),
    (5, "Emma Schmidt", "emma.schmidt@example.com", "2024-03-11 11:59:58"),
    (6, "Farah Haddad", "farah.haddad@example.org", "2024-03-29 19:30:12"),
    (7, "George Okafor", "george.okafor@example.com", "2024-04-14 07:08:23"),
    (8, "Hana Suzuki", "hana.suzuki@example.jp", "2024-05-03 13:47:36"),
    (9, "Ivan Petrov", "ivan.petrov@example.net", "2024-05-26 16:15:49"),
    (10, "Julia Rossi", "julia.rossi@example.it", "2024-06-08 10:26:17"),
]

_SEED_ORDERS: list[tuple[int, int, str, int, int, str, str]] = [
    (1, 1, "Mechanical keyboard", 1, 8999, "shipped", "2024-02-01 10:00:00"),
    (2, 1, "USB-C cable", 3, 2397, "delivered", "2024-02-03 12:30:00"),
    (3, 2, "Standing desk", 1, 34900, "delivered", "2024-02-10 09:15:00"),
    (4, 3, "Noise-cancelling headphones", 1, 19999, "shipped", "2024-03-05 18:40:00"),
    (5, 5, "Coffee grinder", 1, 5450, "pending", "2024-04-01 08:05:00"),
    (6, 5, "Espresso beans 1kg", 2, 3980, "pending", "2024-04-01 08:06:00"),
    (7, 7, "Monitor arm", 1, 7900, "cancelled", "2024-05-12 21:20:00"),
    (8, 8, "Notebook set", 4, 1996, "delivered", "2024-06-02 15:45:00"),
]


class QueryResult(TypedDict):
    """Structured result of the ``query`` tool."""

    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool


class TableList(TypedDict):
    """Structured result of the ``list_tables`` tool."""

    tables: list[str]


class ColumnInfo(TypedDict):
    """One column as reported by ``PRAGMA table_info``."""

    name: str
    type: str
    notnull: bool
    default: str | None
    pk: int


class TableDescription(TypedDict):
    """Structured result of the ``describe_table`` tool."""

    table: str
    columns: list[ColumnInfo]


def seed_database(db_path: Path) -> bool:
    """Create and seed the demo database if the file does not exist yet.

    The database is built in a temporary file next to the target and moved into place, so a crash
    never leaves a half-seeded file and an existing file is never overwritten.

    Args:
        db_path: Location of the SQLite file.

    Returns:
        True if the file was created and seeded, False if it already existed.
    """
    if db_path.exists() and db_path.stat().st_size > 0:
        return False
    db_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{db_path.name}.", suffix=".tmp", dir=db_path.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        conn = sqlite3.connect(tmp_path)
        try:
            with conn:
                conn.executescript(_SEED_SCHEMA)
                conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?)", _SEED_USERS)
                conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?)", _SEED_ORDERS)
        finally:
            conn.close()
        if db_path.exists() and db_path.stat().st_size > 0:
            return False  # Another process won the race; keep its file.
        os.replace(tmp_path, db_path)
    finally:
        tmp_path.unlink(missing_ok=True)
    logger.info("Created and seeded demo database at %s", db_path)
    return True


def _json_value(value: Any) -> Any:
    """Make one SQLite value JSON-safe.

    Args:
        value: A value as returned by sqlite3 (None, int, float, str or bytes).

    Returns:
        The value, with BLOBs as base64 text and non-finite floats as strings.
    """
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class SqliteDemo:
    """Read-only access to one SQLite file.

    Every call opens its own short-lived read-only connection, so the tools are safe to run on the
    worker threads MCPServer uses for synchronous tools.

    Args:
        db_path: Location of the SQLite file (it must exist).
        max_rows: Cap on the rows returned by ``query``.
        timeout_s: Wall-clock limit for one query.
    """

    def __init__(self, db_path: Path, max_rows: int = MAX_ROWS, timeout_s: float = QUERY_TIMEOUT_S) -> None:
        self.db_path = db_path
        self.max_rows = max_rows
        self.timeout_s = timeout_s

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """Open a read-only connection to the database.

        Yields:
            A connection opened with ``mode=ro`` and ``query_only`` switched on.
        """
        uri = f"{self.db_path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        try:
            conn.execute("PRAGMA query_only = ON")
            # Load the schema now: SQLite reports its own schema parsing to an authorizer as writes.
            conn.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchall()
            yield conn
        finally:
            conn.close()

    def query(self, sql: str) -> QueryResult:
        """Run one read-only statement.

        Args:
            sql: The statement.

        Returns:
            Column names, up to ``max_rows`` rows, the number of rows returned and whether more rows
            were available.

        Raises:
            ToolError: If the statement is not a single read, or SQLite rejects it.
        """
        statement = check_read_only_sql(sql)
        denied: list[str] = []

        deadline = time.monotonic() + self.timeout_s
        with self.connect() as conn:
            conn.set_authorizer(read_only_authorizer(denied))
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            try:
                cursor = conn.execute(statement)
                columns = [d[0] for d in cursor.description or ()]
                fetched = cursor.fetchmany(self.max_rows + 1)
            except sqlite3.ProgrammingError as exc:
                if "one statement" in str(exc):
                    raise ToolError("Only a single statement is allowed.") from exc
                raise ToolError(f"SQL error: {exc}") from exc
            except sqlite3.Error as exc:
                if denied:
                    raise ToolError(f"Read-only server: operation not allowed ({denied[0]}).") from exc
                if isinstance(exc, sqlite3.OperationalError) and str(exc) == "interrupted":
                    raise ToolError(f"Query exceeded the {self.timeout_s:g} s time limit.") from exc
                raise ToolError(f"SQL error: {exc}") from exc
        truncated = len(fetched) > self.max_rows
        rows = [[_json_value(v) for v in row] for row in fetched[: self.max_rows]]
        return {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": truncated}

    def list_tables(self) -> TableList:
        """List the user tables.

        Returns:
            Table names in alphabetical order, SQLite's internal tables excluded.
        """
        with self.connect() as conn:
            names = conn.execute(
                f"SELECT name FROM sqlite_schema WHERE type = 'table' AND {_NOT_INTERNAL} ORDER BY name"
            ).fetchall()
        return {"tables": [name for (name,) in names]}

    def describe_table(self, table: str) -> TableDescription:
        """Describe the columns of one table or view.

        Args:
            table: Table name.

        Returns:
            The table name and its columns.

        Raises:
            ToolError: If there is no such table.
        """
        with self.connect() as conn:
            found = conn.execute(
                "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name = ?", (table,)
            ).fetchone()
            if found is None:
                raise ToolError(f"No such table: {table!r}. Call list_tables to see the available tables.")
            info = conn.execute(
                'SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?) ORDER BY cid',
                (table,),
            ).fetchall()
        columns: list[ColumnInfo] = [
            {"name": name, "type": col_type, "notnull": bool(notnull), "default": default, "pk": pk}
            for name, col_type, notnull, default, pk in info
        ]
        return {"table": found[0], "columns": columns}

    def schema_sql(self) -> str:
        """Collect the CREATE statements of the database.

        Returns:
            Tables first, then indexes, views and triggers, each statement ending with ``;``.
        """
        with self.connect() as conn:
            statements = conn.execute(
                f"SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND {_NOT_INTERNAL} "
                "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2 ELSE 3 END, "
                "name"
            ).fetchall()
        return "".join(f"{sql};\n\n" for (sql,) in statements)


def build_server(db_path: Path) -> MCPServer:
    """Build the ``sqlite-demo`` MCP server for one database file.

    Args:
        db_path: Location of the SQLite file; created and seeded when missing.

    Returns:
        The configured server, ready to ``run()``.
    """
    seed_database(db_path)
    demo = SqliteDemo(db_path)
    server = MCPServer(
        SERVER_NAME,
        instructions=(
            "Read-only SQL access to a demo SQLite database (tables users and orders). "
            "Call list_tables / describe_table, then query with a single SELECT."
        ),
    )
    _add_tools(server, demo)
    _add_schema_resource(server, demo)
    return server


def _add_tools(server: MCPServer, demo: SqliteDemo) -> None:
    """Register the three read-only tools of ``demo`` on ``server``.

    Args:
        server: The server being built.
        demo: The database access the tools call.
    """
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    @server.tool(
        description=(
            f"Run one read-only SQL statement (SELECT, WITH, EXPLAIN, VALUES or read-only PRAGMA) against "
            f"the SQLite database. Returns columns, rows (at most {MAX_ROWS}), row_count and truncated."
        ),
        annotations=read_only,
    )
    def query(sql: Annotated[str, Field(description="A single read-only SQLite statement.")]) -> QueryResult:
        """Run one read-only statement (see SqliteDemo.query).

        Args:
            sql: The statement.

        Returns:
            The query result.
        """
        return demo.query(sql)

    @server.tool(description="List the tables of the SQLite database.", annotations=read_only)
    def list_tables() -> TableList:
        """List the user tables (see SqliteDemo.list_tables).

        Returns:
            The table names.
        """
        return demo.list_tables()

    @server.tool(
        description="Describe the columns of a table: name, type, notnull, default and pk.",
        annotations=read_only,
    )
    def describe_table(table: Annotated[str, Field(description="Table name.")]) -> TableDescription:
        """Describe one table (see SqliteDemo.describe_table).

        Args:
            table: Table name.

        Returns:
            The table's columns.
        """
        return demo.describe_table(table)


def _add_schema_resource(server: MCPServer, demo: SqliteDemo) -> None:
    """Register the schema resource of ``demo`` on ``server``.

    Args:
        server: The server being built.
        demo: The database access the resource reads.
    """

    @server.resource(
        SCHEMA_URI,
        name="schema",
        title="Database schema",
        description="CREATE statements of all tables and indexes in the demo database.",
        mime_type="application/sql",
    )
    def schema() -> str:
        """Return the database schema as SQL.

        Returns:
            The CREATE statements.

        Raises:
            ResourceError: If the database cannot be read.
        """
        try:
            return demo.schema_sql()
        except sqlite3.Error as exc:
            raise ResourceError(f"Cannot read the schema: {exc}") from exc


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The parsed options.
    """
    parser = argparse.ArgumentParser(
        prog="python -m hub.demo_sqlite",
        description="Demo MCP server (stdio): read-only SQL over a SQLite file, seeded when missing.",
    )
    parser.add_argument(
        "--db-path",
        type=Path,
        default=Path(DEFAULT_DB_PATH),
        help=f"SQLite database file; created and seeded if missing (default: {DEFAULT_DB_PATH}).",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="Log level; logs go to stderr (default: INFO).",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo server over stdio until the client disconnects.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The process exit status.
    """
    args = parse_args(argv)
    # Configure before MCPServer does, so every record goes to stderr: stdout is the protocol.
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        server = build_server(args.db_path)
    except (OSError, sqlite3.Error) as exc:
        logger.error("Cannot open the demo database %s: %s", args.db_path, exc)
        return 1
    logger.info("Serving %s over stdio (database %s)", SERVER_NAME, args.db_path.resolve())
    with suppress(KeyboardInterrupt):
        server.run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
