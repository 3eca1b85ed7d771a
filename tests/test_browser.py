"""The example app in a real browser: headless Chromium (Debian's package) driven by Selenium."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from test_service import start_hub, stop_hub, write_config


def test_sql_console_runs_a_query_and_shows_the_rows(tmp_path: Path, browser) -> None:
    demo = {"command": "python", "args": ["-m", "hub.demo_sqlite", "--db-path", str(tmp_path / "demo.db")]}
    config = write_config(
        tmp_path,
        {"default": {"servers": {"sqlite-demo": demo}}},
        gateway={"plugins_dir": str(ROOT / "plugins")},
    )
    hub = start_hub(config, tmp_path)
    try:
        assert hub.post("/api/tenants/default/start").body["servers"] == {"sqlite-demo": "running"}
        browser.get(hub.url + "/apps/sql-console/")
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
