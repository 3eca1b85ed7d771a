"""Plain input schemas, checked without jsonschema on the way of every tool call.

Most tools' input schemas are plain: an object of typed properties, some required. jsonschema's
validator walks such a schema through its generic keyword machinery at every call, a cost on
every tool call; `compile_plain` turns a plain schema, once per route, into a check of a few
`isinstance`s. The check only ever says "certainly valid": whenever it cannot tell (a value of
another type, a float where an integer is expected, a missing property), the caller asks the full
validator, which stays the one authority on what is invalid and why (`hub.routes.validate`). A
schema with any keyword not known here is not plain (None): the full validator checks each call.

Pure functions, any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema

Check = Callable[[Any], bool]

# Keywords that never make a value invalid (annotations; `format` too: the hub's validators are
# built without a format checker, so it asserts nothing).
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$comment", "$schema", "format", "deprecated"}
    | {"readOnly", "writeOnly"}
)
_KNOWN = _ANNOTATIONS | {"type", "properties", "required", "additionalProperties", "items"}
# Exactly the values each type certainly takes (an integer-valued float is an integer too for
# jsonschema: not "certainly" here, so the full validator decides).
_TYPES: dict[str, Check] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) is int or type(v) is float,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}
# Drafts whose `type`, `properties`, `required`, `additionalProperties` and `items` (an object)
# mean what the checks here assume (not draft 3's `required: true`, nor `items` as a list).
_DRAFTS = (
    jsonschema.Draft4Validator,
    jsonschema.Draft6Validator,
    jsonschema.Draft7Validator,
    jsonschema.Draft201909Validator,
    jsonschema.Draft202012Validator,
)


def compile_plain(schema: Any, validator: Any) -> Check | None:
    """A check that says whether a value certainly meets `schema` (which `validator`, the full
    validator built for it, checks), or None if the schema is not plain."""
    if not isinstance(validator, _DRAFTS):
        return None
    try:
        return _compile(schema, 0)
    except _NotPlain:
        return None


class _NotPlain(Exception):
    """The schema uses something the checks here do not know."""


def _compile(schema: Any, depth: int) -> Check:
    if schema is True or schema == {}:
        return lambda v: True
    if not isinstance(schema, dict) or depth > 16 or not schema.keys() <= _KNOWN:
        raise _NotPlain
    checks: list[Check] = []
    if "type" in schema:
        checks.append(_type_check(schema["type"]))
    if schema.keys() & {"properties", "required", "additionalProperties"}:
        checks.append(_object_check(schema, depth))
    if "items" in schema:
        items = _compile(schema["items"], depth + 1)
        checks.append(lambda v: not isinstance(v, list) or all(items(i) for i in v))
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _type_check(wanted: Any) -> Check:
    names = [wanted] if isinstance(wanted, str) else wanted
    if not isinstance(names, list) or not names or not all(n in _TYPES for n in names):
        raise _NotPlain
    tests = [_TYPES[n] for n in names]
    if len(tests) == 1:
        return tests[0]
    return lambda v: any(test(v) for test in tests)


def _object_check(schema: dict[str, Any], depth: int) -> Check:
    """`properties`, `required` and `additionalProperties`, which apply to objects only."""
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(properties, dict) or not isinstance(required, list):
        raise _NotPlain
    if not all(isinstance(name, str) for name in required):
        raise _NotPlain
    each = {name: _compile(sub, depth + 1) for name, sub in properties.items()}
    closed = extra is False
    others = None if extra is True or closed else _compile(extra, depth + 1)

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for name in required:
            if name not in value:
                return False
        for name, item in value.items():
            known = each.get(name)
            if known is not None:
                if not known(item):
                    return False
            elif closed or (others is not None and not others(item)):
                return False
        return True

    return check
