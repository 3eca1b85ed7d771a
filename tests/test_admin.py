"""The admin panel: its page and files (admin key, no way out of web/static/admin), its event socket,
and the panel itself in headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from conftest import ROOT, SERVERS_DIR, binds, server
from helpers.apps import raw_get
from helpers.served import start_hub, stop_hub, write_config
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

ADMIN = "admin-key-0123456789"
ACME = "acme-key-0123456789"
ENV_SECRET = "acme-env-secret-value"
TYPED_SERVER = {
    "command": "python",
    "args": [str(SERVERS_DIR / "typedserver.py")],
    "sandbox": binds(SERVERS_DIR),
}


def keyed_config(tmp_path: Path, **more_acme_servers: Any) -> Path:
    """An admin key, tenant `acme` (a key, a secret in its env, server `s`) and tenant `beta` (server `s`)."""
    return write_config(
        tmp_path,
        {
            "acme": {
                "description": "<b>ACME</b> & co",
                "api_keys": [ACME],
                "env": {"SOME_TOKEN": ENV_SECRET},
                "quotas": {"max_servers": 4},
                "servers": {"s": server(), **more_acme_servers},
            },
            "beta": {"servers": {"s": server()}},
        },
        auth={"admin_keys": [ADMIN]},
    )


@pytest.fixture
def keyed_hub(tmp_path: Path):
    hub = start_hub(keyed_config(tmp_path), tmp_path)
    yield hub
    assert stop_hub(hub) == 0, hub.log()[-3000:]


def json_error(status: int, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    """The status and error code of a JSON error answer."""
    assert headers["content-type"].startswith("application/json"), headers
    return status, json.loads(body)["error"]["code"]


# --------------------------------------------------------------------------- the page and its files


def test_the_page_asks_for_a_key_and_checks_one(keyed_hub) -> None:
    # No key: the page, which holds no data and asks for one (not a JSON 401 in the browser).
    status, head, page = raw_get(keyed_hub, "/admin")
    assert status == 200 and head["content-type"] == "text/html; charset=utf-8"
    assert b'<form id="signin"' in page and b"acme" not in page
    for path, headers in (
        ("/admin", {"Authorization": f"Bearer {ADMIN}"}),
        (f"/admin?token={ADMIN}", {}),
        (f"/admin/?token={ADMIN}", {}),
    ):
        status, head, page = raw_get(keyed_hub, path, headers)
        assert status == 200, (path, page[:200])
        assert head["content-type"] == "text/html; charset=utf-8"
        assert b'<script src="/admin/admin.js"></script>' in page
        assert ADMIN.encode() not in page  # the key is never echoed into the page
        assert "frame-ancestors 'none'" in head["content-security-policy"]
        assert head["referrer-policy"] == "no-referrer" and head["cache-control"] == "no-store"
    # A key is checked (the page's sign-in form relies on it): a tenant key is not an admin's, a
    # wrong one is refused.
    tenant_key = {"Authorization": f"Bearer {ACME}"}
    assert json_error(*raw_get(keyed_hub, "/admin", tenant_key)) == (404, "not_found")
    assert json_error(*raw_get(keyed_hub, f"/admin?token={ACME}")) == (404, "not_found")
    status, head, body = raw_get(keyed_hub, "/admin", {"Authorization": "Bearer wrong"})
    assert json_error(status, head, body) == (401, "unauthorized")
    assert head["www-authenticate"] == 'Bearer realm="mcp-hub"'
    assert json_error(*raw_get(keyed_hub, "/admin?token=wrong")) == (401, "unauthorized")


def test_the_panels_files_and_no_other(keyed_hub) -> None:
    here = ROOT / "web" / "static" / "admin"
    for name, kind in (
        ("admin.js", "text/javascript; charset=utf-8"),
        ("admin.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ):
        status, head, body = raw_get(keyed_hub, f"/admin/{name}")  # shipped code: no key needed
        assert status == 200 and head["content-type"] == kind
        assert body == (here / name).read_bytes()
    outside = (ROOT / "web" / "admin.py").read_bytes()[:60]
    for trick in (
        "/admin/index.html",  # the page only at /admin, with a key
        "/admin/../admin.py",
        "/admin/..%2fadmin.py",
        "/admin/..%2f..%2fadmin.py",
        "/admin/%2e%2e/%2e%2e/admin.py",
        "/admin/%252e%252e%252fadmin.py",
        "/admin/..%5c..%5cadmin.py",
        "/admin/..\\..\\admin.py",
        "/admin//etc/passwd",
        "/admin/%2fetc%2fpasswd",
        "/admin/../../../../../../etc/passwd",
        "/admin/admin.js%00.html",
        "/admin/admin.js/../../admin.py",
        "/admin/./admin.js/..",
        "/admin/static/admin/admin.js",
    ):
        status, head, body = raw_get(keyed_hub, trick, {"Authorization": f"Bearer {ADMIN}"})
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found", (trick, status)
        assert outside not in body and b"root:" not in body and b"<html" not in body, trick


async def ping_the_admin_socket(hub: Any) -> None:
    """Open the admin event socket (no key), ping it, see the pong, close it."""
    ws = await connect(hub)
    ws.write_message(json.dumps({"type": "ping", "id": 1}))
    assert await frame(ws) == {"type": "pong", "id": 1, "data": {}}
    await close(ws)


def test_an_open_hub_opens_the_panel(tmp_path: Path) -> None:
    hub = start_hub(write_config(tmp_path, {"default": {}}), tmp_path)
    try:
        status, _, page = raw_get(hub, "/admin")
        assert status == 200 and b"/admin/admin.js" in page

        asyncio.run(ping_the_admin_socket(hub))
    finally:
        assert stop_hub(hub) == 0


def test_the_first_websocket_logs_no_tornado_warning(tmp_path: Path) -> None:
    """Issue 16: Tornado warned at the first WebSocket that websocket_ping_timeout (60) exceeded
    websocket_ping_interval (20). Tornado logs it once per process, so a fresh hub is used."""
    hub = start_hub(write_config(tmp_path, {"default": {}}), tmp_path)
    try:
        # The server starts its ping task (where Tornado checks the settings) as it accepts the
        # connection, before it can read the ping.
        asyncio.run(ping_the_admin_socket(hub))
    finally:
        assert stop_hub(hub) == 0
    log = hub.log()
    assert "GET /ws/admin 101" in log, log[-2000:]
    assert "websocket_ping" not in log and "WARNING tornado" not in log, log[-2000:]


# --------------------------------------------------------------------------- the event socket


async def connect(hub: Any, key: str | None = None, origin: str | None = None):
    url = hub.url.replace("http://", "ws://") + "/ws/admin" + (f"?token={key}" if key else "")
    request = tornado.httpclient.HTTPRequest(url, headers={"Origin": origin} if origin else {})
    return await tornado.websocket.websocket_connect(request)


async def close(ws: Any) -> None:
    """Close and wait for the server's close frame."""
    ws.close()
    with contextlib.suppress(TimeoutError):
        while await asyncio.wait_for(ws.read_message(), 10) is not None:
            pass


async def frame(ws: Any) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.read_message(), 30)
    assert message is not None, "the connection closed"
    return json.loads(message)


async def until(ws: Any, seen: list[dict[str, Any]], wanted: Any) -> dict[str, Any]:
    """The first frame in `seen`, else read from `ws` (appended to `seen`), for which `wanted(frame)`."""
    for message in seen:
        if wanted(message):
            return message
    while True:
        seen.append(message := await frame(ws))
        if wanted(message):
            return message


def status(tenant: str, state: str, not_pid: int | None = None) -> Any:
    """A `server_status` frame of `tenant` in `state` (and with another pid than `not_pid`)."""

    def wanted(message: dict[str, Any]) -> bool:
        data = message["data"]
        return (
            message["type"] == "server_status"
            and (data["tenant"], data["state"]) == (tenant, state)
            and (not_pid is None or data["pid"] != not_pid)
        )

    return wanted


def test_the_event_socket_is_for_admins_and_carries_every_tenant(keyed_hub) -> None:
    def post(path: str) -> Any:
        answer = keyed_hub.post(path, key=ADMIN)
        assert answer.status == 200, answer.text
        return answer.body

    async def refused(**kwargs: Any) -> int:
        with pytest.raises(tornado.httpclient.HTTPClientError) as caught:
            await connect(keyed_hub, **kwargs)
        return caught.value.code

    async def scenario() -> None:
        assert await refused() == 401
        assert await refused(key="wrong") == 401
        assert await refused(key=ACME) == 404  # a tenant key is not told it exists
        assert await refused(key=ADMIN, origin="http://evil.example") == 403
        ws = await connect(keyed_hub, key=ADMIN, origin=keyed_hub.url)
        try:
            seen: list[dict[str, Any]] = []
            pids = {}
            for tenant in ("acme", "beta"):  # every tenant's servers are heard
                await asyncio.to_thread(post, f"/api/tenants/{tenant}/start?wait=false")
                pids[tenant] = (await until(ws, seen, status(tenant, "running")))["data"]["pid"]
            assert all(pids.values())
            # A restart through REST is pushed: the new process, as REST tells it, and its catalog.
            seen.clear()
            answer = await asyncio.to_thread(post, "/api/servers/acme/s/restart")
            restarted = (await until(ws, seen, status("acme", "running", not_pid=pids["acme"])))["data"]
            assert restarted["pid"] == answer["pid"]
            assert set(restarted) == {
                "tenant", "server", "state", "transport", "pid", "started_at", "restarts", "last_error",
                "protocol_version", "tools", "lifecycle", "catalog", "replica", "stopped_reason", "retry_at",
                "retry_in_seconds", "held",
            }  # fmt: skip
            catalog = await until(  # not the stop's empty catalog: the new process's
                ws, seen, lambda m: m["type"] == "catalog_changed" and bool(m["data"]["tools"])
            )
            assert catalog["data"] == {
                "tenant": "acme",
                "server": "s",
                "tools": [f"s.{t}" for t in ("echo", "pid", "env", "sleep", "fail", "log", "add")],
            }
            ws.write_message("not json")  # a bad frame is answered, and the connection stays open
            assert (await until(ws, seen, lambda m: m["type"] == "error"))["data"]["code"] == "bad_request"
            ws.write_message(json.dumps({"type": "ping", "id": "p"}))
            assert (await until(ws, seen, lambda m: m["type"] == "pong"))["id"] == "p"
        finally:
            await close(ws)

    asyncio.run(scenario())


# --------------------------------------------------------------------------- the panel in a browser


def test_the_panel_in_a_browser(tmp_path: Path, browser) -> None:
    config = keyed_config(tmp_path, typed=TYPED_SERVER)
    hub = start_hub(config, tmp_path)
    try:
        for tenant in ("acme", "beta"):
            assert hub.post(f"/api/tenants/{tenant}/start", key=ADMIN).status == 200
        browser.set_window_size(1280, 1600)
        browser.get(f"{hub.url}/admin?token={ADMIN}")
        wait = WebDriverWait(browser, 15, ignored_exceptions=(StaleElementReferenceException,))

        def row(tenant: str, name: str) -> Any:
            return browser.find_element(
                By.CSS_SELECTOR, f'#servers tr[data-tenant="{tenant}"][data-server="{name}"]'
            )

        def shown(tenant: str, name: str) -> tuple[str, str]:
            """The state and pid the row of a server shows."""
            cells = row(tenant, name)
            state = cells.find_element(By.CSS_SELECTOR, ".state").text
            return state, cells.find_element(By.CSS_SELECTOR, ".pid").text

        def tenant_rows() -> dict[str, str]:
            """The text of each tenant's row (read in one go: the rows are redrawn on every change)."""
            return browser.execute_script(
                "return Object.fromEntries([...document.querySelectorAll('#tenants tbody tr')]"
                ".map((row) => [row.dataset.tenant, row.innerText]))"
            )

        # Tenants with their quotas, and every server with its pid, as REST has them.
        wait.until(
            lambda _: all(
                shown(*s)[0] == "running" for s in (("acme", "s"), ("acme", "typed"), ("beta", "s"))
            )
        )
        tenants = tenant_rows()
        assert list(tenants) == ["acme", "beta"]
        assert "<b>ACME</b> & co" in tenants["acme"] and not browser.find_elements(
            By.CSS_SELECTOR, "#tenants b"
        )
        assert "2 / 4" in tenants["acme"]  # two of its four servers' quota in use
        for tenant, name in (("acme", "s"), ("beta", "s")):
            assert shown(tenant, name)[1] == str(
                hub.get(f"/api/servers/{tenant}/{name}", key=ADMIN).body["pid"]
            )

        # Restart from the panel: the row follows the new process.
        old_pid = shown("acme", "s")[1]
        row("acme", "s").find_element(By.CSS_SELECTOR, "button.restart").click()
        wait.until(
            lambda _: shown("acme", "s")[0] == "running" and shown("acme", "s")[1] not in (old_pid, "—")
        )
        assert shown("acme", "s")[1] == str(hub.get("/api/servers/acme/s", key=ADMIN).body["pid"])

        # A change made elsewhere arrives live (the page does not poll the servers: /ws/admin tells it).
        assert hub.post("/api/servers/beta/s/stop", key=ADMIN).body["state"] == "stopped"
        wait.until(lambda _: shown("beta", "s") == ("stopped", "—"))
        wait.until(lambda _: "0 of 1 running" in tenant_rows()["beta"])

        # The log tail of a server.
        row("acme", "s").find_element(By.CSS_SELECTOR, "button.log").click()
        wait.until(lambda d: "serving" in d.find_element(By.ID, "log-lines").text)
        assert browser.find_element(By.ID, "log-title").text == "acme/s"

        # "Try it": the echo tool of acme's s.
        echo = browser.find_element(By.CSS_SELECTOR, '#tools details[data-tenant="acme"][data-tool="s.echo"]')
        echo.find_element(By.TAG_NAME, "summary").click()
        text = wait.until(lambda _: echo.find_element(By.NAME, "text"))  # built on the toggle event
        assert echo.find_element(By.CSS_SELECTOR, "label .required").text == "*"
        text.send_keys("hello from the panel")
        echo.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda _: "hello from the panel" in echo.find_element(By.CSS_SELECTOR, "pre.result").text)
        assert echo.find_element(By.CSS_SELECTOR, "pre.result").text.startswith("ok")

        # Every kind of field: string, integer, number, boolean, object as JSON, enum, optional array.
        typed = browser.find_element(
            By.CSS_SELECTOR, '#tools details[data-tenant="acme"][data-tool="typed.typed"]'
        )
        typed.find_element(By.TAG_NAME, "summary").click()
        # The form is built by the details' toggle event, which the browser fires after the click.
        wait.until(lambda _: typed.find_elements(By.CSS_SELECTOR, "form label .required"))
        required = [
            label.text.rstrip(" *")
            for label in typed.find_elements(By.TAG_NAME, "label")
            if label.find_elements(By.CLASS_NAME, "required")
        ]
        assert required == ["text", "count", "ratio", "flag", "options"]
        result = typed.find_element(By.CSS_SELECTOR, "pre.result")
        typed.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda _: result.text == "count is required")  # checked before any call
        field = {
            name: typed.find_element(By.NAME, name)
            for name in ("text", "count", "ratio", "flag", "options", "tags")
        }
        assert field["count"].get_attribute("step") == "1" and field["ratio"].get_attribute("step") == "any"
        assert field["flag"].get_attribute("type") == "checkbox"
        field["text"].send_keys("x")
        field["count"].send_keys("3")
        field["ratio"].send_keys("0.5")
        field["flag"].click()
        field["options"].send_keys('{"deep": [1, {"a": null}]}')
        Select(typed.find_element(By.NAME, "mode")).select_by_visible_text("slow")
        field["tags"].send_keys('["t1"]')
        typed.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda _: result.text.startswith("ok"))
        answer = json.loads(result.text.split("structured_content: ", 1)[1])
        assert answer == {
            "text": "x", "count": 3, "ratio": 0.5, "flag": True, "options": {"deep": [1, {"a": None}]},
            "mode": "slow", "tags": ["t1"],
        }  # fmt: skip

        # Nothing secret on the page; a picture of it for people.
        assert ADMIN not in browser.page_source and ACME not in browser.page_source
        assert ENV_SECRET not in browser.page_source
        assert browser.find_element(By.ID, "live").text == "live"
        assert not browser.find_element(By.ID, "notice").is_displayed()
        assert [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(tmp_path / "admin.png"))
        assert (tmp_path / "admin.png").stat().st_size > 30_000
    finally:
        assert stop_hub(hub) == 0, hub.log()[-3000:]


# ------------------------------------------------------------------ the panel's bugs (issue 16, item 5)


def contrast(foreground: str, background: str) -> float:
    """The WCAG contrast ratio of two computed CSS colours (`rgb(...)` or `rgba(...)`, opaque)."""

    def luminance(colour: str) -> float:
        r, g, b = (int(v) / 255 for v in re.findall(r"[\d.]+", colour)[:3])
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    light, dark = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.fixture
def open_hub(tmp_path: Path):
    """An open hub (tenant `acme` with servers `s` and `typed`), its servers started."""
    hub = start_hub(
        write_config(tmp_path, {"acme": {"servers": {"s": server(), "typed": TYPED_SERVER}}}), tmp_path
    )
    assert hub.post("/api/tenants/acme/start").status == 200
    yield hub
    assert stop_hub(hub) == 0, hub.log()[-3000:]


def panel(browser: Any, url: str) -> WebDriverWait:
    """Open the panel at `url` and wait until its servers are listed; a wait for what follows."""
    browser.set_window_size(1280, 1400)
    browser.get(url)
    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#servers tbody tr .state.running"))
    return wait


def open_tool(browser: Any, wait: WebDriverWait, tool: str) -> Any:
    """The `<details>` of a tool of acme, opened, once its form is built."""
    details = wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, f'#tools details[data-tenant="acme"][data-tool="{tool}"]')
    )
    details.find_element(By.TAG_NAME, "summary").click()
    wait.until(lambda _: details.find_elements(By.CSS_SELECTOR, "form button[type=submit]"))
    return details


def test_hovered_buttons_keep_their_text_readable(open_hub, browser) -> None:
    wait = panel(browser, f"{open_hub.url}/admin")
    row = browser.find_element(By.CSS_SELECTOR, '#servers tr[data-tenant="acme"][data-server="s"]')
    log_button = row.find_element(By.CSS_SELECTOR, "button.log")
    log_button.click()  # now pressed (filled with the accent colour)
    wait.until(lambda _: log_button.get_attribute("aria-pressed") == "true")
    call = open_tool(browser, wait, "s.echo").find_element(By.CSS_SELECTOR, "button.primary")
    for name, button in (
        ("restart", row.find_element(By.CSS_SELECTOR, "button.restart")),
        ("pressed log", log_button),
        ("primary call", call),
    ):
        ActionChains(browser).move_to_element(button).perform()
        wait.until(lambda _, b=button: browser.execute_script("return arguments[0].matches(':hover')", b))
        text, fill = browser.execute_script(
            "const s = getComputedStyle(arguments[0]); return [s.color, s.backgroundColor]", button
        )
        assert text != fill and contrast(text, fill) >= 4.5, f"{name}: text {text} on {fill} when hovered"


def test_the_log_button_lines_up_with_its_row(open_hub, browser) -> None:
    panel(browser, f"{open_hub.url}/admin")
    tops = browser.execute_script(
        "const row = document.querySelector('#servers tr[data-server=\"s\"]');"
        "return [...row.querySelectorAll('td.actions button')]"
        ".map((b) => [b.className, b.getBoundingClientRect().top, getComputedStyle(b).marginTop])"
    )
    assert [name for name, _, _ in tops] == ["start", "stop", "restart", "log"]
    assert {(round(top), margin) for _, top, margin in tops} == {(round(tops[0][1]), "0px")}, tops
    # And they sit in the middle of their row, not pushed down by a stray margin.
    above, below = browser.execute_script(
        "const tr = document.querySelector('#servers tr[data-server=\"s\"]');"
        "const row = tr.getBoundingClientRect(), b = tr.querySelector('button.log').getBoundingClientRect();"
        "return [b.top - row.top, row.bottom - b.bottom]"
    )
    assert abs(above - below) <= 2, (above, below)


def test_a_tool_shows_its_description_and_title_each_in_its_place(open_hub, browser) -> None:
    wait = panel(browser, f"{open_hub.url}/admin")
    # (the tools are listed once their server runs: it may still start when the first row does)
    summary = wait.until(
        lambda d: d.find_element(By.CSS_SELECTOR, '#tools details[data-tool="typed.picture"] summary')
    )
    assert (
        summary.find_element(By.CLASS_NAME, "description").text
        == "Answer a 16x16 PNG picture of a red square."
    )
    assert summary.find_element(By.CLASS_NAME, "title").text == "Red square"
    # A tool without a title shows its name, tenant and description only.
    echo = browser.find_element(By.CSS_SELECTOR, '#tools details[data-tool="typed.typed"] summary')
    assert echo.text.splitlines() == ["typed.typed", "acme", "Answer the arguments back."]
    assert summary.text.splitlines()[:3] == ["typed.picture", "Red square", "acme"]


def test_an_image_result_is_shown_as_an_image(open_hub, browser) -> None:
    wait = panel(browser, f"{open_hub.url}/admin")
    picture = open_tool(browser, wait, "typed.picture")
    picture.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    result = picture.find_element(By.CSS_SELECTOR, "pre.result")
    wait.until(lambda _: result.text.startswith("ok"))
    image = wait.until(lambda _: result.find_element(By.TAG_NAME, "img"))
    # The browser decoded it: a 16x16 picture, whose first pixel is the server's red.
    size, pixel = browser.execute_script(
        "const img = arguments[0]; const c = document.createElement('canvas');"
        "c.width = img.naturalWidth; c.height = img.naturalHeight;"
        "const g = c.getContext('2d'); g.drawImage(img, 0, 0);"
        "return [[img.naturalWidth, img.naturalHeight], [...g.getImageData(0, 0, 1, 1).data]]",
        image,
    )
    assert size == [16, 16] and pixel == [220, 30, 30, 255]
    assert "iVBOR" not in result.text  # no base64 text on the page


def test_the_panel_says_when_the_hub_is_unreachable_and_recovers(tmp_path: Path, browser) -> None:
    config = write_config(tmp_path, {"acme": {"servers": {"s": server()}}})
    hub = start_hub(config, tmp_path)
    try:
        assert hub.post("/api/tenants/acme/start").status == 200
        wait = panel(browser, f"{hub.url}/admin")
        wait.until(lambda d: d.find_element(By.ID, "live").text == "live")

        def states() -> list[str]:
            return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#servers tbody .state")]

        def banner() -> str:
            element = browser.find_element(By.ID, "unreachable")
            return element.text if element.is_displayed() else ""

        assert stop_hub(hub) == 0
        wait.until(lambda _: "unreachable" in banner())
        wait.until(lambda _: states() == ["unknown"])  # not "running": nobody knows any more
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "Failed to fetch" not in body and "running" not in body, body
        assert "unreachable" in browser.find_element(By.ID, "live").text

        # The hub comes back on the same address: the panel recovers by itself.
        port = hub.url.rsplit(":", 1)[1]
        hub = start_hub(config, tmp_path, "--port", port)
        assert hub.post("/api/tenants/acme/start").status == 200
        wait.until(lambda _: states() == ["running"] and banner() == "")
        wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
    finally:
        if hub.proc.poll() is None:
            assert stop_hub(hub) == 0


def test_signing_in_with_a_key_kept_in_the_session(keyed_hub, browser) -> None:
    browser.get(f"{keyed_hub.url}/admin")
    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))
    form = browser.find_element(By.ID, "signin")
    wait.until(lambda _: form.is_displayed())
    assert "unauthorized" not in browser.find_element(By.TAG_NAME, "body").text  # no raw JSON 401
    assert not browser.find_element(By.ID, "panel").is_displayed()
    said = browser.find_element(By.ID, "signin-error")

    def sign_in(key: str) -> None:
        field = form.find_element(By.ID, "signin-key")
        field.clear()
        field.send_keys(key)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    sign_in("wrong-key")
    wait.until(lambda _: said.is_displayed() and "Wrong key" in said.text)
    sign_in(ACME)
    wait.until(lambda _: said.is_displayed() and "admin key" in said.text and "tenant" in said.text)
    sign_in(ADMIN)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#servers tr[data-tenant="beta"]'))
    assert not form.is_displayed() and ADMIN not in browser.current_url
    stored = "return sessionStorage.getItem('mcp-hub-admin-key')"
    assert browser.execute_script(stored) == ADMIN
    # A reload of the tab stays signed in; the key is in no URL.
    browser.refresh()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#servers tr[data-tenant="beta"]'))
    wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
    # Sign out: the form again, the key gone from the tab, no hub data left on the page.
    browser.find_element(By.ID, "signout").click()
    wait.until(lambda d: d.find_element(By.ID, "signin").is_displayed())
    assert browser.execute_script(stored) is None
    assert not browser.find_elements(By.CSS_SELECTOR, "#servers tbody tr, #tenants tbody tr, #tools details")
    # An old /admin?token= link still signs in, and the key leaves the address bar.
    browser.get(f"{keyed_hub.url}/admin?token={ADMIN}")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#servers tr[data-tenant="beta"]'))
    assert browser.current_url == f"{keyed_hub.url}/admin" and browser.execute_script(stored) == ADMIN
