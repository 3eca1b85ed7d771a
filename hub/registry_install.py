"""Installing from an MCP registry: an entry, the package or remote chosen and the values an admin
typed, turned into a server's configuration (the mapping a YAML file would hold).

- an npm package runs as `npx -y <identifier>@<version>` (`bunx` or `pnpm dlx` if its `runtimeHint`
  says so), a pypi package as `uvx <identifier>==<version>` (or `pipx run`): its runtime arguments
  before the package, its package arguments after; its environment variables become `env`;
- a remote becomes `transport: http` (streamable-http) or `transport: sse`, its URL with its
  `{variables}` filled, its headers `headers`;
- an OCI image, or any other package type, is refused (400): the hub runs no container engine.

Every spec gets `pinning: enforce` (its tools are held when they change after the install, until
an admin approves them) and `metadata: {registry: {url, name, version}}`. A required value left
empty is a 400 naming every one missing; a value outside its declared `choices` is a 400 too.
Values are kept as typed: secret ones are stored like any `env` or header value, and shown as
`********` wherever the API shows a configuration (`masked`). The configuration expands `${VAR}`
in every string: whatever comes from the registry is written with each `$` doubled (`literal`), so
no entry can pull the hub's environment into a server; a value the admin types as a whole
`${VAR}` stays a reference (the way to keep a secret out of the file), any other is literal too.

Pure functions; any thread.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from hub.errors import BadRequest
from hub.registry_entries import (
    CONTAINER_PACKAGES,
    REMOTE_TRANSPORTS,
    RUNNABLE_PACKAGES,
    argument_name,
    entry_of,
    raw_installable,
)

MASK = "********"
_REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")  # a whole typed value: the hub's env
_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# What a runner needs before the package: npx must not ask whether to download it.
_RUNNER_PREFIX = {"npx": ["-y"], "pipx": ["run"], "pnpm": ["dlx"]}
# The runners a `runtimeHint` may pick, by package type (another hint is ignored: the default runs).
_RUNNERS = {"npm": frozenset({"npx", "bunx", "pnpm"}), "pypi": frozenset({"uvx", "pipx"})}


class _Values:
    """The values typed for one install, and what is missing or wrong, gathered to report at once."""

    def __init__(self, typed: Mapping[str, Any]) -> None:
        self.typed = typed
        self.missing: list[str] = []
        self.wrong: list[str] = []

    def resolve(self, key: str, label: str, spec: Mapping[str, Any]) -> str | None:
        """The value of input `spec` (its fixed `value` with its variables filled, else what was
        typed for `key`, else its default), or None when it stays unset (noted if required)."""
        fixed = spec.get("value")
        if isinstance(fixed, str) and fixed:
            return fill(literal(fixed), self.variables(key + "/", f"{label} ", spec.get("variables")))
        typed = self.typed.get(key)
        if isinstance(typed, str) and _REFERENCE.match(typed):
            return typed  # (the admin's reference to the hub's environment)
        value = typed if isinstance(typed, str) and typed != "" else _text(spec.get("default"))
        choices = spec.get("choices")
        if value is not None and isinstance(choices, list) and choices and value not in choices:
            self.wrong.append(f"{label} must be one of {', '.join(map(str, choices))}")
        if value is None and spec.get("isRequired") is True:
            self.missing.append(label)
        return literal(value) if value is not None else None

    def variables(self, prefix: str, label: str, variables: Any) -> dict[str, str]:
        """The values of a `variables` map (each input's key is `prefix` and its name)."""
        filled = {}
        for var, spec in variables.items() if isinstance(variables, Mapping) else ():
            if isinstance(spec, Mapping):
                value = self.resolve(f"{prefix}{var}", f"{label}{var}".strip(), spec)
                if value is not None:
                    filled[var] = value
        return filled

    def named(self, inputs: Any, prefix: str) -> dict[str, str]:
        """The values of a list of named inputs (`environmentVariables`, `headers`): by name."""
        found = {}
        for spec in inputs if isinstance(inputs, list) else ():
            name = spec.get("name") if isinstance(spec, Mapping) else None
            if isinstance(name, str) and name:
                value = self.resolve(f"{prefix}:{name}", name, spec)
                if value is not None:
                    found[name] = value
        return found

    def check(self) -> None:
        """Raises BadRequest naming every missing and wrong value, if any."""
        problems = []
        if self.missing:
            problems.append("missing required values: " + ", ".join(self.missing))
        problems += self.wrong
        if problems:
            raise BadRequest("; ".join(problems))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def literal(text: str) -> str:
    """`text` as configuration text that reads as itself: each `$` doubled, so that no `${VAR}`
    in it is ever expanded (a registry's entry must not pull the hub's environment into a server)."""
    return text.replace("$", "$$")


def fill(template: str, variables: Mapping[str, str]) -> str:
    """`template` with each `{name}` of `variables` replaced (others stay as they are)."""
    return _TEMPLATE.sub(lambda m: variables.get(m.group(1), m.group(0)), template)


def _arguments(package: Mapping[str, Any], where: str, values: _Values) -> list[str]:
    """The command-line words of a package's `runtimeArguments` or `packageArguments`."""
    words: list[str] = []
    arguments = package.get(f"{where}Arguments")
    for i, argument in enumerate(a for a in arguments or () if isinstance(a, Mapping)):
        label = argument_name(argument, i)
        value = values.resolve(f"arg:{where}:{i}", label, argument)
        if value is None:
            continue
        if argument.get("type") != "named":
            words.append(value)
        elif argument.get("format") == "boolean":
            words += [literal(label)] if value == "true" else []
        else:
            words += [literal(label), value]
    return words


def package_spec(package: Mapping[str, Any], values: _Values) -> dict[str, Any]:
    """The stdio server that runs an npm or pypi package.

    Raises:
        BadRequest: a container image, or a package type or transport the hub cannot run.
    """
    kind = package.get("registryType")
    if kind in CONTAINER_PACKAGES:
        raise BadRequest(
            "this package is an OCI image: it needs a container engine, which the hub does not run"
        )
    if kind not in RUNNABLE_PACKAGES:
        raise BadRequest(
            f"cannot install a {kind} package: the hub installs npm and pypi packages, and remotes"
        )
    transport = package.get("transport")
    if isinstance(transport, Mapping) and transport.get("type", "stdio") != "stdio":
        raise BadRequest("this package serves HTTP itself: the hub runs packages over stdio only")
    identifier, version = package.get("identifier"), package.get("version")
    if not isinstance(identifier, str) or not isinstance(version, str) or not identifier or not version:
        raise BadRequest("the entry names no package identifier and version")
    hint = package.get("runtimeHint")
    runner = hint if hint in _RUNNERS[str(kind)] else RUNNABLE_PACKAGES[str(kind)]
    pinned = literal(f"{identifier}@{version}" if kind == "npm" else f"{identifier}=={version}")
    runtime = _arguments(package, "runtime", values)
    args = [*_RUNNER_PREFIX.get(runner, []), *runtime, pinned, *_arguments(package, "package", values)]
    spec: dict[str, Any] = {"command": literal(runner), "args": args}
    env = values.named(package.get("environmentVariables"), "env")
    if env:
        spec["env"] = env
    return spec


def remote_spec(remote: Mapping[str, Any], values: _Values) -> dict[str, Any]:
    """The server reached at a streamable-http or sse remote.

    Raises:
        BadRequest: another transport, or no URL.
    """
    transport = REMOTE_TRANSPORTS.get(str(remote.get("type")))
    url = remote.get("url")
    if transport is None or not isinstance(url, str) or not url:
        raise BadRequest(
            f"cannot connect to a {remote.get('type')} remote: the hub speaks streamable-http and sse"
        )
    filled = values.variables("url:", "", remote.get("variables"))
    headers = values.named(remote.get("headers"), "header")
    spec: dict[str, Any] = {"transport": transport, "url": fill(literal(url), filled)}
    if headers:
        spec["headers"] = headers
    return spec


def server_spec(
    item: Mapping[str, Any], installable_id: str, typed: Mapping[str, Any], registry_url: str
) -> dict[str, Any]:
    """The server configuration that installs `installable_id` (`package:I`, `remote:I`) of the
    registry entry `item` (`{"server": ..., "_meta": ...}`), with the values `typed` (by field key,
    `hub.registry_entries`).

    Raises:
        BadRequest: no such package or remote, one the hub cannot install, or values missing or wrong.
    """
    entry = entry_of(item, "", registry_url)
    chosen = raw_installable(item, installable_id)
    if entry is None or chosen is None:
        raise BadRequest(f"the entry has no {installable_id!r} to install (see its `installs`)")
    values = _Values(typed)
    if installable_id.startswith("package:"):
        spec = package_spec(chosen, values)
    else:
        spec = remote_spec(chosen, values)
    values.check()
    spec["pinning"] = "enforce"
    source = {"url": registry_url, "name": entry["name"], "version": entry["version"]}
    spec["metadata"] = {"registry": {key: literal(value) for key, value in source.items()}}
    return spec


def secret_values(item: Mapping[str, Any], installable_id: str, typed: Mapping[str, Any]) -> set[str]:
    """The values typed for the secret fields of `installable_id` (as typed, and as written)."""
    entry = entry_of(item, "", "")
    installs = [i for i in entry["installs"] if i["id"] == installable_id] if entry else []
    found = set()
    for field in installs[0]["fields"] if installs else ():
        value = typed.get(field["key"])
        if field["is_secret"] and isinstance(value, str) and len(value) >= 4:  # (as hub.config_secrets)
            found |= {value, literal(value)}
    return found


def masked(spec: Mapping[str, Any], secrets: Collection[str] = ()) -> dict[str, Any]:
    """`spec` as the API shows it: every `env` and `headers` value as `********`, and each of
    `secrets` (a secret argument, a secret in the URL) wherever else it appears."""
    shown = dict(spec)
    for secret in ("env", "headers"):
        if isinstance(spec.get(secret), Mapping):
            shown[secret] = dict.fromkeys(spec[secret], MASK)

    def hide(text: str) -> str:
        for value in sorted(secrets, key=len, reverse=True):
            text = text.replace(value, MASK)
        return text

    if isinstance(spec.get("args"), list):
        shown["args"] = [hide(word) for word in spec["args"]]
    if isinstance(spec.get("url"), str):
        shown["url"] = hide(spec["url"])
    return shown
