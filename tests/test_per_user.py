"""Per-user credentials (`per_user: true`, `user_env`): one instance per user with their own values,
set through `PUT /api/me/credentials/{server}`, stored encrypted (`HUB_SECRET_KEY`), never shown.

Against a real served hub: two users get two processes with their own `GITHUB_TOKEN`
(tests/servers/tokenserver.py answers a SHA-256 of it, never the value, and which process it is); a user
without it gets a tool error naming it and where to set it; the values survive a restart (the
encrypted file, which holds no plaintext) and appear in no response, log, audit line or metric; a
changed key is a clear error and the hub stays up.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
import yaml
from conftest import SERVERS_DIR, binds, server, wait_until
from helpers.apps import close, connect, make_plugins, until
from helpers.facade import MODES, http_facade
from helpers.served import ADMIN_KEY, BETA_KEY, ServedHub, start_hub, stop_hub, write_config

ALICE_KEY = "alice-key-0123456789"
BOB_KEY = "bob-key-0123456789ab"
CAROL_KEY = "carol-key-0123456789"
ALICE_TOKEN = "ghp_alice_" + "a1" * 16
BOB_TOKEN = "ghp_bob_" + "b2" * 16
ALICE_NEW_TOKEN = "ghp_alice_new_" + "c3" * 16
SECRET_KEY = "k" * 20 + "-the-hub-secret-key-0123"
OTHER_KEY = "o" * 20 + "-another-secret-key-4567"
VALUES = (ALICE_TOKEN, BOB_TOKEN, ALICE_NEW_TOKEN)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _config(tmp_path: Path, idle_timeout: float = 120, **gateway: Any) -> Path:
    token_server = {
        "command": "python",
        "args": [str(SERVERS_DIR / "tokenserver.py")],
        "sandbox": binds(SERVERS_DIR),
        "per_user": True,
        "user_env": ["GITHUB_TOKEN"],
        "idle_timeout": idle_timeout,
    }
    keys = [
        {"key": ALICE_KEY, "subject": "alice"},
        {"key": BOB_KEY, "subject": "bob"},
        {"key": CAROL_KEY, "subject": "carol"},
    ]
    tenants = {
        "acme": {"api_keys": keys, "servers": {"gh": token_server}},
        "beta": {"api_keys": [BETA_KEY], "servers": {"b": server()}},
    }
    return write_config(
        tmp_path,
        tenants,
        auth={"admin_keys": [ADMIN_KEY]},
        audit={"file": str(tmp_path / "audit.jsonl"), "include_arguments": True},
        gateway={"public_url": "https://hub.example.org", **gateway},
    )


def _start(config: Path, tmp_path: Path, run: str, secret: str | None = SECRET_KEY) -> ServedHub:
    folder = tmp_path / run
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "HUB_SECRET_KEY"}
    if secret is not None:
        env["HUB_SECRET_KEY"] = secret
    return start_hub(config, folder, env=env)


def _whoami(hub: ServedHub, key: str) -> dict[str, Any]:
    answer = hub.post("/api/tools/gh.whoami/call", {}, key=key)
    assert answer.status == 200, answer.text
    return answer.body


def _discover(hub: ServedHub) -> None:
    """Run the shared instance once (the tenant's start), so the server's tools are known."""
    assert hub.post("/api/tenants/acme/start", key=ADMIN_KEY).status == 200
    listed = lambda: any(t["name"] == "gh.whoami" for t in hub.get("/api/tools", key=ALICE_KEY).body["tools"])  # noqa: E731
    assert wait_until(listed, 20), "the per_user server's tools were never listed"


def _set(hub: ServedHub, key: str, values: dict[str, Any]) -> Any:
    return hub.request("PUT", "/api/me/credentials/gh", values, key=key)


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_two_users_get_their_own_process_with_their_own_token(tmp_path: Path) -> None:
    config = _config(tmp_path)
    hub = _start(config, tmp_path, "first")
    try:
        _discover(hub)
        # Carol has set nothing: a tool error that names the variable and where to set it, no process.
        refused = _whoami(hub, CAROL_KEY)
        assert refused["is_error"] is True
        text = refused["content"][0]["text"]
        assert "GITHUB_TOKEN" in text and "PUT https://hub.example.org/api/me/credentials/gh" in text
        shown = hub.get("/api/servers/acme/gh", key=ADMIN_KEY).body
        assert shown["instances"] == [] and shown["per_user"] is True
        assert "the page https://hub.example.org/me/credentials/gh" in text
        page = hub.get("/me/credentials/gh")  # (public: the page holds no data and asks for a key)
        assert page.status == 200 and 'type="password"' in page.text and "value=" not in page.text
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        assert 'input.type = "password"' in hub.get("/me/me.js").text  # (values are never prefilled)

        # Names the server does not declare are refused; nothing is set by such a request.
        bad = _set(hub, ALICE_KEY, {"GITHUB_TOKEN": ALICE_TOKEN, "AWS_SECRET": "x" * 8})
        assert bad.status == 400 and "AWS_SECRET" in bad.body["error"]["message"]
        unset = hub.get("/api/me/credentials/gh", key=ALICE_KEY)
        assert unset.body == {"server": "gh", "variables": [{"name": "GITHUB_TOKEN", "set": False}]}

        assert _set(hub, ALICE_KEY, {"GITHUB_TOKEN": ALICE_TOKEN}).body["variables"][0]["set"] is True
        assert _set(hub, BOB_KEY, {"GITHUB_TOKEN": BOB_TOKEN}).status == 200
        alice = _whoami(hub, ALICE_KEY)["structured_content"]
        bob = _whoami(hub, BOB_KEY)["structured_content"]
        assert alice["token_sha256"] == _sha(ALICE_TOKEN) and bob["token_sha256"] == _sha(BOB_TOKEN)
        assert alice["process"] != bob["process"]
        assert (
            _whoami(hub, ALICE_KEY)["structured_content"]["process"] == alice["process"]
        )  # her instance, again
        instances = hub.get("/api/servers/acme/gh", key=ADMIN_KEY).body["instances"]
        assert sorted(i["session_kind"] for i in instances) == ["user", "user"]
        assert len({i["pid"] for i in instances}) == 2  # two processes
        assert _whoami(hub, CAROL_KEY)["is_error"] is True  # still nothing for carol

        # Another tenant's key neither sees nor sets them (404, as for an unknown server).
        assert hub.get("/api/me/credentials/gh", key=BETA_KEY).status == 404
        assert (
            hub.request(
                "PUT", "/api/me/credentials/gh?tenant=acme", {"GITHUB_TOKEN": "x"}, key=BETA_KEY
            ).status
            == 404
        )
        assert hub.get("/api/me/credentials/b", key=BETA_KEY).status == 404  # not a per_user server

        # A new value stops her instance: her next call runs a new process with it.
        assert _set(hub, ALICE_KEY, {"GITHUB_TOKEN": ALICE_NEW_TOKEN}).status == 200
        again = _whoami(hub, ALICE_KEY)["structured_content"]
        assert again["token_sha256"] == _sha(ALICE_NEW_TOKEN) and again["process"] != alice["process"]
        assert _whoami(hub, BOB_KEY)["structured_content"]["process"] == bob["process"]  # bob's untouched
        metrics = hub.get("/metrics").text
    finally:
        assert stop_hub(hub) == 0
    _nowhere(tmp_path, hub, metrics)

    # After a restart (same key) the encrypted file still gives each user their value.
    hub = _start(config, tmp_path, "second")
    try:
        _discover(hub)
        assert _whoami(hub, ALICE_KEY)["structured_content"]["token_sha256"] == _sha(ALICE_NEW_TOKEN)
        assert _whoami(hub, BOB_KEY)["structured_content"]["token_sha256"] == _sha(BOB_TOKEN)
        assert hub.get("/health").body["components"]["credentials"] == "ok"
    finally:
        assert stop_hub(hub) == 0
    _nowhere(tmp_path, hub, "")


def _nowhere(tmp_path: Path, hub: ServedHub, metrics: str) -> None:
    """No value in any response, the hub's log, the audit log, /metrics or any file of the hub."""
    texts = {"responses": "\n".join(hub.responses), "hub log": hub.log(), "metrics": metrics}
    texts["audit"] = (tmp_path / "audit.jsonl").read_text()
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode(errors="replace")
    assert any("credentials" in name for name in texts), "the encrypted file was never written"
    for name, text in texts.items():
        for value in VALUES:
            assert value not in text, f"a user's value is in {name}"


def test_a_changed_secret_key_is_a_clear_error_and_the_hub_stays_up(tmp_path: Path) -> None:
    config = _config(tmp_path)
    hub = _start(config, tmp_path, "first")
    try:
        _discover(hub)
        assert _set(hub, ALICE_KEY, {"GITHUB_TOKEN": ALICE_TOKEN}).status == 200
    finally:
        assert stop_hub(hub) == 0

    hub = _start(config, tmp_path, "second", secret=OTHER_KEY)
    try:
        _discover(hub)
        assert hub.get("/health").body["components"]["credentials"] == "unreadable"
        assert "HUB_SECRET_KEY" in hub.log()  # said at start, with the fix
        failed = _whoami(hub, ALICE_KEY)
        assert failed["is_error"] is True
        assert "credentials_unreadable" in failed["content"][0]["text"]
        assert "HUB_SECRET_KEY" in failed["content"][0]["text"]
        listed = hub.get("/api/me/credentials/gh", key=ALICE_KEY)
        assert listed.status == 500 and listed.body["error"]["code"] == "credentials_unreadable"
        # The way out the message names: forget them, set them again, under the new key.
        assert hub.request("DELETE", "/api/me/credentials/gh", key=ALICE_KEY).status == 200
        assert _set(hub, ALICE_KEY, {"GITHUB_TOKEN": ALICE_NEW_TOKEN}).status == 200
        assert _whoami(hub, ALICE_KEY)["structured_content"]["token_sha256"] == _sha(ALICE_NEW_TOKEN)
        assert hub.get("/health").status == 200
    finally:
        assert stop_hub(hub) == 0


@pytest.mark.parametrize("secret", [None, "too-short"])
def test_no_secret_key_is_refused_by_check_and_serve(tmp_path: Path, secret: str | None) -> None:
    config = _config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "HUB_SECRET_KEY"}
    if secret is not None:
        env["HUB_SECRET_KEY"] = secret
    for command in (["check"], ["serve", "--port", "0"]):
        done = subprocess.run(
            [sys.executable, "-m", "hub", *command, "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert done.returncode == 2, done.stderr
        assert "tenants.acme.servers.gh.user_env: HUB_SECRET_KEY" in done.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_the_mcp_facade_runs_each_users_own_instance(tmp_path: Path, mode: str) -> None:
    config = _config(tmp_path)
    hub = _start(config, tmp_path, "first")
    try:
        await anyio.to_thread.run_sync(_discover, hub)
        assert (
            await anyio.to_thread.run_sync(_set, hub, ALICE_KEY, {"GITHUB_TOKEN": ALICE_TOKEN})
        ).status == 200
        async with http_facade(hub.url + "/mcp", mode, key=ALICE_KEY) as client:
            mine = await client.call_tool("gh__whoami", {})
            assert not mine.is_error and mine.structured_content["token_sha256"] == _sha(ALICE_TOKEN)
        async with http_facade(hub.url + "/mcp", mode, key=CAROL_KEY) as client:
            refused = await client.call_tool("gh__whoami", {})
            assert refused.is_error
            text = refused.content[0].text  # type: ignore[union-attr]
            assert "GITHUB_TOKEN" in text and "/api/me/credentials/gh" in text
    finally:
        assert stop_hub(hub) == 0
    assert ALICE_TOKEN not in hub.log()


@pytest.mark.anyio
async def test_a_2025_client_that_takes_url_elicitations_is_sent_the_page(tmp_path: Path) -> None:
    hub = _start(_config(tmp_path), tmp_path, "first")
    asked: list[Any] = []

    async def elicitation(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept")

    try:
        await anyio.to_thread.run_sync(_discover, hub)
        async with http_facade(
            hub.url + "/mcp", "legacy", key=CAROL_KEY, elicitation_callback=elicitation
        ) as client:
            refused = await client.call_tool("gh__whoami", {})
        assert refused.is_error and "GITHUB_TOKEN" in refused.content[0].text  # type: ignore[union-attr]
        assert [(p.mode, p.url) for p in asked] == [("url", "https://hub.example.org/me/credentials/gh")]
        assert "GITHUB_TOKEN" in asked[0].message
        async with http_facade(hub.url + "/mcp", "legacy", key=CAROL_KEY) as client:  # (declares none)
            assert (await client.call_tool("gh__whoami", {})).is_error
        assert len(asked) == 1
    finally:
        assert stop_hub(hub) == 0


def test_a_reload_that_adds_a_per_user_server_without_a_key_is_told_by_health_and_calls(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    per_user = config.read_text()
    data = yaml.safe_load(per_user)
    del data["tenants"]["acme"]["servers"]["gh"]
    config.write_text(yaml.safe_dump(data))
    hub = _start(config, tmp_path, "first", secret=None)  # (nothing needs a key yet)
    try:
        assert "credentials" not in hub.get("/health").body["components"]
        config.write_text(per_user)
        assert hub.post("/api/admin/reload", key=ADMIN_KEY).status == 200
        assert hub.get("/health").body["components"]["credentials"] == "no_secret_key"
        _discover(hub)
        refused = _whoami(hub, ALICE_KEY)
        assert refused["is_error"] and "no_secret_key" in refused["content"][0]["text"]
        assert "HUB_SECRET_KEY is not set" in refused["content"][0]["text"]
        stored = _set(hub, ALICE_KEY, {"GITHUB_TOKEN": ALICE_TOKEN})
        assert stored.status == 500 and stored.body["error"]["code"] == "no_secret_key"
    finally:
        assert stop_hub(hub) == 0
    assert not (tmp_path / "data" / "credentials").exists()


def test_a_websocket_app_calls_on_its_users_own_instance(tmp_path: Path) -> None:
    hub = _start(_config(tmp_path, plugins_dir=str(make_plugins(tmp_path))), tmp_path, "first")

    async def call(key: str) -> dict[str, Any]:
        ws = await connect(hub, "hello", "acme", key=key)
        try:
            message = {"tool_name": "gh.whoami", "arguments": {}}
            ws.write_message(json.dumps({"type": "tool_call", "id": 1, "data": message}))
            return (await until(ws, "tool_result", 1))["data"]
        finally:
            await close(ws)

    try:
        _discover(hub)
        assert _set(hub, BOB_KEY, {"GITHUB_TOKEN": BOB_TOKEN}).status == 200
        assert asyncio.run(call(BOB_KEY))["structured_content"]["token_sha256"] == _sha(BOB_TOKEN)
        refused = asyncio.run(call(CAROL_KEY))
        assert refused["is_error"] and "GITHUB_TOKEN" in refused["content"][0]["text"]
    finally:
        assert stop_hub(hub) == 0


def test_a_record_copied_to_another_user_or_tenant_does_not_decrypt(tmp_path: Path) -> None:
    from hub.credentials import CredentialStore
    from hub.errors import CredentialsUnreadable

    store = CredentialStore(tmp_path / "credentials", SECRET_KEY)
    assert store.update("acme", "alice", "gh", {"GITHUB_TOKEN": ALICE_TOKEN}) == {"GITHUB_TOKEN"}
    assert store.update("acme", "bob", "gh", {"GITHUB_TOKEN": BOB_TOKEN}) == {"GITHUB_TOKEN"}
    path = tmp_path / "credentials" / "acme.json"
    assert path.stat().st_mode & 0o777 == 0o600 and (tmp_path / "credentials").stat().st_mode & 0o777 == 0o700
    assert ALICE_TOKEN not in path.read_text() and "GITHUB_TOKEN" not in path.read_text()
    content = json.loads(path.read_text())
    content["records"]["bob"]["gh"] = content["records"]["alice"]["gh"]  # alice's record, as bob's
    content["records"]["alice"]["other"] = content["records"]["alice"]["gh"]  # as another server's
    path.write_text(json.dumps(content))
    (tmp_path / "credentials" / "beta.json").write_text(json.dumps(content))  # as another tenant's
    for tenant, subject, name in (
        ("acme", "bob", "gh"),
        ("acme", "alice", "other"),
        ("beta", "alice", "gh"),
    ):
        with pytest.raises(CredentialsUnreadable, match="HUB_SECRET_KEY"):
            store.values(tenant, subject, name)
    assert store.values("acme", "alice", "gh") == {"GITHUB_TOKEN": ALICE_TOKEN}
    assert store.problem(["acme"]) is not None  # (what /health reports as unreadable)
    assert store.forget("acme", "bob", "gh") and store.forget("acme", "alice", "other")
    assert store.problem(["acme"]) is None
    assert CredentialStore(tmp_path / "credentials", OTHER_KEY).problem(["acme"]) is not None


def test_a_users_idle_instance_stops_and_the_next_call_starts_one_with_the_same_values(
    tmp_path: Path,
) -> None:
    hub = _start(_config(tmp_path, idle_timeout=1), tmp_path, "first")
    try:
        _discover(hub)
        assert _set(hub, ALICE_KEY, {"GITHUB_TOKEN": ALICE_TOKEN}).status == 200
        first = _whoami(hub, ALICE_KEY)["structured_content"]
        running = lambda: hub.get("/api/servers/acme/gh", key=ADMIN_KEY).body["instances"]  # noqa: E731
        assert wait_until(lambda: running() == [], 15), "her idle instance never stopped"
        again = _whoami(hub, ALICE_KEY)["structured_content"]
        assert again["token_sha256"] == _sha(ALICE_TOKEN) and again["process"] != first["process"]
    finally:
        assert stop_hub(hub) == 0


def test_the_page_sets_a_users_values_in_a_browser(tmp_path: Path, browser: Any) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    hub = _start(_config(tmp_path), tmp_path, "first")
    try:
        _discover(hub)
        browser.get(f"{hub.url}/me/credentials/gh")
        wait = WebDriverWait(browser, 15, ignored_exceptions=(StaleElementReferenceException,))
        key = wait.until(lambda b: b.find_element(By.ID, "signin-key"))
        wait.until(lambda b: key.is_displayed())
        key.send_keys(ALICE_KEY)
        browser.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
        field = wait.until(lambda b: b.find_element(By.ID, "var-GITHUB_TOKEN"))
        assert field.get_attribute("type") == "password" and field.get_attribute("value") == ""
        assert "(not set)" in browser.find_element(By.CSS_SELECTOR, "label[for=var-GITHUB_TOKEN]").text
        field.send_keys(ALICE_TOKEN)
        browser.find_element(By.CSS_SELECTOR, "#credentials button[type=submit]").click()
        wait.until(lambda b: "(set)" in b.find_element(By.CSS_SELECTOR, "label[for=var-GITHUB_TOKEN]").text)
        shown = browser.find_element(By.ID, "var-GITHUB_TOKEN")
        assert shown.get_attribute("value") == "" and ALICE_TOKEN not in browser.page_source
        assert _whoami(hub, ALICE_KEY)["structured_content"]["token_sha256"] == _sha(ALICE_TOKEN)
    finally:
        assert stop_hub(hub) == 0
