"""Editing the configuration through the API: `/api/admin/config`, `/api/admin/tenants/{t}[/servers/{s}]`.

A real hub process serves a hand-written file with comments; edits must keep them, keep `${VAR}`
references, keep unchanged servers' processes, and refuse stale (412) and hand-edited (409) files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MARK, SERVERS_DIR, TEST_SERVER, server, wait_until
from helpers.served import ServedHub, start_hub, stop_hub

from hub import config_edit
from hub.config import parse_config
from hub.errors import ConfigReadOnly
from hub.runtime import Hub

ADMIN = "admin-key-0123456789"
TENANT_KEY = "tenant-key-0123456789"

CONFIG = f"""\
# The team's hub. Keep this comment: the editor must not lose it.
version: "1.0.0"
auth:
  admin_keys: ["${{CONFIG_EDIT_ADMIN_KEY}}"]  # from the environment, never written out
tenants:
  # Tenant t: the one the tests edit.
  t:
    description: Team T
    api_keys: ["{TENANT_KEY}"]
    env:
      MCP_HUB_TEST_MARK: {MARK}
      TEAM_TOKEN: literal-secret-value  # a literal secret: masked by the API
    servers:
      keep:  # never touched: its process must survive every edit
        command: python
        args: ["{TEST_SERVER}"]
        sandbox:
          binds:
            - path: {SERVERS_DIR}
              mode: ro
gateway:
  mcp_port: null
  websocket_port: null
orchestrator:
  auto_start: true
  startup_timeout: 20
  data_dir: data
audit:
  file: audit.log
"""
COMMENTS = [line.split("#", 1)[1] for line in CONFIG.splitlines() if "#" in line]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[ServedHub]:
    (tmp_path / "hub.yaml").write_text(CONFIG)
    served = start_hub(tmp_path / "hub.yaml", tmp_path, env={"CONFIG_EDIT_ADMIN_KEY": ADMIN})
    try:
        assert wait_until(lambda: _state(served, "keep") == "running", 30), served.log()
        yield served
    finally:
        stop_hub(served)


def _state(hub: ServedHub, name: str) -> str | None:
    answer = hub.get(f"/api/servers/t/{name}", key=ADMIN)
    return answer.body.get("state") if answer.status == 200 else None


def _pid(hub: ServedHub, name: str) -> int:
    return hub.get(f"/api/servers/t/{name}", key=ADMIN).body["pid"]


def _edit(hub: ServedHub, method: str, path: str, body: Any = None, etag: str | None = None) -> Any:
    headers = {"If-Match": etag} if etag else {}
    return hub.request(method, path, body, key=ADMIN, headers=headers)


def _etag(hub: ServedHub) -> str:
    answer = hub.get("/api/admin/config", key=ADMIN)
    assert answer.status == 200, answer.text
    assert answer.headers["ETag"] == answer.body["etag"]
    return answer.body["etag"]


def test_a_server_added_through_the_api_runs_and_the_file_keeps_its_comments(
    hub: ServedHub, tmp_path: Path
) -> None:
    path = tmp_path / "hub.yaml"
    keep = _pid(hub, "keep")
    view = hub.get("/api/admin/config", key=ADMIN).body
    assert view["changed_on_disk"] is False
    assert view["tenants"]["t"]["env"] == {"MCP_HUB_TEST_MARK": "********", "TEAM_TOKEN": "********"}
    assert "literal-secret-value" not in json.dumps(view)

    answer = _edit(hub, "PUT", "/api/admin/tenants/t/servers/added", server(), view["etag"])
    assert answer.status == 201, answer.text
    assert answer.body["created"] is True and answer.body["reload"]["servers"]["t"]["added"] == "added"
    assert answer.headers["ETag"] == answer.body["etag"] != view["etag"]
    assert wait_until(lambda: _state(hub, "added") == "running", 30), hub.log()
    call = hub.post("/api/tools/added.add?tenant=t", {"a": 2, "b": 3}, key=ADMIN)
    assert call.status == 200 and call.body["structured_content"] == {"sum": 5}, call.text
    assert _pid(hub, "keep") == keep  # an edit elsewhere leaves a server's process alone

    text = path.read_text()
    for comment in COMMENTS:
        assert comment in text, f"lost comment: {comment}"
    assert '["${CONFIG_EDIT_ADMIN_KEY}"]' in text and ADMIN not in text  # the reference, not its value
    assert "TEAM_TOKEN: literal-secret-value" in text
    assert text.startswith(CONFIG.split("gateway:")[0])  # everything before the tenant's end, unchanged
    data = yaml.safe_load(text)
    assert data["tenants"]["t"]["servers"]["added"]["args"] == [TEST_SERVER]

    audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    change = [line for line in audit if line.get("event") == "admin"]
    assert [(c["action"], c["tenant"], c["server"], c["outcome"]) for c in change] == [
        ("put_server", "t", "added", "created")
    ]
    assert change[0]["key"].startswith("admin") or change[0]["key"] != "-"

    # Changed, then removed: the file follows, the process goes.
    changed = server("--tools", "1")
    answer = _edit(hub, "PUT", "/api/admin/tenants/t/servers/added", changed, answer.body["etag"])
    assert answer.status == 200 and answer.body["created"] is False, answer.text
    assert wait_until(
        lambda: "added.t0" in {t["name"] for t in hub.get("/api/tools?tenant=t", key=ADMIN).body["tools"]}, 30
    )
    answer = _edit(hub, "DELETE", "/api/admin/tenants/t/servers/added", etag=answer.body["etag"])
    assert answer.status == 200, answer.text
    assert hub.get("/api/servers/t/added", key=ADMIN).status == 404
    assert "added" not in yaml.safe_load(path.read_text())["tenants"]["t"]["servers"]
    assert all(c in path.read_text() for c in COMMENTS)
    assert _pid(hub, "keep") == keep


def test_a_stale_etag_is_412_and_a_hand_edit_wins_with_409(hub: ServedHub, tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    etag = _etag(hub)
    first = _edit(hub, "PUT", "/api/admin/tenants/t/servers/one", server(), etag)
    assert first.status == 201, first.text
    before = path.read_text()
    second = _edit(hub, "PUT", "/api/admin/tenants/t/servers/two", server(), etag)  # the same, now stale
    assert second.status == 412 and second.body["error"]["code"] == "precondition_failed", second.text
    assert path.read_text() == before and hub.get("/api/servers/t/two", key=ADMIN).status == 404

    hand = before + "# edited by hand\n"
    path.write_text(hand)
    assert hub.get("/api/admin/config", key=ADMIN).body["changed_on_disk"] is True
    answer = _edit(hub, "PUT", "/api/admin/tenants/t/servers/two", server(), first.body["etag"])
    assert answer.status == 409 and answer.body["error"]["code"] == "config_changed_on_disk", answer.text
    assert "edited by hand" in answer.body["error"]["message"]
    assert path.read_text() == hand  # the hand edit wins: not written over

    assert hub.post("/api/admin/reload", key=ADMIN).status == 200
    answer = _edit(hub, "PUT", "/api/admin/tenants/t/servers/two", server(), _etag(hub))
    assert answer.status == 201, answer.text
    assert path.read_text().startswith(hand.split("gateway:")[0]) and "# edited by hand" in path.read_text()


def test_an_invalid_edit_is_400_with_the_checks_messages_and_writes_nothing(
    hub: ServedHub, tmp_path: Path
) -> None:
    path = tmp_path / "hub.yaml"
    before = path.read_text()
    answer = _edit(hub, "PUT", "/api/admin/tenants/t/servers/bad", {"transport": "http"})
    assert answer.status == 400, answer.text
    assert "tenants.t.servers.bad" in answer.body["error"]["message"]  # `hub check`'s path: message
    answer = _edit(hub, "PUT", "/api/admin/tenants/t/servers/bad", ["not", "a", "mapping"])
    assert answer.status == 400 and "JSON object" in answer.body["error"]["message"]
    answer = _edit(hub, "PUT", "/api/admin/tenants/t/servers/bad", {**server(), "env": {"NEW": "********"}})
    assert answer.status == 400 and "send its value" in answer.body["error"]["message"]
    assert path.read_text() == before
    assert hub.get("/api/servers/t/bad", key=ADMIN).status == 404

    # Tenant keys do not see the editor; an unknown tenant is 404.
    assert hub.get("/api/admin/config", key=TENANT_KEY).status == 404
    assert _edit(hub, "GET", "/api/admin/tenants/nope").status == 404
    assert hub.request("PUT", "/api/admin/tenants/t/servers/x", server(), key=TENANT_KEY).status == 404
    assert path.read_text() == before


def test_a_tenant_round_trips_through_the_api_with_its_secrets_masked(hub: ServedHub, tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    raw = _edit(hub, "GET", "/api/admin/tenants/t")
    assert raw.status == 200 and raw.body["api_keys"] == ["********"] and TENANT_KEY not in raw.text
    tenant = {k: v for k, v in raw.body.items() if k != "servers"}  # (without servers: they stay)
    tenant["description"] = "Team T, renamed"
    answer = _edit(hub, "PUT", "/api/admin/tenants/t", tenant, raw.headers["ETag"])
    assert answer.status == 200, answer.text
    data = yaml.safe_load(path.read_text())["tenants"]["t"]
    assert data["description"] == "Team T, renamed"
    assert data["api_keys"] == [TENANT_KEY] and data["env"]["TEAM_TOKEN"] == "literal-secret-value"
    assert set(data["servers"]) == {"keep"}
    assert hub.get("/api/tenants/t", key=TENANT_KEY).status == 200  # the key still works

    new = {"servers": {"s": server()}, "env": {"MCP_HUB_TEST_MARK": MARK}}
    answer = _edit(hub, "PUT", "/api/admin/tenants/u", new, answer.body["etag"])
    assert answer.status == 201 and answer.body["reload"]["tenants"]["u"] == "added", answer.text
    assert wait_until(lambda: hub.get("/api/servers/u/s", key=ADMIN).body.get("state") == "running", 30)
    answer = _edit(hub, "DELETE", "/api/admin/tenants/u", etag=answer.body["etag"])
    assert answer.status == 200 and answer.body["reload"]["tenants"]["u"] == "removed"
    assert hub.get("/api/tenants/u", key=ADMIN).status == 404
    assert "u" not in yaml.safe_load(path.read_text())["tenants"]


def test_a_hub_without_a_file_refuses_edits() -> None:
    hub = Hub(parse_config("tenants: {t: {}}"))
    with pytest.raises(ConfigReadOnly, match="not started from a configuration file"):
        config_edit.editor(hub).put_server("t", "s", server())


def test_a_json_configuration_is_written_back_as_json(tmp_path: Path) -> None:
    path = tmp_path / "hub.json"
    path.write_text(json.dumps({"tenants": {"t": {}}, "orchestrator": {"data_dir": str(tmp_path / "d")}}))
    os.chmod(path, 0o640)
    hub = Hub(parse_config(path.read_text(), source=str(path), base=tmp_path))
    try:
        hub.start()
        edit = config_edit.editor(hub).put_server("t", "s", {**server(), "enabled": False})
        assert (
            edit.created and json.loads(path.read_text())["tenants"]["t"]["servers"]["s"]["enabled"] is False
        )
        assert os.stat(path).st_mode & 0o777 == 0o640
        assert "s" in hub.config.tenants["t"].servers
    finally:
        hub.stop()


@pytest.mark.parametrize(
    "text",
    [
        *(p.read_text() for p in sorted((Path(__file__).parent.parent / "config").glob("*.yaml"))),
        "tenants:\n    t:\n        servers:\n            s:\n"
        "                command: x\n                args:\n"
        "                    - a\n                    - b\n",
        "tenants:\n  t:\n    api_keys:\n    - k\n    servers: {}\n",
    ],
)
def test_the_editor_writes_an_unchanged_file_back_byte_for_byte(text: str, tmp_path: Path) -> None:
    # Its indentation, sequence style, quoting, nulls and comments are the file's own.
    doc = config_edit._yaml(text).load(text)
    assert config_edit._dump(doc, text, tmp_path / "hub.yaml") == text


def test_the_panel_adds_a_server_that_then_runs(hub: ServedHub, tmp_path: Path, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(1280, 1600)
    browser.get(f"{hub.url}/admin?token={ADMIN}")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_elements(By.ID, "config-tenant"))
    browser.find_element(By.ID, "config-tenant").send_keys("t")
    browser.find_element(By.ID, "config-server").send_keys("keep")
    browser.find_element(By.ID, "config-load").click()
    wait.until(lambda d: "loaded server t/keep" in d.find_element(By.ID, "config-status").text)
    loaded = json.loads(browser.find_element(By.ID, "config-text").get_attribute("value"))
    assert loaded["args"] == [TEST_SERVER]

    name = browser.find_element(By.ID, "config-server")
    name.clear()
    name.send_keys("fromthepanel")
    box = browser.find_element(By.ID, "config-text")
    box.clear()
    box.send_keys(json.dumps(server("--tools", "1")))
    browser.find_element(By.ID, "config-save").click()
    wait.until(lambda d: "added server t/fromthepanel" in d.find_element(By.ID, "config-status").text)
    assert wait_until(lambda: _state(hub, "fromthepanel") == "running", 30)
    # The servers' table shows it live, and the file has it.
    wait.until(lambda d: "fromthepanel" in d.find_element(By.ID, "servers").text)
    assert "fromthepanel" in yaml.safe_load((tmp_path / "hub.yaml").read_text())["tenants"]["t"]["servers"]

    # Saved again with the ETag it was loaded with, after someone else's edit: refused, said so.
    other = _edit(hub, "PUT", "/api/admin/tenants/t/servers/other", server(), _etag(hub))
    assert other.status == 201
    browser.find_element(By.ID, "config-save").click()
    wait.until(lambda d: "load it again" in d.find_element(By.ID, "config-status").text)
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert all("412" in message for message in severe), severe  # (the refused save, and nothing else)
