"""The marketplace against a real hub process: a test MCP registry served over HTTP by the test
(tests/helpers/registry.py), a registry that is down, listing, search, installs of npm packages
and of a remote whose tools are then called, and what is refused; the admin panel's "Add server"
form in headless Chromium.

Installed npm servers run as an operator's would (`npx -y <package>@<version>`, sandboxed), with
no network (`sandbox.network: none`): npx finds the exact version installed in the tenant's home
(here a link to tests/.deps/node_modules, shown to the sandbox read-only) and downloads nothing,
which is also how docs/operations.md says to run registry installs offline.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import MARK, NODE_MODULES, TEST_SERVER, needs_bwrap, node_package, server, wait_until
from helpers.registry import NPM_VERSION, SECRET_TOKEN_VAR, ServedRegistry, serve_registry
from helpers.remote import free_port
from helpers.served import ServedHub, start_hub, stop_hub, write_config
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

ADMIN = "admin-key-registry-0123"
ACME = "acme-key-registry-0123"
TOKEN_VALUE = "tok-s3cret-everything-42"
HEADER_VALUE = "hdr-s3cret-remote-77"
DOWN = "http://127.0.0.1:9"  # (the discard port: nothing listens)


@pytest.fixture
def remote_url() -> Iterator[str]:
    """The test server over Streamable HTTP (an outside process the test owns): the remote entry."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "MCP_HUB_TEST_MARK": MARK}
    proc = subprocess.Popen(
        [sys.executable, TEST_SERVER, "--http", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        assert wait_until(listening, 15), "the remote test server did not listen"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def registry(remote_url: str) -> Iterator[ServedRegistry]:
    with serve_registry(remote_url) as served:
        yield served


@pytest.fixture
def hub(tmp_path: Path, registry: ServedRegistry) -> Iterator[ServedHub]:
    """A keyed hub whose registries are the test registry and one that is down; tenant `acme`
    (running) has the npm packages of tests/setup.sh in its home and no network."""
    needs_bwrap()
    node_package("@modelcontextprotocol/server-everything", "package.json")
    home = tmp_path / "data" / "homes" / "acme"
    home.mkdir(parents=True)
    (home / "node_modules").symlink_to(NODE_MODULES)
    acme = {
        "api_keys": [ACME],
        "servers": {"s": server()},
        "sandbox": {"network": "none", "binds": [{"path": str(NODE_MODULES), "mode": "ro"}]},
    }
    registries = [{"url": registry.url, "name": "test"}, {"url": DOWN, "name": "down"}]
    config = write_config(
        tmp_path,
        {"acme": acme},
        auth={"admin_keys": [ADMIN]},
        registries=registries,
        orchestrator={"startup_timeout": 60},
    )
    served = start_hub(config, tmp_path)
    try:
        assert served.post("/api/tenants/acme/start", key=ADMIN).body["servers"] == {"s": "running"}
        yield served
    finally:
        assert stop_hub(served) == 0, served.log()[-3000:]


def running(hub: ServedHub, server: str, timeout: float = 60) -> dict[str, Any]:
    """Server `server` of acme's status once it runs (polled: the reload starts it on its own)."""
    seen: list[Any] = []

    def up() -> bool:
        seen.append(hub.get(f"/api/servers/acme/{server}", key=ADMIN).body)
        return isinstance(seen[-1], dict) and seen[-1].get("state") == "running"

    assert wait_until(up, timeout, interval=0.2), seen[-1]
    return seen[-1]


def documented(hub: ServedHub, answer: Any, path: str, method: str = "get") -> None:
    """`answer` (a 200) matches the schema the hub's OpenAPI document gives it."""
    doc = hub.get("/openapi.json").body
    schema = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(answer.body, {**schema, "components": doc["components"]})


def install(hub: ServedHub, server: str, name: str, chosen: str, values: dict[str, str], **more: Any) -> Any:
    body = {"registry": "test", "name": name, "version": more.pop("version", NPM_VERSION), "install": chosen}
    return hub.post(
        f"/api/admin/tenants/acme/servers/{server}/install", {**body, "values": values}, key=ADMIN
    )


def test_the_registries_are_listed_merged_and_a_failing_one_is_named(hub: ServedHub, registry) -> None:
    listing = hub.get("/api/registry/servers", key=ADMIN)
    assert listing.status == 200, listing.text
    documented(hub, listing, "/api/registry/servers")
    names = [s["name"].rsplit("/", 1)[1] for s in listing.body["servers"]]
    assert names == [
        "server-memory",
        "server-filesystem",
        "server-everything",
        "server-time",
        "container-only",
        "remote-echo",
    ]
    assert any("cursor=" in r for r in registry.requests), registry.requests  # (both pages read)
    memory = listing.body["servers"][0]
    assert memory["version"] == NPM_VERSION and memory["versions"] == [NPM_VERSION, "2026.7.1"]
    assert memory["registry"] == "test" and memory["installs"][0]["kind"] == "npm"
    [error] = listing.body["errors"]
    assert error["registry"] == "down" and error["url"] == DOWN and error["message"]
    kinds = {s["name"].rsplit("/", 1)[1]: [i["kind"] for i in s["installs"]] for s in listing.body["servers"]}
    assert kinds["server-time"] == ["pypi"] and kinds["remote-echo"] == ["streamable-http"]
    oci = listing.body["servers"][4]["installs"][0]
    assert not oci["installable"] and "container engine" in oci["why_not"]
    # Search, and one registry; a tenant key does not see the marketplace.
    found = hub.get("/api/registry/servers?search=memory&registry=test", key=ADMIN).body
    assert [s["name"] for s in found["servers"]] == ["io.github.modelcontextprotocol/server-memory"]
    assert found["errors"] == []
    assert hub.get("/api/registry/servers", key=ACME).status == 404
    assert hub.get("/api/registry/servers?registry=elsewhere", key=ADMIN).status == 404
    # One entry at another version, by its URL-encoded name.
    old = hub.get(
        "/api/registry/servers/io.github.modelcontextprotocol%2Fserver-memory/versions/2026.7.1?registry=test",
        key=ADMIN,
    )
    assert old.status == 200 and old.body["installs"][0]["version"] == "2026.7.1", old.text
    documented(hub, old, "/api/registry/servers/{name}/versions/{version}")
    missing = hub.get("/api/registry/servers/io.example%2Fnone/versions/latest?registry=test", key=ADMIN)
    assert missing.status == 404


def test_npm_and_remote_installs_run_and_answer_and_secrets_stay_hidden(
    hub: ServedHub, tmp_path: Path
) -> None:
    everything = "io.github.modelcontextprotocol/server-everything"
    refused = install(hub, "every", everything, "package:0", {})
    assert refused.status == 400 and SECRET_TOKEN_VAR in refused.body["error"]["message"], refused.text
    oci = install(hub, "box", "io.github.example/container-only", "package:0", {}, version="1.0.0")
    assert oci.status == 400 and "container engine" in oci.body["error"]["message"], oci.text
    taken = install(hub, "s", everything, "package:0", {f"env:{SECRET_TOKEN_VAR}": TOKEN_VALUE})
    assert taken.status == 409 and taken.body["error"]["code"] == "server_exists", taken.text

    done = install(hub, "every", everything, "package:0", {f"env:{SECRET_TOKEN_VAR}": TOKEN_VALUE})
    assert done.status == 200, done.text
    documented(hub, done, "/api/admin/tenants/{tenant}/servers/{server}/install", "post")
    assert done.body["spec"]["command"] == "npx" and done.body["spec"]["pinning"] == "enforce"
    assert done.body["spec"]["env"][SECRET_TOKEN_VAR] == "********"
    assert running(hub, "every")["tools"] > 0
    echoed = hub.post("/api/tools/every.echo/call?tenant=acme", {"message": "from the registry"}, key=ADMIN)
    assert echoed.status == 200 and "from the registry" in echoed.text, echoed.text

    remote = install(
        hub,
        "echo",
        "com.example/remote-echo",
        "remote:0",
        {"header:X-Api-Key": HEADER_VALUE},
        version="1.2.0",
    )
    assert remote.status == 200 and remote.body["spec"]["transport"] == "http", remote.text
    running(hub, "echo")
    answer = hub.post("/api/tools/echo.echo/call?tenant=acme", {"text": "over http"}, key=ADMIN)
    assert answer.status == 200 and "over http" in answer.text, answer.text

    # The file holds what a user would have written by hand.
    servers = yaml.safe_load((tmp_path / "hub.yaml").read_text())["tenants"]["acme"]["servers"]
    assert servers["every"]["args"] == [
        "-y",
        f"@modelcontextprotocol/server-everything@{NPM_VERSION}",
        "stdio",
    ]
    assert servers["every"]["metadata"]["registry"]["name"] == everything
    assert servers["echo"]["headers"] == {"X-Api-Key": HEADER_VALUE}
    shown = hub.get("/api/admin/config", key=ADMIN)
    assert shown.status == 200, shown.text
    for secret in (TOKEN_VALUE, HEADER_VALUE):
        assert not any(secret in text for text in hub.responses), secret
        assert secret not in hub.log()
        for path in (tmp_path / "data").rglob("*"):
            if path.is_file() and not path.is_symlink() and "node_modules" not in path.parts:
                assert secret.encode() not in path.read_bytes(), path


def test_the_panel_installs_from_the_registry_and_the_tools_appear_live(hub: ServedHub, browser) -> None:
    browser.get(f"{hub.url}/admin?token={ADMIN}")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#servers tr[data-server='s']"))
    browser.find_element(By.ID, "registry-query").send_keys("server-")
    browser.find_element(By.CSS_SELECTOR, "#registry-search button").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#registry-results li")) == 4)
    assert "down" in browser.find_element(By.ID, "registry-errors").text
    # The everything server asks for a secret, required: a password field.
    browser.find_element(
        By.CSS_SELECTOR, "[aria-label='choose io.github.modelcontextprotocol/server-everything']"
    ).click()
    secret = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"[data-key='env:{SECRET_TOKEN_VAR}']"))
    assert secret.get_attribute("type") == "password" and secret.get_attribute("required") is not None
    # Memory: no value needed; a version to pick, a name to give.
    browser.find_element(
        By.CSS_SELECTOR, "[aria-label='choose io.github.modelcontextprotocol/server-memory']"
    ).click()
    wait.until(lambda d: d.find_element(By.ID, "registry-chosen").text == "Memory")
    assert [o.text for o in Select(browser.find_element(By.ID, "registry-version")).options] == [
        NPM_VERSION,
        "2026.7.1",
    ]
    wait.until(
        lambda d: Select(d.find_element(By.ID, "registry-tenant")).first_selected_option.text == "acme"
    )
    name = browser.find_element(By.ID, "registry-server")
    assert name.get_attribute("value") == "memory"
    name.clear()
    name.send_keys("mem")
    browser.find_element(By.CSS_SELECTOR, "#registry-install button[type=submit]").click()
    wait.until(lambda d: d.find_element(By.ID, "registry-result").text == "installed acme/mem")
    live = WebDriverWait(browser, 60)
    live.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#servers tr[data-server='mem'] .state.running"))
    live.until(lambda d: d.find_elements(By.CSS_SELECTOR, "details.tool[data-tool='mem.read_graph']"))
