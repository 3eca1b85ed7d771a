"""What an MCP Registry entry offers to install, in the hub's terms.

An entry of the MCP Registry API (`servers[]` of `GET /v0/servers`, or the answer of
`GET /v0/servers/{name}/versions/{version}`: `{"server": <server.json>, "_meta": {...}}`, as the
generic registry API's OpenAPI document of 2025-12-01 and its server.json schema of 2025-12-11
describe them) becomes an `Entry`: its name, title, description, version and status, and each way
it can be installed (`Installable`: one per package, one per remote), each with the values an
admin is asked for (`Field`: environment variables, arguments, headers, URL variables).

A field's `key` names it in an install request's `values`: `env:NAME`, `arg:runtime:I` and
`arg:package:I` (the I-th runtime or package argument), `header:NAME`, `url:VAR`; a variable of an
input's `{template}` value adds `/VAR` to its input's key (`env:AUTH/token`). Fields whose value
the publisher fixed (`value` given) are not asked for: they come with the entry.

Pure functions over parsed JSON; anything malformed in an entry is skipped or reported in the
entry's `problems`, never raised: one bad entry must not hide the others. Any thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from typing_extensions import (
    TypedDict,  # (pydantic reads only this one on Python < 3.12: the OpenAPI schemas)
)

# What the hub can run itself: a stdio package through its runtime, or a remote it connects to.
RUNNABLE_PACKAGES = {"npm": "npx", "pypi": "uvx"}
REMOTE_TRANSPORTS = {"streamable-http": "http", "sse": "sse"}
CONTAINER_PACKAGES = frozenset({"oci", "docker"})
OFFICIAL_META = "io.modelcontextprotocol.registry/official"


class Field(TypedDict):
    """One value an install asks for (or that the publisher fixed: `fixed` true, `default` is it)."""

    key: str
    kind: str  # env | argument | header | variable
    name: str
    description: str
    is_required: bool
    is_secret: bool
    default: str | None
    choices: list[str]
    format: str  # string | number | boolean | filepath
    placeholder: str | None
    fixed: bool


class Installable(TypedDict):
    """One way to install an entry: a package (`npm`, `pypi`, `oci`...) or a remote."""

    id: str  # package:I or remote:I
    kind: str  # the package's registryType, or the remote's transport type
    installable: bool
    why_not: str | None  # what stops the hub from installing it, when it cannot
    identifier: str | None  # a package's name
    version: str | None  # a package's version
    runtime_hint: str | None
    transport: str  # stdio | streamable-http | sse
    url: str | None  # a remote's URL template
    fields: list[Field]


class Entry(TypedDict):
    """One server of a registry, at one version, and what it can be installed as."""

    registry: str  # the registry's label
    registry_url: str
    name: str
    title: str | None
    description: str
    version: str
    status: str  # active | deprecated | deleted (unknown: active)
    is_latest: bool
    website_url: str | None
    repository: str | None
    installs: list[Installable]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _list(value: Any) -> list[Any]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _field(key: str, kind: str, name: str, spec: Mapping[str, Any]) -> Field:
    fixed = _text(spec.get("value"))
    choices = spec.get("choices")
    return Field(
        key=key,
        kind=kind,
        name=name,
        description=_text(spec.get("description")) or "",
        is_required=spec.get("isRequired") is True,
        is_secret=spec.get("isSecret") is True,
        default=fixed if fixed is not None else _text(spec.get("default")),
        choices=[c for c in choices if isinstance(c, str)] if isinstance(choices, list) else [],
        format=_text(spec.get("format")) or "string",
        placeholder=_text(spec.get("placeholder")),
        fixed=fixed is not None,
    )


def _with_variables(key: str, kind: str, name: str, spec: Mapping[str, Any]) -> list[Field]:
    """The field of an input, then those of the variables its `{template}` value refers to."""
    fields = [_field(key, kind, name, spec)]
    variables = spec.get("variables")
    if isinstance(variables, Mapping) and _text(spec.get("value")) is not None:  # (they fill `value`)
        for var, var_spec in variables.items():
            if isinstance(var, str) and isinstance(var_spec, Mapping):
                fields.append(_field(f"{key}/{var}", "variable", var, var_spec))
    return fields


def argument_name(argument: Mapping[str, Any], index: int) -> str:
    """What an argument is called to an admin: a named one's flag, else its `valueHint`."""
    return _text(argument.get("name")) or _text(argument.get("valueHint")) or f"argument {index + 1}"


def package_fields(package: Mapping[str, Any]) -> list[Field]:
    """The fields of a package: runtime arguments, package arguments, environment variables."""
    fields: list[Field] = []
    for where in ("runtime", "package"):
        for i, argument in enumerate(_list(package.get(f"{where}Arguments"))):
            fields += _with_variables(f"arg:{where}:{i}", "argument", argument_name(argument, i), argument)
    for variable in _list(package.get("environmentVariables")):
        name = _text(variable.get("name"))
        if name is not None:
            fields += _with_variables(f"env:{name}", "env", name, variable)
    return fields


def remote_fields(remote: Mapping[str, Any]) -> list[Field]:
    """The fields of a remote: its URL's variables, its headers."""
    fields: list[Field] = []
    variables = remote.get("variables")
    if isinstance(variables, Mapping):
        for var, spec in variables.items():
            if isinstance(var, str) and isinstance(spec, Mapping):
                fields.append(_field(f"url:{var}", "variable", var, spec))
    for header in _list(remote.get("headers")):
        name = _text(header.get("name"))
        if name is not None:
            fields += _with_variables(f"header:{name}", "header", name, header)
    return fields


def _package(i: int, package: Mapping[str, Any]) -> Installable:
    kind = _text(package.get("registryType")) or "unknown"
    transport = package.get("transport")
    transport_type = _text(transport.get("type")) if isinstance(transport, Mapping) else None
    why_not = None
    if kind in CONTAINER_PACKAGES:
        why_not = "an OCI image needs a container engine, which the hub does not run"
    elif kind not in RUNNABLE_PACKAGES:
        why_not = f"a {kind} package: the hub installs npm and pypi packages, and remotes"
    elif (transport_type or "stdio") != "stdio":
        why_not = f"a package serving {transport_type}: the hub runs packages over stdio only"
    elif _text(package.get("identifier")) is None or _text(package.get("version")) is None:
        why_not = "the entry names no package identifier and version"
    return Installable(
        id=f"package:{i}",
        kind=kind,
        installable=why_not is None,
        why_not=why_not,
        identifier=_text(package.get("identifier")),
        version=_text(package.get("version")),
        runtime_hint=_text(package.get("runtimeHint")),
        transport=transport_type or "stdio",
        url=None,
        fields=package_fields(package),
    )


def _remote(i: int, remote: Mapping[str, Any]) -> Installable:
    kind = _text(remote.get("type")) or "unknown"
    url = _text(remote.get("url"))
    why_not = None
    if kind not in REMOTE_TRANSPORTS:
        why_not = f"a {kind} remote: the hub connects to streamable-http and sse remotes"
    elif url is None:
        why_not = "the remote has no url"
    return Installable(
        id=f"remote:{i}",
        kind=kind,
        installable=why_not is None,
        why_not=why_not,
        identifier=None,
        version=None,
        runtime_hint=None,
        transport=kind,
        url=url,
        fields=remote_fields(remote),
    )


def entry_of(item: Any, registry: str, registry_url: str) -> Entry | None:
    """The `Entry` of one `servers[]` item (`{"server": {...}, "_meta": {...}}`), or None when it
    is not one (no server name or version)."""
    if not isinstance(item, Mapping):
        return None
    server = item.get("server")
    if not isinstance(server, Mapping):
        return None
    name, version = _text(server.get("name")), _text(server.get("version"))
    if name is None or version is None:
        return None
    meta = item.get("_meta")
    official = meta.get(OFFICIAL_META) if isinstance(meta, Mapping) else None
    official = official if isinstance(official, Mapping) else {}
    repository = server.get("repository")
    return Entry(
        registry=registry,
        registry_url=registry_url,
        name=name,
        title=_text(server.get("title")),
        description=_text(server.get("description")) or "",
        version=version,
        status=_text(official.get("status")) or "active",
        is_latest=official.get("isLatest") is not False,
        website_url=_text(server.get("websiteUrl")),
        repository=_text(repository.get("url")) if isinstance(repository, Mapping) else None,
        installs=[
            *(_package(i, p) for i, p in enumerate(_list(server.get("packages")))),
            *(_remote(i, r) for i, r in enumerate(_list(server.get("remotes")))),
        ],
    )


def raw_installable(item: Mapping[str, Any], installable_id: str) -> Mapping[str, Any] | None:
    """The package or remote `installable_id` (`package:I`, `remote:I`) of a `servers[]` item."""
    kind, _, index = installable_id.partition(":")
    server = item.get("server")
    if kind not in ("package", "remote") or not index.isdigit() or not isinstance(server, Mapping):
        return None
    items = _list(server.get(f"{kind}s"))
    return items[int(index)] if int(index) < len(items) else None
