"""Configuration loading and `python -m hub check`, driven as a real subprocess where a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hub.config import MASK, Secret, SecretMap, find_config_path, load_config, parse_config
from hub.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def run_hub(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m hub ARGS` as a user would, and capture its output."""
    import os

    full_env = {k: v for k, v in os.environ.items() if k != "MCP_HUB_CONFIG"} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(tmp_path: Path, text: str, name: str = "hub.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# --------------------------------------------------------------------------- valid configs


def test_seed_servers_json_loads_unchanged() -> None:
    config = load_config(ROOT / "config" / "servers.json")
    server = config.tenants["default"].servers["sqlite-demo"]
    assert server.command == "python"
    assert server.args == ("-m", "mcp.server.sqlite", "--db-path", "./data/demo.db")
    assert server.capabilities == ("tools", "resources")
    assert server.metadata["description"] == "Servidor SQLite de ejemplo"
    # The seed leaves these out: the contract's defaults apply.
    assert server.call_timeout == 60 and server.transport == "stdio" and server.enabled
    assert config.gateway.host == "0.0.0.0" and config.gateway.tool_name_separator == "__"
    assert config.orchestrator.backoff_initial == 1 and config.orchestrator.shutdown_grace == 5


def test_check_seed_example_warns_that_open_hub_on_all_interfaces_will_be_refused() -> None:
    result = run_hub("check", "--config", "config/servers.json")
    assert result.returncode == 0, result.stderr
    assert "1 tenant, 1 server (1 enabled)" in result.stdout
    assert "gateway.host: '0.0.0.0' is not a loopback address" in result.stderr


def test_default_config_is_found_without_arguments_and_runs_the_demo_server() -> None:
    result = run_hub("check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config/hub.yaml: OK: 1 tenant, 1 server (1 enabled), auth: open")
    config = load_config(ROOT / "config" / "hub.yaml")
    demo = config.tenants["default"].servers["sqlite-demo"]
    assert demo.args[:2] == ("-m", "hub.demo_sqlite")
    assert config.gateway.host == "127.0.0.1"


def test_defaults_of_the_contract_are_applied() -> None:
    config = parse_config("tenants: {t: {servers: {s: {command: x}}}}")
    gateway, orch, server = config.gateway, config.orchestrator, config.tenants["t"].servers["s"]
    assert (gateway.host, gateway.port, gateway.mcp_port, gateway.websocket_port) == (
        "127.0.0.1",
        8080,
        8000,
        8081,
    )
    assert (gateway.plugins_dir, gateway.allowed_origins, gateway.tool_name_separator) == (
        str(Path.cwd() / "plugins"),
        (),
        "__",
    )
    assert (orch.auto_start, orch.max_retries, orch.startup_timeout) == (False, 3, 30)
    assert (orch.backoff_initial, orch.backoff_max, orch.shutdown_grace) == (1, 300, 5)
    assert (orch.restart, orch.notification_rate, orch.notification_burst) == ("always", 100, 500)
    assert server.capabilities == ("tools", "resources", "prompts")
    assert (server.transport, server.protocol, server.enabled, server.call_timeout) == (
        "stdio",
        "auto",
        True,
        60,
    )
    assert config.tenants["t"].quotas.max_servers is None


def test_lifecycle_and_idle_timeout(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
    tenants:
      t:
        servers:
          lazy: {command: x, lifecycle: on_demand}
          quick: {command: x, lifecycle: on_demand, idle_timeout: 0.5}
          eager: {command: x, idle_timeout: 10}
    """,
    )
    config = load_config(path)
    servers = config.tenants["t"].servers
    assert servers["lazy"].on_demand and servers["lazy"].idle_seconds == 300
    assert servers["quick"].idle_seconds == 0.5
    assert servers["eager"].lifecycle == "always" and not servers["eager"].on_demand
    result = run_hub("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert "1 tenant, 3 servers (3 enabled, 2 on demand)" in result.stdout
    warning = "tenants.t.servers.eager.idle_timeout: has no effect unless lifecycle is 'on_demand'"
    assert warning in result.stderr
    bad = write(tmp_path, "tenants: {t: {servers: {s: {command: x, lifecycle: lazy, idle_timeout: -1}}}}")
    result = run_hub("check", "--config", str(bad))
    assert result.returncode == 2
    assert "tenants.t.servers.s.lifecycle: must be one of 'always', 'on_demand', got 'lazy'" in result.stderr
    assert "tenants.t.servers.s.idle_timeout: must be >= 0 (got -1)" in result.stderr


def test_config_lookup_order(tmp_path: Path) -> None:
    assert find_config_path("a.yaml", {"MCP_HUB_CONFIG": "b.yaml"}) == Path("a.yaml")
    assert find_config_path(None, {"MCP_HUB_CONFIG": "b.yaml"}) == Path("b.yaml")
    assert find_config_path(None, {}) == Path("config/hub.yaml")
    path = write(tmp_path, "tenants: {envtenant: {}}\n", "from-env.yaml")
    result = run_hub("check", cwd=tmp_path, env={"MCP_HUB_CONFIG": str(path)})
    assert result.returncode == 0 and "from-env.yaml: OK" in result.stdout


def test_json_config_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "hub.json"
    path.write_text(json.dumps({"tenants": {"a": {"servers": {"s": {"command": "echo"}}}}}))
    assert load_config(path).tenants["a"].servers["s"].command == "echo"


def test_frozen_config_cannot_be_changed() -> None:
    config = parse_config("tenants: {t: {servers: {s: {command: x}}}}")
    with pytest.raises(AttributeError):
        config.tenants["t"].servers["s"].command = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.tenants["t"].servers["z"] = config.tenants["t"].servers["s"]  # type: ignore[index]


# --------------------------------------------------------------------------- env expansion


def test_env_expansion_with_and_without_defaults() -> None:
    text = """
    tenants:
      t:
        description: "${DESC}"
        servers:
          s:
            command: "${CMD:-python}"
            args: ["--level=${LEVEL:-info}", "$${LITERAL}", "${EMPTY:-fallback}"]
            url: null
    gateway: {host: "${HOST:-127.0.0.1}"}
    """
    config = parse_config(textwrap.dedent(text), environ={"DESC": "from env", "EMPTY": ""})
    server = config.tenants["t"].servers["s"]
    assert config.tenants["t"].description == "from env"
    assert server.command == "python"
    assert server.args == ("--level=info", "${LITERAL}", "fallback")
    assert config.gateway.host == "127.0.0.1"
    config = parse_config(textwrap.dedent(text), environ={"DESC": "x", "CMD": "node", "HOST": "::1"})
    assert config.tenants["t"].servers["s"].command == "node" and config.gateway.host == "::1"


def test_unset_variable_names_the_field_and_variable_never_a_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
    tenants:
      acme:
        api_keys: ["${ACME_KEY}"]
        env: {TOKEN: "${ACME_TOKEN}", OTHER: "${SET_SECRET}"}
    """,
    )
    result = run_hub("check", "--config", str(path), env={"SET_SECRET": "hunter2-very-secret"})
    assert result.returncode == 2
    assert "tenants.acme.api_keys[0]: environment variable 'ACME_KEY' is not set" in result.stderr
    assert "tenants.acme.env.TOKEN: environment variable 'ACME_TOKEN' is not set" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_empty_keys_are_ignored_so_optional_keys_are_possible() -> None:
    config = parse_config(
        'auth: {admin_keys: ["${ADMIN:-}"]}\ntenants: {t: {api_keys: ["${K:-}"]}}', environ={}
    )
    assert config.auth.admin_keys == () and config.tenants["t"].api_keys == ()
    assert not config.has_keys


# --------------------------------------------------------------------------- secrets


def test_secrets_are_masked_in_repr_and_revealed_only_on_purpose() -> None:
    text = """
    auth: {admin_keys: [admin-key-123456]}
    tenants:
      t:
        api_keys: [tenant-key-abcdef]
        env: {GITHUB_TOKEN: ghp_tenantsecret}
        servers:
          s: {transport: http, url: "http://127.0.0.1:1/mcp", headers: {Authorization: Bearer hdrsecret},
              env: {DB_PASSWORD: pw-server-secret}}
    """
    config = parse_config(textwrap.dedent(text))
    shown = repr(config) + str(config.tenants["t"].env) + str(config.auth.admin_keys[0])
    for secret in (
        "admin-key-123456",
        "tenant-key-abcdef",
        "ghp_tenantsecret",
        "hdrsecret",
        "pw-server-secret",
    ):
        assert secret not in shown
    assert MASK in shown and "GITHUB_TOKEN" in shown and "DB_PASSWORD" in shown
    server = config.tenants["t"].servers["s"]
    assert server.env.reveal() == {"DB_PASSWORD": "pw-server-secret"}
    assert server.headers.masked() == {"Authorization": MASK}
    assert config.tenants["t"].api_keys[0].key.matches("tenant-key-abcdef")
    assert not config.tenants["t"].api_keys[0].key.matches("tenant-key-abcdeF")


def test_secret_types_compare_by_value() -> None:
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert SecretMap({"A": "1"}) == SecretMap({"A": "1"}) != SecretMap({"A": "2"})


def test_check_output_never_shows_secrets_even_when_they_are_wrong(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
    auth: {admin_keys: [supersecretadmin, 42]}
    tenants:
      t:
        env: {TOKEN: [not, a, string], OK: visible-secret-value}
        servers:
          s: {command: x, headers: {X-Key: 7}, env: {PASSWORD: {nested: secret-in-mapping}}}
    """,
    )
    result = run_hub("check", "--config", str(path))
    assert result.returncode == 2
    for secret in ("supersecretadmin", "visible-secret-value", "secret-in-mapping", "not, a"):
        assert secret not in result.stderr + result.stdout
    assert "auth.admin_keys[1]: expected string, got integer" in result.stderr
    assert "tenants.t.env.TOKEN: expected string, got array" in result.stderr


# --------------------------------------------------------------------------- malformed configs

SERVER = "tenants:\n  acme:\n    servers:\n      db:\n"

MALFORMED = {
    "missing command": (
        SERVER + "        type: database\n",
        "tenants.acme.servers.db.command: 'command' is required",
    ),
    "misspelt key": (
        SERVER + "        comand: x\n",
        "tenants.acme.servers.db.comand: unknown key (did you mean 'command'?)",
    ),
    "misspelt top-level key": ("tenants: {}\ngatway: {}\n", "gatway: unknown key (did you mean 'gateway'?)"),
    "misspelt tenant key": (
        "tenants:\n  acme:\n    qoutas: {}\n",
        "tenants.acme.qoutas: unknown key (did you mean 'quotas'?)",
    ),
    "unknown quota": (
        "tenants:\n  acme:\n    quotas: {max_server: 3}\n",
        "tenants.acme.quotas.max_server: unknown key (did you mean 'max_servers'?)",
    ),
    "args not a list": (
        SERVER + "        command: x\n        args: --flag\n",
        "tenants.acme.servers.db.args: expected array, got string",
    ),
    "arg not a string": (
        SERVER + "        command: x\n        args: [1]\n",
        "tenants.acme.servers.db.args[0]: expected string, got integer",
    ),
    "enabled not boolean": (
        SERVER + "        command: x\n        enabled: sometimes\n",
        "tenants.acme.servers.db.enabled: expected boolean, got string",
    ),
    "bad transport": (
        SERVER + "        command: x\n        transport: grpc\n",
        "tenants.acme.servers.db.transport: must be one of 'stdio', 'http', 'sse', got 'grpc'",
    ),
    "http without url": (
        SERVER + "        transport: http\n",
        "tenants.acme.servers.db.url: 'url' is required for transport 'http'",
    ),
    "sse without url": (
        SERVER + "        transport: sse\n",
        "tenants.acme.servers.db.url: 'url' is required for transport 'sse'",
    ),
    "url not http": (
        SERVER + "        transport: http\n        url: ftp://x\n",
        "tenants.acme.servers.db.url: must match ^https?://",
    ),
    "bad capability": (
        SERVER + "        command: x\n        capabilities: [tools, tool]\n",
        "tenants.acme.servers.db.capabilities[1]: must be one of 'tools', 'resources', 'prompts'",
    ),
    "zero timeout": (
        SERVER + "        command: x\n        call_timeout: 0\n",
        "tenants.acme.servers.db.call_timeout: must be > 0 (got 0)",
    ),
    "bad protocol": (
        SERVER + "        command: x\n        protocol: '2024-01-01'\n",
        "tenants.acme.servers.db.protocol: must be one of 'auto', 'legacy', '2026-07-28'",
    ),
    "name differs from key": (
        SERVER + "        command: x\n        name: other\n",
        "tenants.acme.servers.db.name: 'other' differs from the server's key 'db'",
    ),
    "invalid server name": (
        "tenants:\n  acme:\n    servers:\n      my.db: {command: x}\n",
        "tenants.acme.servers.my.db: invalid server name 'my.db'",
    ),
    "server name too long": (
        "tenants:\n  acme:\n    servers:\n      " + "s" * 33 + ": {command: x}\n",
        "invalid server name '" + "s" * 33 + "'",
    ),
    "invalid tenant name": ("tenants:\n  'a b': {}\n", "tenants.a b: invalid tenant name 'a b'"),
    "duplicate server": (
        SERVER + "        command: x\n      db:\n        command: y\n",
        "tenants.acme.servers.db: duplicate key (line 6; first defined on line 4)",
    ),
    "missing tenants": ("version: '1.0.0'\n", "tenants: 'tenants' is required"),
    "tenants not a mapping": ("tenants: [a, b]\n", "tenants: expected mapping, got array"),
    "port out of range": (
        "tenants: {}\ngateway: {port: 70000}\n",
        "gateway.port: must be <= 65535 (got 70000)",
    ),
    "port not integer": (
        "tenants: {}\ngateway: {port: '8080'}\n",
        "gateway.port: expected integer, got string",
    ),
    "bad separator": (
        "tenants: {}\ngateway: {tool_name_separator: '.'}\n",
        "gateway.tool_name_separator: must match",
    ),
    "negative retries": (
        "tenants: {}\norchestrator: {max_retries: -1}\n",
        "orchestrator.max_retries: must be >= 0 (got -1)",
    ),
    "env value not string": (
        "tenants:\n  acme:\n    env: {PORT: 5432}\n",
        "tenants.acme.env.PORT: expected string, got integer",
    ),
    "quota zero": (
        "tenants:\n  acme:\n    quotas: {max_tools: 0}\n",
        "tenants.acme.quotas.max_tools: must be >= 1",
    ),
    "yaml syntax error": ("tenants:\n  acme: [\n", ":3:1: syntax error"),
    "not a mapping": ("- just\n- a list\n", "the configuration must be a mapping"),
    "tool filter not list": (
        SERVER + "        command: x\n        tools: {allow: 'read_*'}\n",
        "tenants.acme.servers.db.tools.allow: expected array, got string",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_config_is_rejected_with_its_path(case: str, tmp_path: Path) -> None:
    text, expected = MALFORMED[case]
    path = write(tmp_path, text)
    result = run_hub("check", "--config", str(path))
    assert result.returncode == 2, result.stdout
    assert expected in result.stderr
    assert result.stdout == ""


def test_every_problem_is_reported_at_once_and_sorted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
    tenants:
      zeta:
        servers:
          b: {transport: http}
          a: {comand: x}
      alpha:
        quotas: {max_servers: 0}
    gateway: {port: -1}
    """,
    )
    result = run_hub("check", "--config", str(path))
    assert result.returncode == 2
    lines = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert lines == sorted(lines)
    assert "(5 problems)" in result.stderr.splitlines()[0]
    assert [line.split(":")[0] for line in lines] == [
        "gateway.port",
        "tenants.alpha.quotas.max_servers",
        "tenants.zeta.servers.a.comand",
        "tenants.zeta.servers.a.command",
        "tenants.zeta.servers.b.url",
    ]


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_hub("check", "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "missing.yaml: cannot read the configuration file: No such file or directory" in result.stderr


@pytest.mark.parametrize("command", ["check", "serve", "stdio"])
def test_a_missing_config_says_where_it_looked_and_how_to_name_one(tmp_path: Path, command: str) -> None:
    """Issue 16: outside the repository, the message named neither --config nor MCP_HUB_CONFIG."""
    result = run_hub(command, cwd=tmp_path)
    assert result.returncode == 2
    assert "config/hub.yaml: cannot read the configuration file: No such file or directory" in result.stderr
    assert f"tried {tmp_path / 'config' / 'hub.yaml'}, from the default ./config/hub.yaml" in result.stderr
    assert "--config PATH or MCP_HUB_CONFIG=PATH" in result.stderr
    result = run_hub(command, cwd=tmp_path, env={"MCP_HUB_CONFIG": "elsewhere.yaml"})
    assert result.returncode == 2
    assert f"tried {tmp_path / 'elsewhere.yaml'}, from $MCP_HUB_CONFIG (no --config given)" in result.stderr


def test_parse_config_raises_config_error_with_problems() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("tenants: {a: {servers: {s: {}}}}")
    assert caught.value.problems == (
        "tenants.a.servers.s.command: 'command' is required for transport 'stdio'",
    )
    assert caught.value.status == 400 and caught.value.code == "invalid_config"


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize("command", ["serve", "stdio", "check"])
def test_every_subcommand_has_help(command: str) -> None:
    result = run_hub(command, "--help")
    assert result.returncode == 0
    assert "--config" in result.stdout


def test_version_and_top_level_help() -> None:
    import hub

    assert run_hub("--version").stdout.strip() == f"mcp-hub {hub.__version__}"
    helped = run_hub("--help")
    assert helped.returncode == 0 and all(c in helped.stdout for c in ("serve", "stdio", "check"))


def test_usage_error_exits_2() -> None:
    result = run_hub("check", "--no-such-flag")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_console_script_is_installed() -> None:
    import shutil

    script = shutil.which("mcp-hub", path=str(Path(sys.executable).parent))
    assert script, "the mcp-hub console script is not installed next to the interpreter"
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "mcp-hub" in result.stdout


def test_configuration_reference_is_generated_from_the_current_schema() -> None:
    from hub.schema_doc import render

    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/configuration.md is stale: python -m hub.schema_doc > docs/configuration.md"
    )


def test_config_schema_is_generated_from_the_current_model() -> None:
    from hub.config_schema import render

    committed = (ROOT / "schemas" / "config.schema.json").read_text(encoding="utf-8")
    assert committed == render(), (
        "schemas/config.schema.json is stale: python -m hub.config_schema > schemas/config.schema.json"
    )


def test_relative_paths_are_relative_to_the_configuration_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = write(
        tmp_path / "etc",
        """
    tenants: {t: {servers: {s: {command: x, cwd: ../work}, n: {command: y}}}}
    gateway: {plugins_dir: apps}
    orchestrator: {data_dir: ../state}
    """,
    )
    config = load_config(path)
    assert config.tenants["t"].servers["s"].cwd == str(tmp_path / "work")
    assert config.tenants["t"].servers["n"].cwd is None  # the hub's working directory
    assert config.gateway.plugins_dir == str(tmp_path / "etc" / "apps")
    assert config.orchestrator.data_dir == str(tmp_path / "state")


def test_sandbox_settings_are_overridden_level_by_level_and_binds_add_up(tmp_path: Path) -> None:
    from hub.config import SandboxBind, SandboxConfig

    path = write(
        tmp_path,
        """
    orchestrator: {sandbox: {network: none, binds: [{path: shared}]}}
    tenants:
      a:
        sandbox: {required: true, binds: [{path: /srv/a, mode: rw}]}
        servers:
          s: {command: x, sandbox: {network: host, binds: [{path: shared, mode: rw}]}}
          t: {command: x}
      b: {servers: {u: {command: x, sandbox: {enabled: false}}}}
      c: {servers: {v: {command: x}}}
    """,
    )
    config = load_config(path)
    shared = str(tmp_path / "shared")  # relative to the configuration file, as every path
    a, b = config.tenants["a"].servers, config.tenants["b"].servers
    assert a["s"].sandbox == SandboxConfig(
        enabled=True,
        required=True,
        network="host",
        binds=(SandboxBind(path="/srv/a", mode="rw"), SandboxBind(path=shared, mode="rw")),
    )
    assert a["t"].sandbox == SandboxConfig(
        enabled=True,
        required=True,
        network="none",
        binds=(SandboxBind(path=shared), SandboxBind(path="/srv/a", mode="rw")),
    )
    assert b["u"].sandbox == SandboxConfig(
        enabled=False, required=False, network="none", binds=(SandboxBind(path=shared),)
    )
    assert config.tenants["c"].servers["v"].sandbox == config.orchestrator.sandbox
    assert parse_config("tenants: {t: {servers: {s: {command: x}}}}").orchestrator.sandbox == SandboxConfig()


def test_sandbox_settings_are_checked(tmp_path: Path) -> None:
    text = """
    tenants:
      t:
        sandbox: {network: nowhere}
        servers: {s: {command: x, sandbox: {binds: [{mode: rx}, {path: ""}], share: true}}}
    """
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text))
    assert caught.value.problems == (
        "tenants.t.sandbox.network: must be one of 'host', 'none', got 'nowhere'",
        "tenants.t.servers.s.sandbox.binds[0].mode: must be one of 'ro', 'rw', got 'rx'",
        "tenants.t.servers.s.sandbox.binds[0].path: 'path' is required",
        "tenants.t.servers.s.sandbox.binds[1].path: must not be empty",
        "tenants.t.servers.s.sandbox.share: unknown key",
    )


def test_keys_with_grants_scopes_issuers_and_users_load_and_bad_references_are_named() -> None:
    config = parse_config(
        textwrap.dedent(
            """
            auth:
              scopes: {db-read: {allow: ["db.query"]}, all: {}}
              issuers: [{issuer: "https://idp.example", tenant: t}]
              server: {enabled: true, users: {alice: {password_hash: "x", tenant: t, scopes: [db-read]}}}
            tenants:
              t:
                api_keys:
                  - "plain-key-1"
                  - {key: "scoped-key-1", subject: bob, allow: ["db.*"], deny: ["db.drop"]}
                servers: {db: {command: x}, gh: {command: x, per_user: true, user_env: [GITHUB_TOKEN]}}
            """
        )
    )
    plain, scoped = config.tenants["t"].api_keys
    assert plain.grant.unrestricted and plain.key.matches("plain-key-1")
    assert scoped.subject == "bob" and scoped.grant.allows("db", "query")
    assert not scoped.grant.allows("db", "drop") and not scoped.grant.allows("gh", "issues")
    assert scoped.grant.allows("db", None) and not config.auth.scopes["db-read"].allows("db", None)
    assert config.auth.grant_of(("db-read", "unknown")) == (config.auth.scopes["db-read"],)
    assert config.auth.grant_of(("unknown",)) == ()  # scopes configured: a token without one gets nothing
    gh = config.tenants["t"].servers["gh"]
    assert gh.per_user and gh.on_demand and gh.user_env == ("GITHUB_TOKEN",)
    assert config.has_keys and config.auth.oauth
    with pytest.raises(ConfigError) as raised:
        parse_config(
            textwrap.dedent(
                """
                auth:
                  issuers: [{issuer: "https://idp.example"}, {issuer: "https://b.example", tenant: nope}]
                  server: {users: {alice: {password_hash: "x", tenant: nope, scopes: [missing]}}}
                tenants:
                  t:
                    servers:
                      a: {command: x, user_env: [X]}
                      b: {command: x, per_user: true, per_session: true}
                """
            )
        )
    assert list(raised.value.problems) == [
        "auth.issuers[0]: give exactly one of 'tenant' (all its tokens act there) and 'tenant_claim'",
        "auth.issuers[1].tenant: no tenant 'nope'",
        "auth.server.users.alice.scopes: 'missing' is not one of auth.scopes",
        "auth.server.users.alice.tenant: no tenant 'nope'",
        "tenants.t.servers.a.user_env: only a per_user server has user credentials (set per_user: true)",
        "tenants.t.servers.b.per_user: per_user and per_session exclude each other (choose one)",
    ]
