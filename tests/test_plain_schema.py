"""The quick check of plain input schemas (`hub.plain_schema`): it never lets through arguments the
full validator refuses (which then refuses them with its own message: tests/test_mcp_calls.py)."""

from __future__ import annotations

import itertools
from typing import Any

import jsonschema
import pytest

from hub.plain_schema import compile_plain

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"text": {"type": "string", "title": "Text"}}, "required": ["text"]},
    {"type": "object", "properties": {"n": {"type": "integer"}, "x": {"type": "number"}}},
    {"type": "object", "properties": {"flag": {"type": "boolean"}}, "additionalProperties": False},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}},
    {"type": "object", "properties": {"o": {"type": ["object", "null"], "properties": {"k": {}}}}},
    {"type": "object", "additionalProperties": {"type": "integer"}},
    {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["a", "b"]},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}}},
]
VALUES: list[Any] = [
    None,
    [],
    "text",
    {},
    {"text": "hello"},
    {"text": 3},
    {"text": "a", "other": 1},
    {"n": 1, "x": 1.5},
    {"n": 1.0},
    {"n": True, "x": False},
    {"x": "1"},
    {"flag": True},
    {"flag": 1},
    {"flag": True, "more": None},
    {"tags": ["a", "b"]},
    {"tags": ["a", 2]},
    {"tags": "a"},
    {"o": None},
    {"o": {"k": [1, {"deep": True}]}},
    {"o": 5},
    {"a": 1, "b": 2},
    {"a": 1},
    {"z": 1, "y": 2.0},
    {"when": "not a date"},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_the_quick_check_never_passes_what_the_full_validator_refuses(schema: dict[str, Any]) -> None:
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)(schema)
    check = compile_plain(schema, validator)
    assert check is not None, "a plain schema gets a quick check"
    passed = 0
    for value in VALUES:
        if check(value):
            passed += 1
            assert validator.is_valid(value), (schema, value)
    assert passed > 0


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"mode": {"enum": ["a", "b"]}}},
        {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}},
        {"type": "object", "properties": {"s": {"$ref": "#/$defs/s"}}, "$defs": {"s": {"type": "string"}}},
        {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
        {"$schema": "http://json-schema.org/draft-03/schema#", "type": "object"},
        {"type": "object", "properties": {"t": {"type": "array", "items": [{"type": "string"}]}}},
    ],
)
def test_a_schema_with_more_than_plain_keywords_has_no_quick_check(schema: dict[str, Any]) -> None:
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)(schema)
    assert compile_plain(schema, validator) is None


def test_every_combination_of_two_plain_properties_agrees_with_the_validator() -> None:
    kinds = ["string", "integer", "number", "boolean", "null", "object", "array"]
    samples = ["s", 1, 1.5, 1.0, True, None, {}, [], {"a": 1}, [1]]
    for first, second in itertools.product(kinds, repeat=2):
        schema = {"type": "object", "properties": {"p": {"type": [first, second]}}, "required": ["p"]}
        validator = jsonschema.Draft202012Validator(schema)
        check = compile_plain(schema, validator)
        assert check is not None
        for sample in samples:
            if check({"p": sample}):
                assert validator.is_valid({"p": sample}), (schema, sample)
