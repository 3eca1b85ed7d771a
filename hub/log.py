"""Logging, set up once per process: to stderr, at `--log-level`, else `$LOG_LEVEL`, else INFO.

`LOG_FORMAT=json` writes one JSON object per line (`time`, `level`, `logger`, `message`, and
`exception` when there is one) instead of text. Stdout is never used for logs: the stdio facade
owns it for protocol bytes.

`install_stack_dump` makes a signal (SIGUSR1 for `serve`) log every thread's stack: the way to
see where a hub that hangs is stuck, without stopping it.

No key ever reaches the log, whoever logs it (the hub, Tornado, the MCP SDK): `KeyScrubber`, a
filter on the root handler, rewrites every record's message, traceback and stack before it is
written, replacing the configured keys (`hide_keys`; as written and URL-encoded), the value of
any `Authorization` header or `Bearer` credential, and `token=` query values with `********`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote, quote_plus

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


MASK = "********"
# An Authorization header's value (as `Name: value`, in a dict's repr or in JSON), a Bearer or
# Basic credential anywhere, and a `token=` query value.
_PATTERNS = (
    re.compile(r"""(?i)(authorization['"]?\s*[:=]\s*['"]?)([^'"\r\n,}]+)"""),
    re.compile(r"""(?i)\b((?:bearer|basic)(?:\s|%20|\+)+)([^\s'",;&}]+)"""),
    re.compile(r"""(?i)([?&;]token=)([^&\s'"#;]+)"""),
)


class KeyScrubber(logging.Filter):
    """Rewrites every record so that no key is in it (see the module docstring). Any thread."""

    def __init__(self) -> None:
        super().__init__()
        self._source: Callable[[], Iterable[str]] = tuple
        self._keys: tuple[Iterable[str] | None, tuple[str, ...]] = (None, ())

    def hide(self, source: Callable[[], Iterable[str]]) -> None:
        """Also replace the keys `source` returns (called for each record; it should return the
        same object while the keys do not change, which keeps this cheap)."""
        self._source = source

    def _secrets(self) -> tuple[str, ...]:
        keys = self._source()
        if self._keys[0] is not keys:
            variants = {v for k in keys if k for v in (k, quote(k, safe=""), quote_plus(k))}
            self._keys = (keys, tuple(sorted(variants, key=len, reverse=True)))
        return self._keys[1]

    def scrub(self, text: str) -> str:
        """`text` with every key in it masked."""
        for secret in self._secrets():
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: let the handler report it as usual
            return True
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


SCRUBBER = KeyScrubber()


def hide_keys(source: Callable[[], Iterable[str]]) -> None:
    """Mask the keys `source` returns in every log line from now on (see `KeyScrubber.hide`)."""
    SCRUBBER.hide(source)


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            line["exception"] = record.exc_text
        elif record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def setup_logging(level: str | None = None) -> None:
    """Send every log record of the process to stderr at the chosen level.

    Args:
        level: a name of `LEVELS` (any case); `None` reads `$LOG_LEVEL`, defaulting to INFO.

    Raises:
        ValueError: the level is not one of `LEVELS`.
    """
    name = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)} (got {name!r})")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    json_format = os.environ.get("LOG_FORMAT", "text").lower() == "json"
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter(_FORMAT))
    handler.addFilter(SCRUBBER)
    root.addHandler(handler)
    root.setLevel(name)
    # pykka logs every exception an actor returns to its caller, traceback included, at INFO; for
    # the hub those are answers (a 404, a 409 while a server restarts), not failures. Actor crashes
    # are still logged at ERROR.
    logging.getLogger("pykka").setLevel(max(logging.WARNING, root.level))


def thread_stacks(interrupted: FrameType | None = None) -> str:
    """Every thread's name, ident and stack (innermost frame last), as text.

    Args:
        interrupted: the calling thread's frame to start from (a signal handler's `frame`: where
            the signal interrupted it); by default the caller's own stack.
    """
    names = {thread.ident: thread for thread in threading.enumerate()}
    frames = sys._current_frames()
    if interrupted is not None:
        frames[threading.get_ident()] = interrupted
    parts = [f"{len(frames)} threads"]
    for ident, frame in sorted(frames.items(), key=lambda item: item[0] != threading.main_thread().ident):
        thread = names.get(ident)
        name = thread.name if thread is not None else "(unknown)"
        daemon = " daemon" if thread is not None and thread.daemon else ""
        stack = "".join(traceback.format_stack(frame)).rstrip()
        parts.append(f"thread {name} (ident {ident}{daemon}):\n{stack}")
    return "\n".join(parts)


def install_stack_dump(signum: int = signal.SIGUSR1) -> Callable[[], None]:
    """On `signum`, log every thread's stack at WARNING (logger `hub.stacks`), then carry on.

    A plain signal handler, not the event loop's: it runs on the main thread between two bytecodes
    even when the loop is stuck in a long call, which is when a dump is wanted. Call on the main
    thread.

    Returns:
        A function that puts the previous handler back.
    """
    logger = logging.getLogger("hub.stacks")

    def dump(signo: int, frame: FrameType | None) -> None:
        logger.warning("stack dump on %s: %s", signal.Signals(signo).name, thread_stacks(frame))

    previous = signal.signal(signum, dump)

    def restore() -> None:
        signal.signal(signum, previous)

    return restore


def log_tail(path: Path, tail: int, max_bytes: int, *secrets: Any) -> list[str]:
    """The last `tail` lines of a server's stderr log `path` (its rotated `.1` file too if need be,
    each read up to its last `max_bytes`), with the values of `secrets` (`SecretMap`s) masked."""
    from hub.config import redact

    lines: list[str] = []
    for part in (path, path.with_name(path.name + ".1")):
        if len(lines) >= tail:
            break
        try:
            text = part.read_bytes()[-max_bytes:].decode("utf-8", "replace")
        except FileNotFoundError:
            continue
        lines = text.splitlines()[-(tail - len(lines)) :] + lines
    return [redact(line, *secrets) for line in lines[-tail:]] if tail else []
