"""The cluster deployment files agree with each other and with what the hub really does.

docker-compose.cluster.yml, config/cluster.yaml, config/haproxy.cfg and config/kubernetes/ are
judged by the hub's own configuration loader and edge policy, and by `haproxy -c` (no Docker engine
or Kubernetes runs here): every variable the configuration needs is given to every replica, the
replicas are distinct and reach one another, HAProxy balances exactly them, the probes and the
Service hit the port the hub listens on, and the ConfigMap is config/cluster.yaml.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import conftest
import pytest
import yaml
from conftest import ROOT, missing

from hub.cli import _parser
from hub.config import ConfigError, HubConfig, load_config, parse_config
from web.edge import EdgePolicy

CLUSTER_CONFIG = ROOT / "config" / "cluster.yaml"
HAPROXY_CFG = ROOT / "config" / "haproxy.cfg"
COMPOSE = ROOT / "docker-compose.cluster.yml"
KUBERNETES = ROOT / "config" / "kubernetes"
# What the operator exports before `docker compose -f docker-compose.cluster.yml up`.
SHELL = {
    "HUB_ADMIN_KEY": "an-admin-key-for-the-test",
    "REDIS_PASSWORD": "0123456789abcdef",
    "MCP_HUB_CLUSTER_SECRET": "c" * 40,
}
# `${NAME}`, `${NAME:-default}`, `${NAME:?message}` (compose), not `$${...}` (a literal `$`).
_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^}]*))?\}")


def required_variables(text: str) -> set[str]:
    """The variables a configuration text uses without a default."""
    return {m[1] for m in _VARIABLE.finditer(text) if m[2] != "-"}


def interpolate(value: str, environ: Mapping[str, str]) -> str:
    """`value` as Docker Compose interpolates it from `environ` (`:?` fails when unset or empty)."""

    def substitute(match: re.Match[str]) -> str:
        name, kind, rest = match[1], match[2], match[3]
        if environ.get(name):
            return environ[name]
        if kind == "?":
            raise LookupError(f"{name}: {rest}")
        return rest if kind == "-" else environ.get(name, "")

    return _VARIABLE.sub(substitute, value).replace("$$", "$")


def load(environ: Mapping[str, str]) -> HubConfig:
    return load_config(CLUSTER_CONFIG, environ=environ)


def advertised(config: HubConfig) -> tuple[str, int]:
    """(host, port) of a replica's `cluster.advertise_url`."""
    assert config.cluster is not None and config.cluster.advertise_url
    url = urlsplit(config.cluster.advertise_url)
    assert url.scheme == "http" and url.hostname and url.port, url
    return url.hostname, url.port


def assert_reachable_as(config: HubConfig, host: str, port: int) -> None:
    """Requests to `host:port` reach this hub: its port, and a Host its edge policy answers."""
    assert port == config.gateway.port
    policy = EdgePolicy.of(config.gateway, config.gateway.host)
    assert policy.host_allowed(f"{host}:{port}"), f"{host} is not in gateway.allowed_hosts (421)"


# --------------------------------------------------------------------------- config/cluster.yaml


def test_cluster_config_needs_every_secret_and_replica_variable_and_is_a_replica() -> None:
    needed = required_variables(CLUSTER_CONFIG.read_text())
    assert needed == {*SHELL, "MCP_HUB_REPLICA_ID", "MCP_HUB_ADVERTISE_HOST"}
    environ = {**SHELL, "MCP_HUB_REPLICA_ID": "hub-1", "MCP_HUB_ADVERTISE_HOST": "hub-1"}
    for name in needed:  # each one unset is reported by name, never a silent default
        with pytest.raises(ConfigError, match=f"environment variable '{name}' is not set"):
            load({k: v for k, v in environ.items() if k != name})
    config = load(environ)
    cluster = config.cluster
    assert cluster is not None and cluster.replica_id == "hub-1" and cluster.heartbeat == 5
    assert cluster.redis_url.reveal() == "redis://:0123456789abcdef@redis:6379/0"
    assert cluster.secret.reveal() == SHELL["MCP_HUB_CLUSTER_SECRET"]
    assert config.gateway.host == "0.0.0.0" and config.has_keys and config.gateway.port == 8080
    # One listener, the one the load balancers, probes and other replicas use.
    assert config.gateway.mcp_port is None and config.gateway.websocket_port is None
    assert config.orchestrator.auto_start  # each replica starts its share as it starts
    with pytest.raises(ConfigError, match=r"cluster\.secret: .*at least 32 characters"):
        load({**environ, "MCP_HUB_CLUSTER_SECRET": "short"})


def test_the_image_installs_the_cluster_extra() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    build, final = dockerfile.split("\nFROM ", 2)[1:]
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert "redis" in setup["options.extras_require"]["cluster"]
    assert re.search(r"^RUN pip wheel .*'\.\[cluster\]'$", build, re.M)
    name = setup["metadata"]["name"]
    assert re.search(rf"^RUN pip install .*--no-index .*'{name}\[cluster\]'", final, re.M)


# --------------------------------------------------------------------------- compose and HAProxy


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_replicas() -> dict[str, dict[str, str]]:
    """Each hub service of the compose file: its environment, interpolated from `SHELL`."""
    services = compose()["services"]
    return {
        name: {key: interpolate(str(value), SHELL) for key, value in service["environment"].items()}
        for name, service in services.items()
        if "MCP_HUB_CONFIG" in service.get("environment", {})
    }


def test_compose_runs_three_distinct_replicas_that_reach_each_other_and_redis() -> None:
    services = compose()["services"]
    replicas = compose_replicas()
    assert len(replicas) == 3
    single = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["mcp-hub"]
    needed = required_variables(CLUSTER_CONFIG.read_text())
    ids, urls = set(), set()
    for name, environ in replicas.items():
        service = services[name]
        assert service["build"] == "." and service["image"] == single["image"]
        _parser().parse_args(service["command"][3:])
        assert service["command"][:3] == ["python", "-m", "hub"]
        assert environ["MCP_HUB_CONFIG"] == "/app/config/cluster.yaml"  # (the image copies config/)
        assert needed <= set(environ), needed - set(environ)
        for secret in SHELL:  # from the operator's shell, and refused when unset
            assert re.fullmatch(rf"\$\{{{secret}:\?[^}}]+\}}", service["environment"][secret])
            with pytest.raises(LookupError):
                interpolate(service["environment"][secret], {})
        config = load(environ)
        assert config.cluster is not None
        ids.add(config.cluster.resolved_replica_id())
        urls.add(config.cluster.advertise_url)
        host, port = advertised(config)
        assert host == name, "other replicas reach it by its service name"
        assert_reachable_as(config, host, port)
        grace = float(service["stop_grace_period"].removesuffix("s"))
        assert grace > config.orchestrator.shutdown_grace + 10
        redis = urlsplit(config.cluster.redis_url.reveal())
        assert services[redis.hostname]["image"] == "redis:7" and redis.port == 6379
        assert redis.password == SHELL["REDIS_PASSWORD"]
        assert redis.hostname in service["depends_on"]
    assert len(ids) == 3 and len(urls) == 3


def test_compose_redis_has_the_replicas_password_and_no_persistence() -> None:
    redis = compose()["services"]["redis"]
    environ = {k: interpolate(v, SHELL) for k, v in redis["environment"].items()}
    assert environ["REDIS_PASSWORD"] == SHELL["REDIS_PASSWORD"] == environ["REDISCLI_AUTH"]
    script = redis["command"][-1]
    assert "requirepass $$REDIS_PASSWORD" in script  # ($$: the container's shell expands it)
    assert "--save ''" in script and "--appendonly no" in script
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def haproxy_sections() -> dict[str, list[list[str]]]:
    """config/haproxy.cfg: each section (`defaults`, `backend hubs`, ...) and its lines' words."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for line in HAPROXY_CFG.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if not line[0].isspace():
            current = sections.setdefault(" ".join(words), [])
        else:
            current.append(words)
    return sections


def test_haproxy_balances_exactly_the_compose_replicas_and_checks_health() -> None:
    sections = haproxy_sections()
    frontend = next(v for k, v in sections.items() if k.startswith("frontend "))
    backend_name = next(words[1] for words in frontend if words[0] == "default_backend")
    backend = sections[f"backend {backend_name}"]
    assert ["balance", "roundrobin"] in backend
    assert ["option", "httpchk", "GET", "/health"] in backend
    assert ["http-check", "expect", "status", "200"] in backend
    # A keyed request (Idempotency-Key) is sent again to another replica when its replica died
    # before answering; any other only when its connection failed before it was sent.
    assert ["retry-on", "conn-failure", "empty-response"] in backend
    assert ["option", "redispatch", "1"] in backend and ["option", "http-buffer-request"] in backend
    retry_rule = [
        "http-request",
        "disable-l7-retry",
        "unless",
        "{",
        "req.hdr(idempotency-key)",
        "-m",
        "found",
        "}",
    ]
    assert retry_rule in backend
    # A tool call (REST, the MCP facade) without a key gets one first, so that it is sent again too;
    # no other POST does (the hub keeps no key for them: sent again, they would run twice).
    mint = [
        "http-request",
        "set-header",
        "Idempotency-Key",
        "%[uuid()]",
        "if",
        "METH_POST",
        "tool_call",
        "!{",
        "req.hdr(idempotency-key)",
        "-m",
        "found",
        "}",
    ]
    assert mint in backend and backend.index(mint) < backend.index(retry_rule)
    paths = [words[2:] for words in backend if words[:2] == ["acl", "tool_call"]]
    assert paths == [
        ["path_beg", "/api/tools/"],
        ["path", "/mcp"],
        ["path_reg", "^/tenants/[^/]+/(servers/[^/]+/)?mcp$"],
    ]
    # The tests' HAProxy (conftest.running_haproxy) retries and mints exactly as this one.
    mirrored = [line.split() for line in conftest._RETRIES.splitlines()]
    assert (
        mirrored
        == [w for w in backend if w[0] in ("option", "retries", "retry-on", "acl", "http-request")][
            -len(mirrored) :
        ]
    )
    servers = {words[1]: words[2] for words in backend if words[0] == "server"}
    replicas = compose_replicas()
    port = load(next(iter(replicas.values()))).gateway.port
    assert sorted(servers.values()) == sorted(f"{name}:{port}" for name in replicas)
    default_server = next(words for words in backend if words[0] == "default-server")
    assert "check" in default_server and "init-addr" in default_server
    defaults = {words[1]: words[2] for words in sections["defaults"] if words[0] == "timeout"}
    assert {"connect", "client", "server", "tunnel"} <= set(defaults)
    # Longer than the SSE keep-alive, or a silent tool call's stream is cut.
    keepalive = load(next(iter(replicas.values()))).gateway.mcp_keepalive_interval
    for which in ("client", "server"):
        assert seconds(defaults[which]) > 2 * keepalive
    assert seconds(defaults["tunnel"]) >= 3600
    haproxy = compose()["services"]["haproxy"]
    assert haproxy["image"] == "haproxy:2.8"
    assert [["bind", f":{port}"]] == [w for w in frontend if w[0] == "bind"]
    assert f"{port}:{port}" in haproxy["ports"]
    assert "./config/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]


def seconds(value: str) -> float:
    """An HAProxy time (`5s`, `5m`, `1h`, `500ms`; bare: milliseconds) in seconds."""
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 0.001}[unit]


def test_haproxy_accepts_its_configuration() -> None:
    binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if binary is None:
        missing("HAProxy (Debian's haproxy)")
    result = subprocess.run(
        [binary, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- Kubernetes


def kube() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object of config/kubernetes/*.yaml by (kind, name)."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["apiVersion"] and document["metadata"]["name"], path
            key = (document["kind"], document["metadata"]["name"])
            assert key not in objects, key
            objects[key] = document
    return objects


def one(kind: str) -> dict[str, Any]:
    (found,) = [o for (k, _), o in kube().items() if k == kind]
    return found


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def hub_container() -> dict[str, Any]:
    (container,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def container_port(container: Mapping[str, Any], port: int | str) -> int:
    """The number of a container's port given by number or by name."""
    for entry in container["ports"]:
        if port in (entry["containerPort"], entry.get("name")):
            return entry["containerPort"]
    raise AssertionError(f"no port {port!r} in container {container['name']}")


def pod_environment(container: Mapping[str, Any]) -> dict[str, str]:
    """A container's environment as a pod sees it: values, the example Secret's keys, the downward
    API's fields (a made-up pod name and IP); a reference to anything else fails."""
    secret = one("Secret")
    fields = {"metadata.name": "mcp-hub-7d9c5b6f4-x2kqp", "status.podIP": "10.244.1.17"}
    environ = {}
    for entry in container["env"]:
        source = entry.get("valueFrom", {})
        if "value" in entry:
            environ[entry["name"]] = entry["value"]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"]
            if ref["key"] in secret["stringData"] or not ref.get("optional"):
                environ[entry["name"]] = secret["stringData"][ref["key"]]
        else:
            environ[entry["name"]] = fields[source["fieldRef"]["fieldPath"]]
    return environ


def test_kubernetes_has_each_object_once() -> None:
    kinds = sorted(kind for kind, _ in kube())
    assert kinds == sorted(
        ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service", "Service", "StatefulSet"]
    )
    assert (KUBERNETES / "README.md").exists()


def test_the_configmap_is_config_cluster_yaml_and_valid() -> None:
    configmap = one("ConfigMap")
    (key, text) = next(iter(configmap["data"].items()))
    assert text == CLUSTER_CONFIG.read_text(), (
        "config/kubernetes/configmap.yaml differs from config/cluster.yaml"
    )
    environ = pod_environment(hub_container())
    assert parse_config(text, source=key, environ=environ) == parse_config(
        CLUSTER_CONFIG.read_text(), source=key, environ=environ
    )
    # Mounted where MCP_HUB_CONFIG says.
    deployment = one("Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in deployment["volumes"] if v.get("configMap")]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    (mount,) = [m for m in hub_container()["volumeMounts"] if m["name"] == volume["name"]]
    assert str(Path(mount["mountPath"]) / key) == environ["MCP_HUB_CONFIG"]


def test_deployment_runs_three_replicas_whose_probes_and_service_reach_the_hub() -> None:
    deployment = one("Deployment")
    spec, pod = deployment["spec"], deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert spec["replicas"] == 3 and selects(spec["selector"]["matchLabels"], labels)
    container = hub_container()
    config = parse_config(CLUSTER_CONFIG.read_text(), environ=pod_environment(container))
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/health", probe
        assert container_port(container, check["port"]) == config.gateway.port, probe
    service = next(
        o for (k, _), o in kube().items() if k == "Service" and o["spec"].get("clusterIP") != "None"
    )
    assert service["spec"]["type"] == "ClusterIP" and selects(service["spec"]["selector"], labels)
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8080 and container_port(container, port["targetPort"]) == config.gateway.port
    assert_reachable_as(config, service["metadata"]["name"], port["port"])
    pdb = one("PodDisruptionBudget")["spec"]
    assert selects(pdb["selector"]["matchLabels"], labels)
    assert pdb.get("minAvailable") == 2 or pdb.get("maxUnavailable") == 1
    # The hub's selectors pick hub pods only, never Redis's.
    redis_labels = one("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert not selects(service["spec"]["selector"], redis_labels)
    assert not selects(pdb["selector"]["matchLabels"], redis_labels)
    assert command_of(container)[:3] == ["python", "-m", "hub"]
    _parser().parse_args(command_of(container)[3:])


def command_of(container: Mapping[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


def test_each_pod_is_a_replica_with_its_own_id_and_address_and_every_secret() -> None:
    container = hub_container()
    needed = required_variables(CLUSTER_CONFIG.read_text())
    by_name = {entry["name"]: entry for entry in container["env"]}
    assert needed <= set(by_name), needed - set(by_name)
    for name in SHELL:
        assert "secretKeyRef" in by_name[name]["valueFrom"], name
    fields = {name: by_name[name]["valueFrom"]["fieldRef"]["fieldPath"] for name in needed - set(SHELL)}
    assert fields == {"MCP_HUB_REPLICA_ID": "metadata.name", "MCP_HUB_ADVERTISE_HOST": "status.podIP"}
    config = parse_config(CLUSTER_CONFIG.read_text(), environ=pod_environment(container))
    assert config.cluster is not None and config.cluster.replica_id == "mcp-hub-7d9c5b6f4-x2kqp"
    host, port = advertised(config)
    assert host == "10.244.1.17" and container_port(container, port) == port
    assert_reachable_as(config, host, port)
    pod = one("Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > config.orchestrator.shutdown_grace + 10
    uid = re.search(r"useradd .*--uid (\d+) hub", (ROOT / "Dockerfile").read_text())
    assert uid and pod["securityContext"]["runAsUser"] == int(uid[1])
    assert pod["securityContext"]["runAsNonRoot"] is True
    # Redis is the headless Service's, with the password the Redis pod requires.
    redis = urlsplit(config.cluster.redis_url.reveal())
    assert redis.password == one("Secret")["stringData"]["REDIS_PASSWORD"]
    headless = kube()[("Service", redis.hostname)]["spec"]
    assert headless["clusterIP"] == "None" and [p["port"] for p in headless["ports"]] == [redis.port]


def test_redis_statefulset_is_redis_7_behind_its_headless_service_with_the_secret_password() -> None:
    statefulset = one("StatefulSet")
    spec = statefulset["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert selects(spec["selector"]["matchLabels"], labels)
    headless = kube()[("Service", spec["serviceName"])]["spec"]
    assert headless["clusterIP"] == "None" and selects(headless["selector"], labels)
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == "redis:7"
    assert "requirepass $REDIS_PASSWORD" in command_of(container)[-1]
    assert "--save ''" in command_of(container)[-1]
    environ = pod_environment(container)
    assert environ["REDIS_PASSWORD"] == one("Secret")["stringData"]["REDIS_PASSWORD"]
    assert environ["REDISCLI_AUTH"] == environ["REDIS_PASSWORD"]  # (its readiness probe)
    assert container_port(container, headless["ports"][0]["targetPort"]) == 6379


def test_the_secret_is_an_example_of_placeholders_that_the_hub_accepts() -> None:
    text = next(p for p in KUBERNETES.glob("*.yaml") if "kind: Secret" in p.read_text()).read_text()
    assert "example" in text.lower().split("apiversion")[0]  # said in its opening comment
    secret = one("Secret")
    assert "data" not in secret and secret["stringData"]
    for key, value in secret["stringData"].items():
        assert isinstance(value, str) and "CHANGE" in value.upper().replace("-", ""), key
    assert len(secret["stringData"]["MCP_HUB_CLUSTER_SECRET"]) >= 32
