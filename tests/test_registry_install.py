"""Registry entries turned into server configurations (`hub.registry_install`): what each kind of
package and remote becomes, what is asked for, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from helpers.registry import NPM_VERSION, SECRET_TOKEN_VAR, entries

from hub.config import parse_config
from hub.errors import BadRequest
from hub.registry_entries import entry_of
from hub.registry_install import masked, secret_values, server_spec

REGISTRY = "http://registry.test"
ITEMS = {  # (the latest version of each)
    item["server"]["name"].rsplit("/", 1)[1]: item
    for item in entries("http://127.0.0.1:5555")
    if item["_meta"]["io.modelcontextprotocol.registry/official"]["isLatest"]
}


def loads(spec: dict[str, Any]) -> None:
    """The spec is a server a user could have written by hand: the configuration takes it."""
    config = parse_config(yaml.safe_dump({"tenants": {"t": {"servers": {"s": spec}}}}))
    assert config.tenants["t"].servers["s"].pinning == "enforce"


def test_an_npm_package_runs_pinned_through_npx_with_its_environment() -> None:
    spec = server_spec(
        ITEMS["server-memory"], "package:0", {"env:MEMORY_FILE_PATH": "/data/m.jsonl"}, REGISTRY
    )
    assert spec == {
        "command": "npx",
        "args": ["-y", f"@modelcontextprotocol/server-memory@{NPM_VERSION}"],
        "env": {"MEMORY_FILE_PATH": "/data/m.jsonl"},
        "pinning": "enforce",
        "metadata": {
            "registry": {
                "url": REGISTRY,
                "name": "io.github.modelcontextprotocol/server-memory",
                "version": NPM_VERSION,
            }
        },
    }
    loads(spec)
    # An optional value left empty is left out.
    assert "env" not in server_spec(
        ITEMS["server-memory"], "package:0", {"env:MEMORY_FILE_PATH": ""}, REGISTRY
    )


def test_required_values_are_enforced_and_named_all_at_once() -> None:
    with pytest.raises(BadRequest, match="missing required values: allowed_directory"):
        server_spec(ITEMS["server-filesystem"], "package:0", {}, REGISTRY)
    spec = server_spec(ITEMS["server-filesystem"], "package:0", {"arg:package:0": "/srv/files"}, REGISTRY)
    assert spec["args"] == ["-y", f"@modelcontextprotocol/server-filesystem@{NPM_VERSION}", "/srv/files"]
    with pytest.raises(BadRequest, match=f"missing required values: {SECRET_TOKEN_VAR}"):
        server_spec(ITEMS["server-everything"], "package:0", {"env:EVERYTHING_MODE": "fast"}, REGISTRY)
    with pytest.raises(BadRequest, match="EVERYTHING_MODE must be one of fast, thorough"):
        server_spec(
            ITEMS["server-everything"],
            "package:0",
            {f"env:{SECRET_TOKEN_VAR}": "x", "env:EVERYTHING_MODE": "slow"},
            REGISTRY,
        )


def test_fixed_arguments_and_defaults_come_with_the_entry_and_secrets_are_masked_when_shown() -> None:
    spec = server_spec(
        ITEMS["server-everything"], "package:0", {f"env:{SECRET_TOKEN_VAR}": "s3cret-token"}, REGISTRY
    )
    assert spec["args"] == ["-y", f"@modelcontextprotocol/server-everything@{NPM_VERSION}", "stdio"]
    assert spec["env"] == {SECRET_TOKEN_VAR: "s3cret-token", "EVERYTHING_MODE": "fast"}
    shown = masked(spec)
    assert shown["env"] == {SECRET_TOKEN_VAR: "********", "EVERYTHING_MODE": "********"}
    assert "s3cret-token" not in repr(shown) and spec["env"][SECRET_TOKEN_VAR] == "s3cret-token"
    fields = {
        f["key"]: f for f in entry_of(ITEMS["server-everything"], "r", REGISTRY)["installs"][0]["fields"]
    }
    assert fields[f"env:{SECRET_TOKEN_VAR}"]["is_secret"] and fields[f"env:{SECRET_TOKEN_VAR}"]["is_required"]
    assert fields["arg:package:0"]["fixed"] and fields["env:EVERYTHING_MODE"]["choices"] == [
        "fast",
        "thorough",
    ]


def test_a_pypi_package_runs_through_uvx_with_its_named_arguments() -> None:
    spec = server_spec(ITEMS["server-time"], "package:0", {"arg:package:0": "Europe/Paris"}, REGISTRY)
    assert spec["command"] == "uvx"
    assert spec["args"] == ["mcp-server-time==2026.1.26", "--local-timezone", "Europe/Paris"]
    loads(spec)
    hinted = {**ITEMS["server-time"], "server": dict(ITEMS["server-time"]["server"])}
    hinted["server"]["packages"] = [{**ITEMS["server-time"]["server"]["packages"][0], "runtimeHint": "pipx"}]
    assert server_spec(hinted, "package:0", {}, REGISTRY)["args"] == ["run", "mcp-server-time==2026.1.26"]
    python = {"type": "named", "name": "--python", "value": "3.12"}
    pinned = {**hinted["server"]["packages"][0], "runtimeHint": "uvx", "runtimeArguments": [python]}
    hinted["server"]["packages"] = [pinned]
    assert server_spec(hinted, "package:0", {}, REGISTRY)["args"] == [
        "--python",
        "3.12",
        "mcp-server-time==2026.1.26",
    ]
    hinted["server"]["packages"] = [{**pinned, "runtimeHint": "sh"}]  # (not a runner of pypi packages)
    assert server_spec(hinted, "package:0", {}, REGISTRY)["command"] == "uvx"


def test_an_oci_image_is_refused_it_needs_a_container_engine() -> None:
    with pytest.raises(BadRequest, match="needs a container engine, which the hub does not run"):
        server_spec(ITEMS["container-only"], "package:0", {}, REGISTRY)
    install = entry_of(ITEMS["container-only"], "r", REGISTRY)["installs"][0]
    assert not install["installable"] and "container engine" in install["why_not"]


def test_a_remote_becomes_an_http_server_with_its_url_filled_and_its_headers() -> None:
    with pytest.raises(BadRequest, match="missing required values: X-Api-Key"):
        server_spec(ITEMS["remote-echo"], "remote:0", {}, REGISTRY)
    spec = server_spec(ITEMS["remote-echo"], "remote:0", {"header:X-Api-Key": "k-123"}, REGISTRY)
    assert spec["transport"] == "http" and spec["url"] == "http://127.0.0.1:5555/mcp"
    assert spec["headers"] == {"X-Api-Key": "k-123"}
    loads(spec)
    assert masked(spec)["headers"] == {"X-Api-Key": "********"}
    sse = server_spec(
        ITEMS["remote-echo"], "remote:0", {"header:X-Api-Key": "k", "url:path": "sse"}, REGISTRY
    )
    assert sse["url"] == "http://127.0.0.1:5555/sse"


def test_an_install_that_the_entry_does_not_offer_is_refused() -> None:
    for chosen in ("package:1", "remote:0", "nothing", "package:x"):
        with pytest.raises(BadRequest, match="has no"):
            server_spec(ITEMS["server-memory"], chosen, {}, REGISTRY)


def test_a_registry_never_pulls_the_hubs_environment_into_a_server_but_an_admin_may() -> None:
    """Whatever an entry says is written so that it reads as itself (`$` doubled): a default or a
    fixed value of `${HUB_ADMIN_KEY}` must not hand the hub's key to the server. A value the admin
    types as a whole `${VAR}` stays a reference to the hub's environment."""
    package = {
        "registryType": "npm",
        "identifier": "@example/x$y",
        "version": "1.0.0",
        "transport": {"type": "stdio"},
        "packageArguments": [
            {"type": "positional", "value": "--key=${HUB_ADMIN_KEY}:{who}", "variables": {"who": {}}}
        ],
        "environmentVariables": [
            {"name": "STOLEN", "default": "${HUB_ADMIN_KEY}"},
            {"name": "TOKEN", "isSecret": True},
            {"name": "PRICE", "isSecret": True},
        ],
    }
    item = {"server": {"name": "io.example/x", "version": "1.0.0", "packages": [package]}}
    typed = {"arg:package:0/who": "me", "env:TOKEN": "${MY_TOKEN}", "env:PRICE": "5$ or ${X}"}
    spec = server_spec(item, "package:0", typed, REGISTRY)
    environ = {"HUB_ADMIN_KEY": "the-admin-key", "MY_TOKEN": "the-token", "X": "x"}
    config = parse_config(yaml.safe_dump({"tenants": {"t": {"servers": {"s": spec}}}}), environ=environ)
    server = config.tenants["t"].servers["s"]
    assert list(server.args) == ["-y", "@example/x$y@1.0.0", "--key=${HUB_ADMIN_KEY}:me"]
    assert server.env.reveal() == {
        "STOLEN": "${HUB_ADMIN_KEY}",
        "TOKEN": "the-token",
        "PRICE": "5$ or ${X}",
    }


def test_a_secret_argument_or_url_variable_is_masked_where_the_install_is_shown() -> None:
    package = {
        "registryType": "npm",
        "identifier": "@example/x",
        "version": "1.0.0",
        "packageArguments": [{"type": "named", "name": "--api-key", "isSecret": True, "isRequired": True}],
    }
    item = {"server": {"name": "io.example/x", "version": "1.0.0", "packages": [package]}}
    typed = {"arg:package:0": "key-$ecret-123"}
    spec = server_spec(item, "package:0", typed, REGISTRY)
    assert spec["args"] == ["-y", "@example/x@1.0.0", "--api-key", "key-$$ecret-123"]
    shown = masked(spec, secret_values(item, "package:0", typed))
    assert shown["args"] == ["-y", "@example/x@1.0.0", "--api-key", "********"]
    remote = {
        "type": "sse",
        "url": "https://mcp.example/{token}/sse",
        "variables": {"token": {"isSecret": True}},
    }
    item = {"server": {"name": "io.example/y", "version": "1.0.0", "remotes": [remote]}}
    spec = server_spec(item, "remote:0", {"url:token": "t0k3n-value"}, REGISTRY)
    assert spec["transport"] == "sse" and spec["url"] == "https://mcp.example/t0k3n-value/sse"
    shown = masked(spec, secret_values(item, "remote:0", {"url:token": "t0k3n-value"}))
    assert shown["url"] == "https://mcp.example/********/sse"
