"""JSON text at the hub's edges: what comes in is checked once, what goes out is always JSON.

In (`loads`, or `parse` then `check`): a request body, a WebSocket frame, a JSON-RPC message.
Python's `json` accepts more than JSON a service can take, and each of these used to be a 500 or
worse: `NaN` and `Infinity` (and numbers such as `1e400` that overflow to them), integers longer
than Python converts (4,300 digits), nesting deep enough for a `RecursionError` here or in whatever
handles the value next (so at most `MAX_DEPTH` levels), and strings that are not valid Unicode (a
lone surrogate, `"\\ud800"`), which no UTF-8 writer can encode: not the hub's answer, not its
request to a server. The first kinds raise `MalformedJson`, the last `InvalidText` (both 400).

Out (`dumps`): never fails and never writes what is not JSON: a lone surrogate (a server answered
one) becomes U+FFFD, a non-finite number `null`. `scrub` does the same to a parsed value.

Pure functions, any thread.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from hub.errors import InvalidText, MalformedJson, NotJson

MAX_DEPTH = 128  # levels of nesting taken (serde_json's default; Python's own limit is ~1,000)

_LONE = re.compile("[\ud800-\udfff]")  # in a parsed str, any surrogate is a lone one
# What may become a lone surrogate once parsed: its escape, or its bytes (json.loads lets them by).
_MAYBE_LONE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_MAYBE_LONE_TEXT = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def parse(data: bytes | str, what: str = "body") -> Any:
    """`data` parsed as JSON, with numbers and constants checked (not yet its text: see `check`).

    Raises:
        NotJson: not JSON at all (a syntax error), or not UTF-8.
        MalformedJson: `NaN`/`Infinity`, a number out of range or of more than 4,300 digits,
            nested beyond what the parser can take.
    """
    try:
        return json.loads(data, parse_constant=_no_constant, parse_float=_finite)
    except UnicodeDecodeError:
        raise NotJson(f"the {what} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise NotJson(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise MalformedJson(f"the {what} is nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # (an integer past sys.get_int_max_str_digits() says so in its text)
        reason = "an integer has too many digits" if "digits" in str(exc) else str(exc)
        raise MalformedJson(f"malformed JSON: {reason}") from None


def check(value: Any, what: str = "arguments", data: bytes | str | None = None) -> None:
    """Refuse a parsed value nested beyond `MAX_DEPTH` or holding a lone surrogate; `what` names
    it in the message (`arguments.name ...`). With `data`, the text it was parsed from, the value
    is walked only if the text could hold either (two counts and a search, in C).

    Raises:
        MalformedJson: nested deeper than `MAX_DEPTH` levels.
        InvalidText: a string (or a key) is not valid Unicode text.
    """
    if data is not None and not _maybe_bad(data):
        return
    stack: list[tuple[Any, str, int]] = [(value, what, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if _LONE.search(item):
                raise InvalidText(f"{path} is not valid Unicode text: it holds a lone surrogate")
            continue
        if not isinstance(item, dict | list | tuple):
            continue
        if depth >= MAX_DEPTH:
            raise MalformedJson(f"{what} is nested too deeply (at most {MAX_DEPTH} levels)")
        if isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and _LONE.search(key):
                    raise InvalidText(f"a key of {path} is not valid Unicode text: it holds a lone surrogate")
                stack.append((inner, f"{path}.{key}", depth + 1))
        else:
            stack.extend((inner, f"{path}[{i}]", depth + 1) for i, inner in enumerate(item))


def _maybe_bad(data: bytes | str) -> bool:
    """Whether text could parse to a value too deep or with a lone surrogate in it."""
    if isinstance(data, str):
        return data.count("[") + data.count("{") > MAX_DEPTH or _MAYBE_LONE_TEXT.search(data) is not None
    return data.count(b"[") + data.count(b"{") > MAX_DEPTH or _MAYBE_LONE_BYTES.search(data) is not None


def loads(data: bytes | str, what: str = "body") -> Any:
    """`parse`, then `check`: JSON text from outside, as a value every part of the hub can handle.

    Raises:
        MalformedJson: see `parse` and `check`.
        InvalidText: see `check`.
    """
    value = parse(data, what)
    check(value, what, data)
    return value


def scrub(value: Any) -> Any:
    """`value` with every lone surrogate replaced by U+FFFD and every non-finite number by None."""
    if isinstance(value, str):
        return _LONE.sub("\ufffd", value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def has_lone_escape(line: bytes) -> bool:
    """Whether JSON text `line` might hold a lone surrogate once parsed (its escape, or its bytes)."""
    return _MAYBE_LONE_BYTES.search(line) is not None


def dumps(value: Any) -> str:
    """`value` as JSON text that any UTF-8 writer can encode and any JSON parser can read (see
    `scrub`); what `json` cannot serialise is written as its `str`."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)
    except ValueError:  # NaN or Infinity
        return json.dumps(scrub(value), ensure_ascii=False, allow_nan=False, default=str)
    if not text.isascii() and _LONE.search(text):
        return json.dumps(scrub(value), ensure_ascii=False, allow_nan=False, default=str)
    return text
