"""The Docker and Make files say only what the hub really does (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from hub.cli import _parser
from hub.config import load_config
from hub.errors import ConfigError


def hub_args(command: list[str]) -> list[str]:
    """The arguments after `python -m hub` in a command, which must start with it."""
    assert command[:3] == ["python", "-m", "hub"], command
    return command[3:]


def test_dockerfile_is_multi_stage_non_root_with_a_health_check_on_health() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) == 2
    assert re.search(r"^USER hub$", text, re.M)
    for name in (
        "MCP_HUB_CONFIG=/app/config/docker.yaml",
        "MCP_HUB_PLUGINS_DIR=/app/plugins",
        "LOG_LEVEL=INFO",
    ):
        assert name in text
    health = re.search(r"^HEALTHCHECK .*\n\s+CMD (\[.*\])$", text, re.M)
    assert health and "http://127.0.0.1:8080/health" in health.group(1)
    command = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert _parser().parse_args(hub_args(command)).command == "serve"
    # Everything the image copies exists.
    for source in re.findall(r"^COPY (?!--)(\S+)", text, re.M):
        assert (ROOT / source).exists(), source


# What an installed package puts on the PATH: the image's base (`FROM python:...`), Debian's
# packages (`apt-get install`) and PyPI's (`pip install`).
BASE_COMMANDS = {"python": {"python", "python3", "pip"}}
DEBIAN_COMMANDS = {"nodejs": {"node", "nodejs"}, "npm": {"npm", "npx"}}
PYPI_COMMANDS = {"uv": {"uv", "uvx"}}


def image_commands(dockerfile: str) -> set[str]:
    """The commands the image's final stage provides, read from its FROM and install lines."""
    final = dockerfile.replace("\\\n", " ").rsplit("\nFROM ", 1)[-1]
    base = final.split(":", 1)[0].strip()
    commands = set(BASE_COMMANDS.get(base, ()))
    for run in re.findall(r"^RUN (.*)$", final, re.M):
        for step in run.split("&&"):
            words = shlex.split(step)
            if words[:2] == ["apt-get", "install"]:
                for package in (w for w in words[2:] if not w.startswith("-")):
                    commands |= DEBIAN_COMMANDS.get(package, set())
            elif words[:2] == ["pip", "install"]:
                for package in (w for w in words[2:] if not w.startswith(("-", "/"))):
                    commands |= PYPI_COMMANDS.get(re.split(r"[=<>~!\[]", package)[0], set())
    return commands


def example_configs() -> list[tuple[str, dict]]:
    """Every example configuration: the hub's files in config/ (not HAProxy's, not Kubernetes'
    manifests), and the YAML or JSON blocks of README.md and docs/ that configure tenants."""
    files = sorted(p for p in (ROOT / "config").iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    out = [(path.name, yaml.safe_load(path.read_text())) for path in files]
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"^```(?:yaml|json)\n(.*?)^```", path.read_text(), re.M | re.S):
            data = yaml.safe_load(block)
            if isinstance(data, dict) and "tenants" in data:
                out.append((path.name, data))
    return out


def test_the_image_provides_every_command_the_example_configs_use() -> None:
    """Issue 16: the image had no Node, so no `npx` server (the README's examples) could start."""
    provided = image_commands((ROOT / "Dockerfile").read_text())
    assert {"python", "node", "npx", "uvx"} <= provided
    used = set()
    for name, config in example_configs():
        for tenant in config["tenants"].values():
            for server_name, server in (tenant.get("servers") or {}).items():
                if server.get("transport", "stdio") == "stdio":
                    assert server["command"] in provided, (name, server_name, server["command"])
                    used.add(server["command"])
    assert {"python", "npx"} <= used


def test_docker_config_requires_an_admin_key_and_listens_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_ADMIN_KEY", raising=False)
    with pytest.raises(
        ConfigError, match=r"auth\.admin_keys\[0\]: environment variable 'HUB_ADMIN_KEY' is not set"
    ):
        load_config(ROOT / "config" / "docker.yaml")
    monkeypatch.setenv("HUB_ADMIN_KEY", "a-long-admin-key-for-the-test")
    config = load_config(ROOT / "config" / "docker.yaml")
    assert config.gateway.host == "0.0.0.0" and config.has_keys and config.gateway.port == 8080
    assert config.tenants["default"].api_keys == ()  # DEFAULT_TENANT_KEY unset: no tenant key


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.dev.yml", "docker-compose.prod.yml"])
def test_compose_files_run_the_hub_as_the_cli_allows(name: str) -> None:
    compose = yaml.safe_load((ROOT / name).read_text())
    assert set(compose["services"]) == {"mcp-hub"}, "no service that the hub does not use"
    service = compose["services"]["mcp-hub"]
    assert service["environment"]["MCP_HUB_CONFIG"] == "/app/config/docker.yaml"
    assert "HUB_ADMIN_KEY" in service["environment"]
    assert "8080:8080" in service["ports"]
    if "command" in service:
        _parser().parse_args(hub_args(service["command"]))


def test_makefile_has_the_seeds_targets_and_true_commands() -> None:
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", text, re.M))
    assert {
        "help",
        "up-dev",
        "up-dev-with-db",
        "logs-dev",
        "down-dev",
        "rebuild-dev",
        "test",
        "bench",
    } <= targets
    readme = (ROOT / "README.md").read_text()
    assert "bash tests/setup.sh && pytest" in readme and "\tbash tests/setup.sh && pytest" in text
    for line in re.findall(r"^\t\$\(PYTHON\) (.*)$", text, re.M):
        words = shlex.split(line)
        if words[:2] == ["-m", "hub"]:
            _parser().parse_args(words[2:])
        elif words[0] == "-m":
            assert (ROOT / words[1] / "__main__.py").exists(), words[1]
        else:
            assert (ROOT / words[0]).exists(), words[0]
    for compose in re.findall(r"-f (\S+)", text):
        assert (ROOT / compose).exists()


def test_docs_say_why_there_is_no_database() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert "postgres" in operations.lower() and "redis" in operations.lower()
    assert Path(ROOT / "docker-compose.prod.yml").read_text().count("image:") == 1
