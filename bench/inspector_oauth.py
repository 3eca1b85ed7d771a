"""A manual check, not a test: the MCP Inspector connects to MCP Hub with OAuth, CLI and web UI.

Issue 22 asks that the MCP Inspector connect with OAuth. Inspector 2.x does the OAuth
authorization-code flow itself: it reads the hub's protected resource metadata, registers a client
(dynamic client registration) and sends a person to the hub's sign-in page. This script starts a
hub (`python -m hub serve`) with the built-in authorization server, one user and the test server,
and plays that person in headless Chromium (Selenium), twice:

- the CLI (`--cli`), run with a terminal on its stdin (it starts an interactive sign-in only when
  a person may be there) and `MCP_AUTO_OPEN_ENABLED=false`, prints "Please navigate to: <URL>" and
  listens on a loopback callback; the script opens the URL, signs in and consents, and prints the
  tools the CLI listed, then the answer of a call made by a second run with the token the first one
  stored (`--stored-auth-only`: no new sign-in);
- the web UI (`--web`, for the hub's `/mcp`): the script clicks the server's connect toggle, signs
  in on the hub's page it is sent to, comes back connected, opens Tools, lists them, calls
  `test__echo` and reads its answer on the page (bench/inspector_web.py).

Screenshots of each step go to `--shots`.

Set up once (Node 20 runs Inspector 2.12.0 although its package asks for 22.19; npm only warns):

    mkdir -p /tmp/inspector && cd /tmp/inspector && npm install @modelcontextprotocol/inspector@2.12.0

Then, from the repository root (chromium and chromedriver as tests/setup.sh installs them):

    python bench/inspector_oauth.py [--inspector /tmp/inspector] [--shots /tmp/inspector-shots]

It prints one line per step and exits 0 when both listed the tools and the call answered.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx2 as httpx
import yaml
from _common import ROOT, SANDBOX, free_port, served_hub
from inspector_web import check_web, inspector_web

from hub.passwords import hash_password

USER, PASSWORD = "alice", "inspector-check-password"
GREETING = "hello from the Inspector"
KEY = "inspector-check-key-0123456789"  # for this script's own start of the server, not the Inspector
LAUNCHER = Path("node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js")
NAVIGATE = re.compile(r"Please navigate to: (\S+)")


def write_config(folder: Path) -> Path:
    """A hub of one tenant (the test server), the built-in authorization server and one user."""
    server = {"command": sys.executable, "args": [str(ROOT / "tests/servers/testserver.py")]}
    config = {
        "auth": {
            "server": {
                "enabled": True,
                "users": {USER: {"password_hash": hash_password(PASSWORD), "tenant": "default"}},
            }
        },
        "tenants": {"default": {"api_keys": [KEY], "servers": {"test": server}}},
        "gateway": {"mcp_port": None, "websocket_port": None},
        "orchestrator": {"sandbox": SANDBOX, "data_dir": str(folder / "data")},
    }
    path = folder / "hub.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_browser(folder: Path) -> Any:
    """Headless Chromium driven by Selenium, as tests/conftest.py's `browser` fixture starts it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--window-size=1400,1000",  # the web UI shows its tools and history side by side
    ):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={folder / 'chromium'}")
    driver = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "chromedriver"), options=options
    )
    driver.set_page_load_timeout(30)
    return driver


class InspectorRun:
    """One run of the Inspector's CLI; a thread reads its stderr for the authorization URL.

    Its stdin is a terminal (a pty) because the CLI starts an interactive sign-in only when a
    person may be there (a TTY on stdin or stderr); with `MCP_AUTO_OPEN_ENABLED=false` it opens no
    browser itself and only prints the URL, which this script opens.
    """

    def __init__(self, inspector: Path, home: Path, callback: str, *args: str) -> None:
        env = {
            **os.environ,
            "HOME": str(home),  # its stored clients and tokens stay in the run's folder
            "MCP_INSPECTOR_SECRET_STORE": "file",  # so that a second run finds the token
            "MCP_AUTO_OPEN_ENABLED": "false",
            "MCP_OAUTH_CALLBACK_URL": callback,
            "NO_COLOR": "1",
        }
        primary, secondary = pty.openpty()
        command = ["node", str(inspector / LAUNCHER), "--cli", *args, "--format", "json"]
        self.proc = subprocess.Popen(
            command, stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
        os.close(secondary)
        self._pty = primary
        self.url: str | None = None
        self.asked = threading.Event()
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stderr(self) -> None:
        """On a thread of its own: collect stderr, note the authorization URL when it comes."""
        assert self.proc.stderr
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())
            found = NAVIGATE.search(line)
            if found:
                self.url = found.group(1)
                self.asked.set()
        self.asked.set()  # ended without asking

    def result(self, timeout: float = 60) -> tuple[int, Any]:
        """Its exit code and the MCP result it printed on stdout (or the text if not JSON)."""
        out, _ = self.proc.communicate(timeout=timeout)
        os.close(self._pty)
        try:
            printed = json.loads(out)
        except json.JSONDecodeError:
            return self.proc.returncode, out
        # --format json: {"result": <the MCP result>} (or {"error": ...} on stderr)
        return self.proc.returncode, printed.get("result", printed) if isinstance(printed, dict) else printed


def sign_in(driver: Any, url: str, callback: str, shots: Path) -> str:
    """As a person: open the authorization URL, sign in and allow; the page the browser lands on."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.NAME, "password"))
    print(f"login page: {driver.current_url.split('?')[0]}, title {driver.title!r}")
    print("  it says: " + " | ".join(driver.find_element(By.TAG_NAME, "body").text.splitlines()[:8]))
    driver.find_element(By.NAME, "username").clear()
    driver.find_element(By.NAME, "username").send_keys(USER)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.save_screenshot(str(shots / "1-hub-login-and-consent.png"))
    driver.find_element(By.CSS_SELECTOR, "button[value=allow]").click()
    try:
        WebDriverWait(driver, 30).until(lambda d: d.current_url.startswith(callback))
    finally:
        driver.save_screenshot(str(shots / "2-inspector-callback.png"))
        print(f"  the browser is at {driver.current_url.split('?')[0]}")
    text = driver.find_element(By.TAG_NAME, "body").text
    print(f"redirected to the Inspector's callback: {driver.current_url.split('?')[0]}: {text[:120]!r}")
    return text


def check_cli(inspector: Path, shots: Path, folder: Path, url: str) -> bool:
    """The CLI: True if it signed in, listed the tools and (a second run) called one."""
    callback = f"http://127.0.0.1:{free_port()}/oauth/callback"
    home = folder / "home"
    home.mkdir()
    listing = InspectorRun(inspector, home, callback, f"{url}/mcp", "--method", "tools/list")
    if not listing.asked.wait(60) or listing.url is None:
        code, out = listing.result()
        print(f"FAILED: the CLI asked for no sign-in (exit {code}): {out}", *listing.stderr, sep="\n  ")
        return False
    print(f"the CLI asks the person to open: {listing.url.split('?')[0]}?...")
    driver = start_browser(folder / "cli")
    try:
        sign_in(driver, listing.url, callback, shots)
    except Exception:
        listing.proc.kill()  # it would wait for its callback for minutes
        raise
    finally:
        driver.quit()
    code, out = listing.result()
    names = [tool["name"] for tool in out.get("tools", [])] if isinstance(out, dict) else []
    print(f"CLI tools/list: exit {code}, connected: {code == 0}, tools: {names}")
    if code != 0 or "test__echo" not in names:
        print(f"  stdout: {json.dumps(out)[:600]}", "stderr:", *listing.stderr, sep="\n  ")
        return False
    call = ["--method", "tools/call", "--tool-name", "test__echo", "--tool-arg", f"text={GREETING}"]
    calling = InspectorRun(inspector, home, callback, f"{url}/mcp", *call, "--stored-auth-only")
    code, out = calling.result()
    print(f"CLI tools/call test__echo with the stored token: exit {code}, answer: {json.dumps(out)[:300]}")
    if code != 0:
        print("  stderr:", *calling.stderr, sep="\n  ")
    return code == 0 and isinstance(out, dict) and out.get("structuredContent") == {"text": GREETING}


def check(inspector: Path, shots: Path, folder: Path) -> tuple[bool, bool]:
    """Both checks against one hub: whether the CLI, and whether the web UI, signed in and called."""
    with served_hub(write_config(folder)) as (_, url):
        started = httpx.post(
            f"{url}/api/tenants/default/start", headers={"Authorization": f"Bearer {KEY}"}, timeout=60
        )
        print(f"hub: {url}, MCP endpoint {url}/mcp, built-in authorization server, user {USER}")
        print(f"hub: started its servers: {started.json()['servers']}")
        cli = check_cli(inspector, shots, folder, url)
        (folder / "web").mkdir()
        with inspector_web(inspector / LAUNCHER, folder / "web", url) as web:
            print(f"web UI: {web}")
            driver = start_browser(folder / "web")
            try:
                return cli, check_web(driver, web, USER, PASSWORD, GREETING, shots)
            finally:
                driver.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--inspector", type=Path, default=Path("/tmp/inspector"), help="where it was npm-installed"
    )
    parser.add_argument(
        "--shots", type=Path, default=Path("/tmp/inspector-shots"), help="screenshots go here"
    )
    args = parser.parse_args()
    if not (args.inspector / LAUNCHER).exists():
        parser.error(
            f"no Inspector in {args.inspector}: npm install @modelcontextprotocol/inspector@2.12.0 there"
        )
    version = json.loads((args.inspector / LAUNCHER.parents[3] / "package.json").read_text())["version"]
    print(
        f"MCP Inspector {version}, node {subprocess.check_output(['node', '--version'], text=True).strip()}"
    )
    args.shots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inspector-oauth-") as folder:
        cli, web = check(args.inspector.resolve(), args.shots, Path(folder))
    print(
        f"CLI: {'OK' if cli else 'FAILED'}; web UI: {'OK' if web else 'FAILED'} (screenshots in {args.shots})"
    )
    return 0 if cli and web else 1


if __name__ == "__main__":
    sys.exit(main())
