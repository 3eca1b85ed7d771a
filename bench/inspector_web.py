"""The MCP Inspector's web UI against MCP Hub with OAuth, as a person clicks it (for
bench/inspector_oauth.py, which runs it after the CLI's check)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _common import free_port, wait_port


@contextlib.contextmanager
def inspector_web(launcher: Path, home: Path, url: str) -> Iterator[str]:
    """The Inspector's web UI (`--web`) for the hub's `/mcp`, on free ports: its address.

    Without its own auth (`DANGEROUSLY_OMIT_AUTH`, loopback only) and opening no browser; its
    tokens are kept in its memory (`MCP_INSPECTOR_SECRET_STORE=memory`).
    """
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(home),
        "CLIENT_PORT": str(port),
        "MCP_SANDBOX_PORT": str(free_port()),
        "MCP_APP_ORIGIN_PORT": str(free_port()),
        "DANGEROUSLY_OMIT_AUTH": "true",
        "MCP_AUTO_OPEN_ENABLED": "false",
        "MCP_INSPECTOR_SECRET_STORE": "memory",
    }
    command = ["node", str(launcher), "--web", "--transport", "http", "--server-url", f"{url}/mcp"]
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own process group: the launcher and its server
        proc.wait(30)


def check_web(driver: Any, web: str, user: str, password: str, text: str, shots: Path) -> bool:
    """Connect, sign in on the hub's page, list the tools and call `test__echo` with `text`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 30)

    def body() -> str:
        return str(driver.find_element(By.TAG_NAME, "body").text)

    def until(what: str, test: Callable[[Any], Any]) -> bool:
        try:
            wait.until(test)
            return True
        except Exception:  # a timeout: say where the page is
            driver.save_screenshot(str(shots / "web-failed.png"))
            print(f"FAILED: the web UI never {what}; at {driver.current_url.split('?')[0]}: {body()[:300]!r}")
            return False

    driver.get(web)
    if not until("showed the server", lambda d: d.find_elements(By.CSS_SELECTOR, ".mantine-Switch-track")):
        return False
    driver.save_screenshot(str(shots / "web-1-servers.png"))
    driver.find_element(By.CSS_SELECTOR, ".mantine-Switch-track").click()  # the server's connect toggle
    if not until("sent the browser to the hub's sign-in", lambda d: d.find_elements(By.NAME, "password")):
        return False
    print(f"web UI: connect sent the browser to {driver.current_url.split('?')[0]}")
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.save_screenshot(str(shots / "web-2-hub-login.png"))
    driver.find_element(By.CSS_SELECTOR, "button[value=allow]").click()
    if not until("came back connected", lambda d: d.current_url.startswith(web) and "Connected" in body()):
        return False
    print("web UI: back from the sign-in, the server shows 'Connected'")
    driver.save_screenshot(str(shots / "web-3-connected.png"))
    driver.find_element(By.XPATH, "//span[normalize-space(.)='Tools']").click()
    if not until("listed test__echo", lambda d: d.find_elements(By.XPATH, "//button[.='test__echo']")):
        return False
    names = [
        b.get_attribute("textContent")
        for b in driver.find_elements(By.XPATH, "//button[starts-with(., 'test__')]")
    ]
    print(f"web UI: tools listed: {names}")
    driver.find_element(By.XPATH, "//button[.='test__echo']").click()
    if not until("showed the tool's form", lambda d: d.find_elements(By.XPATH, "//button[.='Execute Tool']")):
        return False
    field = driver.find_element(By.XPATH, "//button[.='Execute Tool']/preceding::input[1]")
    field.send_keys(text)
    driver.find_element(By.XPATH, "//button[.='Execute Tool']").click()
    answered = until("showed the call's answer", lambda d: text in body())  # the field's value is no text
    driver.save_screenshot(str(shots / "web-4-tool-called.png"))
    if answered:
        print(f"web UI: test__echo answered, the page shows {text!r} in the result")
    return answered
