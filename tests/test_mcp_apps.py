"""The browser host for MCP Apps (`ui://` views): listing, the host page, and real views in Chromium.

Servers: `tests/servers/uiserver.py` (a hand-written view that exercises every proxy of the host)
and `@modelcontextprotocol/server-basic-vanillajs` (the extension's own example, built on its `App`
class; it speaks stdio only with `--stdio`), both as real subprocesses behind a real listening hub.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import NODE_MODULES, ROOT, SERVERS_DIR, binds, node_package, server, wait_until
from helpers.served import ACME_KEY, ADMIN_KEY, BETA_KEY
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

UI_SERVER = str(SERVERS_DIR / "uiserver.py")


def vanilla() -> dict[str, Any]:
    """The MCP App server `@modelcontextprotocol/server-basic-vanillajs` (it needs `--stdio`)."""
    entry = str(node_package("@modelcontextprotocol/server-basic-vanillajs", "dist", "index.js"))
    return {"command": "node", "args": [entry, "--stdio"], "sandbox": binds(NODE_MODULES)}


ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def greeter() -> dict[str, Any]:
    return {"command": "python", "args": [UI_SERVER], "sandbox": binds(SERVERS_DIR)}


def keyed() -> dict[str, Any]:
    return {
        "acme": {"api_keys": [ACME_KEY], "servers": {"greeter": greeter()}},
        "beta": {"api_keys": [BETA_KEY], "servers": {"plain": server()}},
    }


def running(hub: Any, tenant: str, name: str) -> None:
    path = f"/api/servers/{tenant}/{name}"
    assert wait_until(lambda: hub.get(path, key=ADMIN_KEY).body.get("state") == "running", 30, 0.1)


def test_mcp_apps_are_listed_per_tenant_and_hosted_with_a_sandbox_policy(serve) -> None:
    hub = serve(keyed(), auth={"admin_keys": [ADMIN_KEY]}, orchestrator={"auto_start": True})
    running(hub, "acme", "greeter")
    running(hub, "beta", "plain")

    apps = hub.get("/api/apps", key=ADMIN_KEY).body["apps"]
    mcp_apps = [a for a in apps if a["kind"] == "mcp_app"]
    # greet is the one entry point: app_only is hidden from the model, model_only has no view.
    assert mcp_apps == [
        {
            "id": "ui:acme:greeter.greet",
            "kind": "mcp_app",
            "name": "greet",
            "description": "Greet someone (shown by the greeter view).",
            "tenants": ["acme"],
            "server": "greeter",
            "tool": "greet",
            "resource_uri": "ui://greeter/view.html",
            "url": "/ui/acme/greeter/greet",
        }
    ]
    assert [a["id"] for a in hub.get("/api/apps", key=ACME_KEY).body["apps"] if a["kind"] == "mcp_app"] == [
        "ui:acme:greeter.greet"
    ]
    assert [a for a in hub.get("/api/apps", key=BETA_KEY).body["apps"] if a["kind"] == "mcp_app"] == []
    assert hub.get("/api/apps/ui:acme:greeter.greet", key=ACME_KEY).body["url"] == "/ui/acme/greeter/greet"
    assert hub.get("/api/apps/ui:acme:greeter.greet", key=BETA_KEY).status == 404

    # The host page: only for the tenant's own keys; the key may come as ?token=.
    assert hub.get("/ui/acme/greeter/greet").status == 401
    assert hub.get(f"/ui/acme/greeter/greet?token={BETA_KEY}").status == 404
    assert hub.get("/ui/acme/greeter/shout", key=ACME_KEY).status == 404  # a tool without a view
    assert hub.get("/ui/acme/greeter/nope", key=ACME_KEY).body["error"]["code"] == "not_found"
    page = hub.get(f"/ui/acme/greeter/greet?token={ACME_KEY}")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Referrer-Policy"] == "no-referrer"
    policy = page.headers["Content-Security-Policy"]
    assert "connect-src 'self' https://api.example.com" in policy  # the view's declared origin
    assert "script-src *" not in policy and "x;" not in policy  # the injection attempt was dropped
    assert "frame-ancestors 'self'" in policy
    # The view's HTML travels as JSON: its own </script> cannot end the host's script early.
    assert page.text.count("</script>") == 2 and "window.MCP_HUB_UI" in page.text
    config = json.loads(re.search(r"window.MCP_HUB_UI = (.*?);</script>", page.text).group(1))
    assert config["tool"]["name"] == "greet" and config["server"] == "greeter"
    assert config["app_tools"] == ["app_only", "greet", "shout"]  # model_only is not the view's to call
    assert config["html"].startswith('<meta http-equiv="Content-Security-Policy"')
    assert "connect-src https://api.example.com" in config["csp"] and ACME_KEY not in page.text

    # The host's own files are public; nothing else is served under /ui-host/.
    assert hub.get("/ui-host/host.js").text.startswith("// The MCP Hub host")
    for path in ("/ui-host/host.html", "/ui-host/..%2fmcp_apps.py", "/ui-host/%2e%2e"):
        assert hub.get(path).status == 404, path


def test_a_view_runs_in_the_browser_through_every_proxy_of_the_host(serve, browser, tmp_path: Path) -> None:
    hub = serve(keyed(), auth={"admin_keys": [ADMIN_KEY]}, orchestrator={"auto_start": True})
    running(hub, "acme", "greeter")
    browser.get(f"{hub.url}/ui/acme/greeter/greet?token={ACME_KEY}")
    wait = WebDriverWait(browser, 30)
    frame = browser.find_element(By.ID, "view")
    assert frame.get_attribute("sandbox") == "allow-scripts allow-forms"  # never allow-same-origin
    wait.until(lambda d: "view says hello" in d.find_element(By.ID, "log").text)
    browser.switch_to.frame(frame)
    text = lambda element_id: browser.find_element(By.ID, element_id).text  # noqa: E731
    wait.until(lambda _: text("host") == "MCP Hub / greet")
    assert text("origin") == "null"  # an opaque origin: not the hub's
    assert text("result") == "-"  # greet needs a name: it does not run by itself

    browser.switch_to.default_content()
    arguments = browser.find_element(By.ID, "arguments")
    arguments.clear()
    arguments.send_keys('{"name": "Ada"}')
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_element(By.ID, "status").text == "greet done.")

    browser.switch_to.frame(frame)
    wait.until(lambda _: text("result") == "Hello, Ada!")
    assert json.loads(text("input")) == {"name": "Ada"}
    for button, element_id, expected in (
        ("read", "note", "a note from the server"),  # resources/read, proxied
        ("call", "called", "HI"),  # tools/call of the same server, proxied
        ("fetch", "fetch-result", "blocked"),  # the view cannot reach the hub itself
    ):
        browser.find_element(By.ID, button).click()
        wait.until(lambda _, e=element_id, x=expected: text(e) == x)
    browser.find_element(By.ID, "denied").click()
    wait.until(lambda _: text("denied-result").startswith("refused: the view may not call tool"))
    browser.switch_to.default_content()
    log = browser.find_element(By.ID, "log").text
    assert "resources/read test://note" in log and "tools/call shout" in log
    browser.save_screenshot(str(tmp_path / "greeter.png"))


def test_the_basic_vanillajs_app_renders_its_tool_result(serve, browser, tmp_path: Path) -> None:
    hub = serve({"default": {"servers": {"vanilla": vanilla()}}})
    assert hub.post("/api/tenants/default/start").body["servers"] == {"vanilla": "running"}
    app = next(a for a in hub.get("/api/apps").body["apps"] if a["kind"] == "mcp_app")
    assert (app["url"], app["resource_uri"]) == ("/ui/default/vanilla/get-time", "ui://get-time/mcp-app.html")

    browser.get(hub.url + app["url"])
    wait = WebDriverWait(browser, 30)
    browser.switch_to.frame(browser.find_element(By.ID, "view"))
    shown = lambda: browser.find_element(By.ID, "server-time").text  # noqa: E731
    # get-time needs no arguments: the host runs it and the view renders the result it is sent.
    wait.until(lambda _: ISO_TIME.match(shown()))
    first = shown()
    browser.find_element(By.ID, "get-time-btn").click()  # the view calls the tool itself
    wait.until(lambda _: ISO_TIME.match(shown()) and shown() != first)
    browser.switch_to.default_content()
    assert "tools/call get-time" in browser.find_element(By.ID, "log").text
    assert browser.find_element(By.ID, "status").text == "get-time done."
    browser.save_screenshot(str(tmp_path / "basic-vanillajs.png"))
    assert (tmp_path / "basic-vanillajs.png").stat().st_size > 1000


@pytest.mark.parametrize("path", ["/ui/default/vanilla/get-time", "/api/apps/ui:default:vanilla.get-time"])
def test_no_view_while_its_server_is_stopped(serve, path: str) -> None:
    hub = serve({"default": {"servers": {"vanilla": vanilla()}}})
    assert hub.get(path).status == 404


def test_every_mention_of_the_vanillajs_server_says_it_needs_stdio() -> None:
    """Issue 16: without `--stdio` it serves HTTP on port 3001, and its stdio start times out."""
    files = [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(p for p in (ROOT / "config").rglob("*") if p.is_file()),
    ]
    mentions = 0
    for path in files:
        for paragraph in re.split(r"\n\s*\n", path.read_text()):
            if "server-basic-vanillajs" in paragraph:
                mentions += 1
                assert "--stdio" in paragraph, f"{path.name}: {paragraph[:300]}"
    assert mentions
