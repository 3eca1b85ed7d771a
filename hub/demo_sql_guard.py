"""The read-only guard of the demo SQLite server (`hub.demo_sqlite`).

Two layers: `check_read_only_sql` accepts statement text only if it is a single read statement
(SELECT, WITH, EXPLAIN, VALUES, read-only PRAGMA), with a clear tool error for anything else; and
`read_only_authorizer` is the SQLite authorizer that denies every action but reads while the
statement runs (the server also opens the file `mode=ro` and switches `query_only` on). Everything
here runs on the worker thread of the tool call.
"""

from __future__ import annotations

import difflib
import re
import sqlite3
from collections.abc import Callable

from mcp.server.mcpserver.exceptions import ToolError

_READ_KEYWORDS = frozenset({"SELECT", "WITH", "EXPLAIN", "PRAGMA", "VALUES"})
# Every keyword an SQLite statement can start with (https://sqlite.org/lang.html): text starting
# with anything else is no statement at all, which is a syntax error, not a forbidden write.
_STATEMENT_KEYWORDS = _READ_KEYWORDS | frozenset(
    {
        "ALTER",
        "ANALYZE",
        "ATTACH",
        "BEGIN",
        "COMMIT",
        "CREATE",
        "DELETE",
        "DETACH",
        "DROP",
        "END",
        "INSERT",
        "REINDEX",
        "RELEASE",
        "REPLACE",
        "ROLLBACK",
        "SAVEPOINT",
        "UPDATE",
        "VACUUM",
    }
)

# PRAGMAs that may take an argument and still only read (``PRAGMA table_info(users)``). Any other PRAGMA
# with an argument (``PRAGMA user_version = 5``, ``PRAGMA query_only(0)``) is refused.
_READ_PRAGMAS_WITH_ARG = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "foreign_key_check",
        "integrity_check",
        "quick_check",
    }
)

# Authorizer actions a read-only statement needs; everything else is denied.
_ALLOWED_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_FUNCTION,
        sqlite3.SQLITE_RECURSIVE,
    }
)

# Authorizer action codes, named for error messages.
_ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name.replace("_", " ")
    for name in [
        "ALTER_TABLE",
        "ANALYZE",
        "ATTACH",
        "CREATE_INDEX",
        "CREATE_TABLE",
        "CREATE_TEMP_INDEX",
        "CREATE_TEMP_TABLE",
        "CREATE_TEMP_TRIGGER",
        "CREATE_TEMP_VIEW",
        "CREATE_TRIGGER",
        "CREATE_VIEW",
        "CREATE_VTABLE",
        "DELETE",
        "DETACH",
        "DROP_INDEX",
        "DROP_TABLE",
        "DROP_TEMP_INDEX",
        "DROP_TEMP_TABLE",
        "DROP_TEMP_TRIGGER",
        "DROP_TEMP_VIEW",
        "DROP_TRIGGER",
        "DROP_VIEW",
        "DROP_VTABLE",
        "INSERT",
        "PRAGMA",
        "REINDEX",
        "SAVEPOINT",
        "TRANSACTION",
        "UPDATE",
    ]
    if hasattr(sqlite3, f"SQLITE_{name}")
}


def _strip_leading_comments(sql: str) -> str:
    """Drop leading whitespace and SQL comments.

    Args:
        sql: Statement text.

    Returns:
        The text starting at the first token.
    """
    text = sql.lstrip()
    while True:
        if text.startswith("--"):
            newline = text.find("\n")
            text = "" if newline < 0 else text[newline + 1 :].lstrip()
        elif text.startswith("/*"):
            end = text.find("*/", 2)
            text = "" if end < 0 else text[end + 2 :].lstrip()
        else:
            return text


def _split_first_statement(sql: str) -> tuple[str, bool]:
    """Split off the first statement of ``sql``.

    A small lexer skips string literals, quoted identifiers and comments and stops at the first
    ``;``; what follows counts as another statement unless it is only whitespace, comments and
    further semicolons.

    Args:
        sql: Statement text.

    Returns:
        The first statement without its terminator, and whether more statements follow.
    """
    i, n = 0, len(sql)
    closers = {"'": "'", '"': '"', "`": "`", "[": "]"}
    while i < n:
        ch = sql[i]
        if ch in closers:
            end = sql.find(closers[ch], i + 1)
            # A doubled quote ('') is an escaped quote: the next iteration re-enters the literal.
            i = n if end < 0 else end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch == ";":
            return sql[:i], bool(_skip_separators(sql[i + 1 :]))
        else:
            i += 1
    return sql, False


def _skip_separators(sql: str) -> str:
    """Drop leading whitespace, comments and empty statements (stray ``;``).

    Args:
        sql: Statement text.

    Returns:
        The text starting at the first real token.
    """
    while True:
        stripped = _strip_leading_comments(sql).lstrip(";")
        if stripped == sql:
            return sql
        sql = stripped


def check_read_only_sql(sql: str) -> str:
    """Check that statement text is a single read statement.

    Args:
        sql: Statement text supplied by the client.

    Returns:
        The statement to execute (leading comments and the trailing ``;`` removed).

    Raises:
        ToolError: If the text is empty, holds several statements, does not start with an SQL
            statement keyword (a syntax error), or starts with one other than SELECT, WITH,
            EXPLAIN, VALUES or PRAGMA.
    """
    statement, more = _split_first_statement(_skip_separators(sql))
    if not statement.strip():
        raise ToolError("Empty query: provide one SELECT statement.")
    if more:
        raise ToolError("Only a single statement is allowed; remove the extra statements after ';'.")
    match = re.match(r"[A-Za-z_]+|\S", statement)
    word = match.group(0) if match else statement.strip()[:1]
    keyword = word.upper()
    if keyword not in _STATEMENT_KEYWORDS:
        close = difflib.get_close_matches(keyword, sorted(_READ_KEYWORDS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ToolError(
            f'SQL error: near "{word[:40]}": syntax error: not the start of an SQL statement{hint}. '
            "Only SELECT, WITH, EXPLAIN, VALUES and read-only PRAGMA statements can run."
        )
    if keyword not in _READ_KEYWORDS:
        raise ToolError(
            f"Read-only server: {keyword} statements are not allowed. "
            "Only SELECT, WITH, EXPLAIN, VALUES and read-only PRAGMA statements can run."
        )
    return statement


def read_only_authorizer(denied: list[str]) -> Callable[..., int]:
    """An SQLite authorizer that allows reads only, and appends what it denied to `denied` (for the
    error message).

    Args:
        denied: Where each denied action is named.

    Returns:
        The authorizer, for ``Connection.set_authorizer``.
    """

    def authorizer(action: int, arg1: str | None, arg2: str | None, *_: str | None) -> int:
        if action in _ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        read_pragma = arg2 is None or (arg1 or "").lower() in _READ_PRAGMAS_WITH_ARG
        if action == sqlite3.SQLITE_PRAGMA and read_pragma:
            return sqlite3.SQLITE_OK
        # A table-valued function (json_each, pragma_table_info) is reported as an UPDATE of
        # sqlite_master when SQLite sets it up; SQLite itself refuses real writes to that table.
        if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master":
            return sqlite3.SQLITE_OK
        target = " ".join(part for part in (arg1, arg2) if part)
        denied.append(f"{_ACTION_NAMES.get(action, str(action))} {target}".strip())
        return sqlite3.SQLITE_DENY

    return authorizer
