"""`python -m hub serve` as a real listening process, and a client of its HTTP API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from conftest import MARK, server

ADMIN_KEY = "admin-key-0123456789"
ACME_KEY = "acme-key-abcdefghij"
BETA_KEY = "beta-key-klmnopqrst"
SECRETS = (ADMIN_KEY, ACME_KEY, BETA_KEY, "acme-env-secret", "beta-header-secret", "server-env-secret")


@dataclass
class Response:
    status: int
    headers: Any  # an http.client.HTTPMessage: names are case-insensitive
    body: Any
    text: str


@dataclass
class ServedHub:
    """A hub process serving HTTP on an ephemeral port."""

    proc: subprocess.Popen[str]
    url: str
    stderr_path: Path
    responses: list[str] = field(default_factory=list)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        key: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if method == "POST" and data is None:
            data = b""
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, head, text = answer.status, answer.headers, answer.read().decode()
        except urllib.error.HTTPError as error:
            status, head, text = error.code, error.headers, error.read().decode()
        self.responses.append(text)
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return Response(status, head, parsed, text)

    def get(self, path: str, key: str | None = None) -> Response:
        return self.request("GET", path, key=key)

    def post(self, path: str, body: Any = None, key: str | None = None) -> Response:
        return self.request("POST", path, body, key=key)

    def log(self) -> str:
        return self.stderr_path.read_text()


def write_config(tmp_path: Path, tenants: dict[str, Any], **sections: Any) -> Path:
    data: dict[str, Any] = {"tenants": {}}
    for name, tenant in tenants.items():
        tenant = dict(tenant)
        tenant["env"] = {"MCP_HUB_TEST_MARK": MARK, **tenant.get("env", {})}  # (a test may mark its own)
        data["tenants"][name] = tenant
    gateway = {"mcp_port": None, "websocket_port": None, **sections.pop("gateway", {})}
    orchestrator = {
        "startup_timeout": 20,
        "backoff_initial": 0.1,
        "backoff_max": 0.5,
        "shutdown_grace": 5,
        "data_dir": str(tmp_path / "data"),
        **sections.pop("orchestrator", {}),
    }
    data.update(gateway=gateway, orchestrator=orchestrator, **sections)
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_hub(
    config: Path, tmp_path: Path, *extra: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> ServedHub:
    stderr_path = tmp_path / "hub.stderr"
    port = [] if "--port" in extra or "MCP_HUB_PORT" in (env or {}) else ["--port", "0"]
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve", "--config", str(config), *port, *extra],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=cwd or tmp_path,
            env={**os.environ, **env} if env else None,
        )
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    assert match, f"no listening line: {line!r}; stderr: {stderr_path.read_text()}"
    return ServedHub(proc, match.group(1), stderr_path)


def stop_hub(served: ServedHub) -> int:
    if served.proc.poll() is None:
        served.proc.send_signal(signal.SIGTERM)
    code = served.proc.wait(30)
    served.proc.stdout.close()
    return code


def keyed_tenants() -> dict[str, Any]:
    return {
        "acme": {
            "api_keys": [ACME_KEY],
            "env": {"ACME_SECRET": "acme-env-secret"},
            "servers": {"a": server(env={"S": "server-env-secret"})},
        },
        "beta": {
            "api_keys": [BETA_KEY],
            "servers": {
                "b": {
                    "transport": "http",
                    "url": "http://127.0.0.1:9/mcp",
                    "headers": {"X-Key": "beta-header-secret"},
                },
                "b2": server(),
            },
        },
    }
