"""Logging, set up once per process: to stderr, at `--log-level`, else `$LOG_LEVEL`, else INFO.

`LOG_FORMAT=json` writes one JSON object per line (`time`, `level`, `logger`, `message`, and
`exception` when there is one) instead of text. Stdout is never used for logs: the stdio facade
owns it for protocol bytes.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


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
        if record.exc_info:
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
    root.addHandler(handler)
    root.setLevel(name)
    # pykka logs every exception an actor returns to its caller, traceback included, at INFO; for
    # the hub those are answers (a 404, a 409 while a server restarts), not failures. Actor crashes
    # are still logged at ERROR.
    logging.getLogger("pykka").setLevel(max(logging.WARNING, root.level))
