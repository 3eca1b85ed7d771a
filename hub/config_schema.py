"""Generate `schemas/config.schema.json`, the JSON Schema a configuration file is validated against,
from the configuration model (`hub.config_model.HubConfig`).

`python -m hub.config_schema > schemas/config.schema.json`; a test checks the committed file is
current. pydantic writes the schema; this module only shapes it for validating files, with
messages that name the key at fault:

- `X | None` becomes `{"type": [X, "null"], ...}` rather than an `anyOf`, whose one error
  ("not valid under any of the given schemas") would not say which bound was broken;
- a mapping whose keys have a pattern (tenants, servers) gets `propertyNames`, so a bad name is
  an error rather than a key no pattern matches (which `patternProperties` would let through);
- an `enum` goes without its `type`, so a wrong value is one problem ("must be one of"), not two;
- titles (pydantic's, from field names) go, descriptions are flowed text, one paragraph each, and
  a whole-number default is written as an integer (`60`, not `60.0`), as a file would say it.

Runs in the process that calls it; no state.
"""

from __future__ import annotations

import json
from typing import Any

from hub.config_model import HubConfig

SCHEMA_ID = "https://mcp-hub.dev/schemas/config.schema.json"


def generate() -> dict[str, Any]:
    """The configuration's JSON Schema (draft 2020-12), as `schemas/config.schema.json` holds it."""
    head = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID}
    return _shaped({**head, **HubConfig.model_json_schema(mode="validation")})


def render() -> str:
    """The schema as the committed file's text."""
    return json.dumps(generate(), indent=2, ensure_ascii=False) + "\n"


_NAMED = frozenset({"properties", "patternProperties", "$defs"})  # name → schema
_DATA = frozenset({"default", "enum", "const"})  # values, not schemas


def _shaped(node: Any, top: bool = True) -> Any:
    """Schema `node` with the rules of the module docstring applied."""
    if isinstance(node, list):
        return [_shaped(item, False) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _member(key, value) for key, value in node.items() if key != "title" or top}
    nullable = _nullable(out.get("anyOf"))
    if nullable is not None:
        del out["anyOf"]
        out = {**nullable, **out}
    if "enum" in out:
        out.pop("type", None)  # (the options say it: a wrong value is one problem, not two)
    patterns = out.pop("patternProperties", None)
    if patterns:
        ((pattern, values),) = patterns.items()
        out.update(propertyNames={"type": "string", "pattern": pattern}, additionalProperties=values)
    return dict(sorted(out.items(), key=_reading_order))


def _member(key: str, value: Any) -> Any:
    """The value of `key` in a schema, shaped."""
    if key in _NAMED:
        return {name: _shaped(item, False) for name, item in value.items()}
    if key == "default" and isinstance(value, float) and value.is_integer():
        return int(value)  # (JSON has one kind of number: 60, as a file would say it)
    if key in _DATA or key == "title":
        return value
    if key == "description":
        return " ".join(value.split())
    return _shaped(value, False)


_FIRST = ("$schema", "$id", "title", "type", "enum", "$ref")
_LAST: tuple[str, ...] = ("default", "description", "additionalProperties", "required", "propertyNames")
_LAST += ("properties", "allOf", "$defs")


def _reading_order(item: tuple[str, Any]) -> tuple[int, int, str]:
    """Keys as a reader looks for them: the type, its constraints, the default and the description,
    then the members."""
    key = item[0]
    if key in _FIRST:
        return 0, _FIRST.index(key), ""
    if key in _LAST:
        return 2, _LAST.index(key), ""
    return 1, 0, key


def _nullable(options: Any) -> dict[str, Any] | None:
    """`[X, {"type": "null"}]` as one schema of type `[X's type, "null"]`; None for any other anyOf."""
    if not isinstance(options, list) or len(options) != 2 or options[1] != {"type": "null"}:
        return None
    first = options[0]
    if not isinstance(first.get("type"), str):
        return None
    return {**first, "type": [first["type"], "null"]}


if __name__ == "__main__":
    print(render(), end="")
