"""The example app in a real browser: headless Chromium (Debian's package) driven by Selenium."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, server
from helpers.served import start_hub, stop_hub, write_config
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

KEY = "default-tenant-key-0123"


@pytest.mark.parametrize("keyed", [False, True], ids=["open hub", "keyed hub"])
def test_sql_console_runs_a_query_and_shows_the_rows(tmp_path: Path, browser, keyed: bool) -> None:
    demo = {"command": "python", "args": ["-m", "hub.demo_sqlite", "--db-path", str(tmp_path / "demo.db")]}
    tenant: dict[str, object] = {"servers": {"sqlite-demo": demo}, **({"api_keys": [KEY]} if keyed else {})}
    config = write_config(tmp_path, {"default": tenant}, gateway={"plugins_dir": str(ROOT / "plugins")})
    hub = start_hub(config, tmp_path)
    try:
        started = hub.post("/api/tenants/default/start", key=KEY if keyed else None)
        assert started.body["servers"] == {"sqlite-demo": "running"}
        # With keys, the browser opens the page with ?token=; its script and style sheet come
        # with the app's cookie, the WebSocket with the token in ws_url.
        browser.get(hub.url + "/apps/sql-console/" + (f"?token={KEY}" if keyed else ""))
        wait = WebDriverWait(browser, 30)
        wait.until(expected_conditions.element_to_be_clickable((By.ID, "run")))
        assert "sqlite-demo.query" in browser.find_element(By.ID, "tools").text
        editor = browser.find_element(By.ID, "sql")
        editor.clear()
        editor.send_keys("SELECT name, email FROM users ORDER BY id LIMIT 3")
        browser.find_element(By.ID, "run").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#result tr")) == 4)
        cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#result td")]
        assert cells[:2] == ["Alice Johnson", "alice.johnson@example.com"]
        assert browser.find_element(By.ID, "message").text == "3 row(s)"
        # A write is refused by the server and shown as an error, not a crash of the page.
        editor.clear()
        editor.send_keys("DELETE FROM users")
        browser.find_element(By.ID, "run").click()
        wait.until(
            lambda d: (
                "read-only" in d.find_element(By.ID, "message").text.lower()
                or "not allowed" in d.find_element(By.ID, "message").text.lower()
            )
        )
        browser.save_screenshot(str(tmp_path / "sql-console.png"))
        assert (tmp_path / "sql-console.png").stat().st_size > 1000
    finally:
        assert stop_hub(hub) == 0


def test_sql_console_shows_one_line_per_server_updated_in_place(tmp_path: Path, browser) -> None:
    """The Servers panel lists every server at load and keeps one line each through changes
    (issue 16, item 4: it was empty at load, and a stop and start added a line per frame)."""
    demo = {"command": "python", "args": ["-m", "hub.demo_sqlite", "--db-path", str(tmp_path / "demo.db")]}
    tenant = {"servers": {"sqlite-demo": demo, "other": server()}}
    config = write_config(tmp_path, {"default": tenant}, gateway={"plugins_dir": str(ROOT / "plugins")})
    hub = start_hub(config, tmp_path)
    try:
        assert hub.post("/api/tenants/default/start").body["servers"] == {
            "sqlite-demo": "running",
            "other": "running",
        }
        browser.get(hub.url + "/apps/sql-console/")
        wait = WebDriverWait(browser, 30)

        seen: list[list[str]] = []

        def shows(*expected: str) -> None:
            """Wait until the Servers panel shows exactly these lines (in any order)."""

            def lines(_: object) -> bool:
                seen.append([li.text for li in browser.find_elements(By.CSS_SELECTOR, "#servers li")])
                return sorted(seen[-1]) == sorted(expected)

            try:
                wait.until(lines)
            except TimeoutException:
                raise AssertionError(f"the panel shows {seen[-1]}, not {list(expected)}") from None

        shows("sqlite-demo: running", "other: running")
        assert hub.post("/api/servers/default/sqlite-demo/stop").body["state"] == "stopped"
        shows("sqlite-demo: stopped", "other: running")
        assert hub.post("/api/servers/default/sqlite-demo/start").body["state"] == "running"
        shows("sqlite-demo: running", "other: running")
    finally:
        assert stop_hub(hub) == 0
