"""`CappedLog`: a server's log file (its stderr, and the hub's notes about it), capped in size.

Written from the owning server's loop only.
"""

from __future__ import annotations

import os
from pathlib import Path


class CappedLog:
    """A log file capped at `max_bytes`: when full it is renamed to `<name>.1` and started anew.

    Written from one loop only.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "ab")  # noqa: SIM115 - closed by close()
        self._size = self._file.tell()

    def write(self, data: bytes) -> None:
        """Append `data`, rotating first if it would pass the cap."""
        if self._size + len(data) > self.max_bytes and self._size:
            self._file.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._file = open(self.path, "ab")  # noqa: SIM115
            self._size = 0
        self._file.write(data[-self.max_bytes :])
        self._file.flush()
        self._size += min(len(data), self.max_bytes)

    def note(self, text: str) -> None:
        """Append a line written by the hub itself (marked, so it is told apart from the server's)."""
        self.write(f"[mcp-hub] {text}\n".encode())

    def close(self) -> None:
        """Close the file."""
        self._file.close()
