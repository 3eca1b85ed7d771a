"""The vocabulary of the configuration model: its base class and the types of its fields.

`ConfigModel` is a frozen pydantic model whose unknown keys are errors; the `Annotated` types
here carry the constraints and conversions that several sections share (names, ports, keys and
secret maps, paths relative to the configuration file). The sections are in `hub.config_model`
and `hub.config_sandbox`.

Pure data: safe to use from any thread.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic.config import JsonDict

from hub.config_secrets import Secret, SecretMap


def _from_file(value: str | None, info: ValidationInfo) -> str | None:
    """A path relative to the configuration file's folder (`context["base"]`), made absolute."""
    base = (info.context or {}).get("base")
    return value if value is None or base is None else str((Path(base) / value).resolve())


def _bind_path(value: str, info: ValidationInfo) -> str:
    """Like `_from_file`, but symlinks kept: the path the server is told is the path it asked for."""
    base = (info.context or {}).get("base")
    return value if base is None else os.path.abspath(Path(base) / value)


def secret_value(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    raise ValueError("expected a string")  # (never echoes the value)


def _secret_map(value: Any) -> SecretMap:
    if isinstance(value, SecretMap):
        return value
    if isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values()):
        return SecretMap(value)
    raise ValueError("expected a mapping of strings")


def _without_empty(value: Any) -> Any:
    """An entry that expanded to an empty string is no key (so `${KEY:-}` is an optional key)."""
    return [v for v in value if v != ""] if isinstance(value, list | tuple) else value


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
NonEmpty = Annotated[str, Field(min_length=1)]
FilePath = Annotated[str, AfterValidator(_from_file)]
OptionalFilePath = Annotated[str | None, AfterValidator(_from_file)]
BindPath = Annotated[str, Field(min_length=1), AfterValidator(_bind_path)]
PositiveOrNone = Annotated[int | None, Field(ge=1)]
Port = Annotated[int, Field(ge=0, le=65535)]
OptionalPort = Annotated[int | None, Field(ge=0, le=65535)]
SecretKey = Annotated[Secret, PlainValidator(secret_value), WithJsonSchema({"type": "string"})]
Keys = Annotated[
    tuple[SecretKey, ...],
    BeforeValidator(_without_empty),
    Field(
        description="Bearer keys. An entry that expands to an empty string is ignored "
        "(so ${KEY:-} is an optional key)."
    ),
]
Secrets = Annotated[
    SecretMap,
    PlainValidator(_secret_map),
    WithJsonSchema({"type": "object", "additionalProperties": {"type": "string"}}),
]
EMPTY_MAPPING: JsonDict = {"default": {}}  # what a mapping field's factory gives, for the schema


def named_by_key(value: Any) -> Any:
    """Entries of a tenants or servers mapping, each given its key as its `name`."""
    if not isinstance(value, Mapping):
        return value
    return {key: {**entry, "name": key} if isinstance(entry, dict) else entry for key, entry in value.items()}


class ConfigModel(BaseModel):
    """A frozen section of the configuration; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}: the configuration is frozen")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}: the configuration is frozen")
