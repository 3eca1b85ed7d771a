"""JSON Schemas of MCP Hub, shipped as package data.

`load("config")` returns the parsed `config.schema.json`. Schemas are read once per process.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any


@functools.cache
def load(name: str) -> dict[str, Any]:
    """Return the schema `<name>.schema.json` of this package, parsed.

    Args:
        name: the schema's base name, e.g. ``"config"``.
    """
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)
