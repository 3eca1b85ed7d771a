"""The problems of a configuration, each as one `path: message` line that never echoes a secret.

`hub.config` collects them at every stage of reading a file: YAML syntax, duplicate keys, unset
`${VAR}`s, JSON Schema violations (turned into messages here, with "did you mean" for a
misspelt key or value) and the checks a schema cannot express. `validation_problems` does the
same for any schema of the `schemas` package (an app's manifest too).

Pure functions: safe to call from any thread.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import yaml

import schemas

# Keys whose values are secrets, at any depth: their values never appear in a message.
_SECRET_KEYS = frozenset({"env", "headers", "api_keys", "admin_keys", "redis_url", "secret"})


def dotted_path(path: tuple[Any, ...]) -> str:
    """`('tenants', 'acme', 'api_keys', 0)` → `tenants.acme.api_keys[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _is_secret(path: tuple[Any, ...]) -> bool:
    return any(part in _SECRET_KEYS for part in path if isinstance(part, str))


# --------------------------------------------------------------------------- reading


def yaml_problem(source: str, exc: yaml.YAMLError) -> str:
    """A YAML syntax error, at `source:line:column` where the parser knows it."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    detail = f"{context}, {problem}" if context else problem
    return f"{where}: syntax error: {detail}"


def duplicate_keys(node: yaml.Node | None, path: tuple[Any, ...] = ()) -> Iterator[str]:
    """Duplicate mapping keys, which YAML (and JSON) parsers otherwise silently collapse."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                yield (
                    f"{dotted_path((*path, key))}: duplicate key (line {key_node.start_mark.line + 1}; "
                    f"first defined on line {seen[key]})"
                )
            else:
                seen[key] = key_node.start_mark.line + 1
            yield from duplicate_keys(value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from duplicate_keys(item, (*path, i))


def unset_problem(path: tuple[Any, ...], name: str) -> str:
    """Variable `name`, used at `path`, is not set and has no default."""
    where = dotted_path(path)
    return f"{where}: environment variable {name!r} is not set (give a default with ${{{name}:-...}})"


# --------------------------------------------------------------------------- schema violations


def validation_problems(schema: str, data: Any) -> list[str]:
    """Every violation of schema `schema` (a name in `schemas`) by `data`, sorted, as `path: message`."""
    return sorted({problem for _, problem in schema_problems(data, schema)})


def schema_problems(data: Any, schema: str = "config") -> Iterator[tuple[tuple[Any, ...], str]]:
    """`(path of the value, "path: message")` for every schema violation."""
    validator = jsonschema.Draft202012Validator(schemas.load(schema))
    for error in validator.iter_errors(data):
        for problem in _describe(error):
            yield tuple(error.absolute_path), problem


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_Describe = Callable[[jsonschema.ValidationError, tuple[Any, ...]], Iterator[str]]


def _describe(error: jsonschema.ValidationError) -> Iterator[str]:
    """Turn one jsonschema error into `path: message` lines that never echo a secret."""
    path = tuple(error.absolute_path)
    if "propertyNames" in error.relative_schema_path:
        describe: _Describe | None = _bad_name  # (whichever rule of the name failed)
    else:
        describe = _BY_KIND.get(str(error.validator))
    if describe is not None:
        yield from describe(error, path)
    elif _is_secret(path):
        yield f"{dotted_path(path)}: invalid value ({error.validator})"
    else:
        yield f"{dotted_path(path)}: {error.message}"


def _required(error: jsonschema.ValidationError, path: tuple[Any, ...]) -> Iterator[str]:
    missing = re.match(r"'([^']+)'", error.message)
    name = missing.group(1) if missing else "?"
    note = ""
    if name in ("command", "url") and isinstance(error.instance, dict):
        note = f" for transport {error.instance.get('transport', 'stdio')!r}"
    yield f"{dotted_path((*path, name))}: {name!r} is required{note}"


def _unknown_keys(error: jsonschema.ValidationError, path: tuple[Any, ...]) -> Iterator[str]:
    if not isinstance(error.instance, dict):
        yield f"{dotted_path(path)}: {error.message}"
        return
    known = error.schema.get("properties", {})
    for key in error.instance:
        if key not in known:
            yield f"{dotted_path((*path, key))}: unknown key{_did_you_mean(key, known)}"


def _bad_name(error: jsonschema.ValidationError, path: tuple[Any, ...]) -> Iterator[str]:
    # jsonschema reports a bad name as an error of the name, at the path of its mapping.
    bad = error.instance
    what = "server" if path and path[-1] == "servers" else "tenant" if path == ("tenants",) else "key"
    yield f"{dotted_path((*path, bad))}: invalid {what} name {bad!r}: use 1 to 32 letters, digits, '_' or '-'"


def _wrong_type(error: jsonschema.ValidationError, path: tuple[Any, ...]) -> Iterator[str]:
    kinds = error.schema["type"]
    expected = (" or ".join(kinds) if isinstance(kinds, list) else kinds).replace("object", "mapping")
    yield f"{dotted_path(path)}: expected {expected}, got {_json_type(error.instance)}"


def _not_an_option(error: jsonschema.ValidationError, path: tuple[Any, ...]) -> Iterator[str]:
    options = error.schema.get("enum", [error.schema.get("const")])
    got = "" if _is_secret(path) else f", got {error.instance!r}{_did_you_mean(error.instance, options)}"
    yield f"{dotted_path(path)}: must be one of {', '.join(repr(o) for o in options)}{got}"


_BOUNDS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


def _out_of_bounds(error: jsonschema.ValidationError, path: tuple[Any, ...]) -> Iterator[str]:
    kind = str(error.validator)
    yield f"{dotted_path(path)}: must be {_BOUNDS[kind]} {error.schema[kind]} (got {error.instance!r})"


def _empty(error: jsonschema.ValidationError, path: tuple[Any, ...]) -> Iterator[str]:
    least = error.schema.get("minLength", 1)
    need = "must not be empty" if least <= 1 else f"must be at least {least} characters"
    yield f"{dotted_path(path)}: {need}"


def _no_match(error: jsonschema.ValidationError, path: tuple[Any, ...]) -> Iterator[str]:
    got = "" if _is_secret(path) else f" (got {error.instance!r})"
    yield f"{dotted_path(path)}: must match {error.schema['pattern']}{got}"


def _repeated(error: jsonschema.ValidationError, path: tuple[Any, ...]) -> Iterator[str]:
    yield f"{dotted_path(path)}: items must be unique"


_BY_KIND: dict[str, _Describe] = {
    "required": _required,
    "additionalProperties": _unknown_keys,
    "type": _wrong_type,
    "enum": _not_an_option,
    "const": _not_an_option,
    **dict.fromkeys(_BOUNDS, _out_of_bounds),
    "minLength": _empty,
    "pattern": _no_match,
    "uniqueItems": _repeated,
}


# --------------------------------------------------------------------------- beyond the schema


def semantic_problems(data: dict[str, Any]) -> Iterator[str]:
    """Checks JSON Schema cannot express: a server's `name` must equal its key; a per_session
    server starts on demand."""
    tenants = data.get("tenants")
    for tenant_id, tenant in tenants.items() if isinstance(tenants, dict) else ():
        servers = tenant.get("servers") if isinstance(tenant, dict) else None
        for key, server in servers.items() if isinstance(servers, dict) else ():
            if isinstance(server, dict):
                yield from _server_problems(f"tenants.{tenant_id}.servers.{key}", key, server)
    auth = data.get("auth")
    if isinstance(auth, dict) and isinstance(tenants, dict):
        yield from auth_problems(auth, tenants)


def _server_problems(where: str, key: str, server: dict[str, Any]) -> Iterator[str]:
    if "name" in server and server["name"] != key:
        yield (
            f"{where}.name: {server['name']!r} differs from the server's key {key!r} "
            "(omit 'name' or make them equal)"
        )
    if server.get("per_user") is True and server.get("per_session") is True:
        yield f"{where}.per_user: per_user and per_session exclude each other (choose one)"
    if server.get("user_env") and server.get("per_user") is not True:
        yield f"{where}.user_env: only a per_user server has user credentials (set per_user: true)"
    lazy = server.get("per_session") is True or server.get("per_user") is True
    if lazy and server.get("lifecycle", "on_demand") != "on_demand":
        yield (
            f"{where}.lifecycle: a per_session or per_user server is started by each session's first call "
            "(on_demand): omit 'lifecycle' or set it to 'on_demand'"
        )


def auth_problems(auth: dict[str, Any], tenants: dict[str, Any]) -> Iterator[str]:
    """An issuer names its tenant once; users and issuers name tenants and scopes that exist."""
    scopes = auth.get("scopes")
    scopes = scopes if isinstance(scopes, dict) else {}
    for i, issuer in enumerate(auth.get("issuers") or ()):
        if isinstance(issuer, dict):
            yield from _issuer_problems(f"auth.issuers[{i}]", issuer, tenants)
    server = auth.get("server")
    users = server.get("users") if isinstance(server, dict) else None
    for name, user in users.items() if isinstance(users, dict) else ():
        if isinstance(user, dict):
            yield from _user_problems(f"auth.server.users.{name}", user, tenants, scopes)


def _issuer_problems(where: str, issuer: dict[str, Any], tenants: dict[str, Any]) -> Iterator[str]:
    if ("tenant" in issuer) == ("tenant_claim" in issuer):
        yield f"{where}: give exactly one of 'tenant' (all its tokens act there) and 'tenant_claim'"
    if "tenant" in issuer and issuer["tenant"] not in tenants:
        yield f"{where}.tenant: no tenant {issuer['tenant']!r}"


def _user_problems(
    where: str, user: dict[str, Any], tenants: dict[str, Any], scopes: dict[str, Any]
) -> Iterator[str]:
    if user.get("tenant") not in tenants:
        yield f"{where}.tenant: no tenant {user.get('tenant')!r}"
    for scope in user.get("scopes") or ():
        if scope not in scopes:
            yield f"{where}.scopes: {scope!r} is not one of auth.scopes"
