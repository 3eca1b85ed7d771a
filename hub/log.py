"""Logging, set up once per process: to stderr, at `--log-level`, else `$LOG_LEVEL`, else INFO.

Stdout is never used for logs: the stdio facade owns it for protocol bytes.
"""

from __future__ import annotations

import logging
import os
import sys

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


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
    handler.setFormatter(logging.Formatter(_FORMAT))
    root.addHandler(handler)
    root.setLevel(name)
