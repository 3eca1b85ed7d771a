"""`components.schemas` of the OpenAPI document, generated from the response types of
`web.responses` by pydantic's JSON Schema generator (the one place that knows how).

Each type of `responses.COMPONENTS` (and of its siblings' `COMPONENTS`) becomes the component of its
name, referring to the others by `$ref`; the types nested in one (not components themselves) are
written inline; the titles pydantic derives from names are left out. Runs on the web loop, the first
time `GET /openapi.json` is asked (`web.openapi` keeps the result)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from web import (
    responses,
    responses_admin,
    responses_backup,
    responses_me,
    responses_oauth,
    responses_pins,
    responses_registry,
)

COMPONENTS = {
    **responses.COMPONENTS,
    **responses_oauth.COMPONENTS,
    **responses_admin.COMPONENTS,
    **responses_registry.COMPONENTS,
    **responses_backup.COMPONENTS,
    **responses_me.COMPONENTS,
    **responses_pins.COMPONENTS,
}

_REF = "#/components/schemas/{model}"


class _Generator(GenerateJsonSchema):
    """pydantic's JSON Schema generator without the titles it derives from names (noise here)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _inline(node: Any, nested: dict[str, Any]) -> Any:
    """`node` with each `$ref` to a definition of `nested` replaced by the definition (its
    siblings, such as a field's description, kept)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in nested:
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _inline({**nested[ref.rsplit("/", 1)[-1]], **rest}, nested)
        return {k: _inline(v, nested) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, nested) for v in node]
    return node


def component_schemas() -> dict[str, Any]:
    """`components.schemas` of the OpenAPI document: a JSON Schema (2020-12, as OpenAPI 3.1 reads
    it) of each type of `COMPONENTS`, referring to each other by `$ref`; a fresh dict each call."""
    mode: Literal["serialization"] = "serialization"  # (what the hub writes, not what it reads)
    inputs = [(name, mode, TypeAdapter(t)) for name, t in COMPONENTS.items()]
    top, defs = TypeAdapter.json_schemas(inputs, ref_template=_REF, schema_generator=_Generator)
    definitions: dict[str, Any] = defs.get("$defs", {})
    for (name, _), schema in top.items():  # a union (`App`) has no definition of its own
        if schema.get("$ref") != _REF.format(model=name):
            definitions[name] = schema
    for schema in definitions.values():
        schema.pop("title", None)
    nested = {name: schema for name, schema in definitions.items() if name not in COMPONENTS}
    return {name: _inline(definitions[name], nested) for name in sorted(COMPONENTS)}
