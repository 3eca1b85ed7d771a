"""Server-sent events, parsed as they arrive (the WHATWG "event stream" format), for the hub's
own channel to Streamable HTTP servers (`actors.upstream.httpcall`).

Lines end with CRLF, LF or CR; `data` lines of one event are joined with LF; an `id` without NUL
is the stream's last event id; `retry` takes digits only; comments (`:`) and unknown fields are
ignored; a blank line dispatches the event. An event over `limit` bytes is refused (ValueError).
Runs on whichever loop feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """One dispatched event (`data` empty: an event with no data, e.g. a priming one)."""

    event: str
    data: str
    id: str | None
    retry: int | None


class SseParser:
    """Feed bytes in, get complete events out."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pending = b""
        self._data: list[str] = []
        self._size = 0
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._cr = False  # the last chunk ended with CR (its LF may start the next one)

    def feed(self, chunk: bytes) -> list[Event]:
        """The events `chunk` completes.

        Raises:
            ValueError: an event (or a line) over the limit.
        """
        if self._cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._cr = chunk.endswith(b"\r")
        buffer = self._pending + chunk
        lines = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > self._limit:
            raise ValueError(f"an event over {self._limit // 2**20} MiB")
        events: list[Event] = []
        for line in lines:
            event = self._line(line.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._size += len(value) + 1
            if self._size > self._limit:
                raise ValueError(f"an event over {self._limit // 2**20} MiB")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        if not self._data and not self._event and self._id is None and self._retry is None:
            return None
        event = Event(self._event or "message", "\n".join(self._data), self._id, self._retry)
        self._data, self._size, self._event, self._retry = [], 0, "", None
        return event
