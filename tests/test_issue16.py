"""Issue 16, where its other tests left a gap: the stdio facade of one tenant starts no server of
another even when the whole file resolves, and the Inspector CLI recipe of docs/clients.md works
as it is written there (the console script `mcp-hub`, the `/mcp` URL with a tenant's key)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import MARK, ROOT, SERVERS_DIR, TEST_SERVER, node_package, server
from helpers.facade import facade

SETUP = (ROOT / "tests" / "setup.sh").read_text()


def spy(marks: Path, name: str) -> dict[str, Any]:
    """A test server that first leaves a file named `name` in `marks` (bound read-write into its
    sandbox, so the file shows outside it), then serves as usual."""
    return {
        "command": "sh",
        "args": ["-c", f'touch {marks / name} && exec "$0" "$@"', sys.executable, TEST_SERVER],
        "sandbox": {"binds": [{"path": str(SERVERS_DIR), "mode": "ro"}, {"path": str(marks), "mode": "rw"}]},
    }


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_stdio_of_one_tenant_starts_no_server_of_another_even_when_every_variable_is_set(
    tmp_path: Path,
) -> None:
    """Issue 16, item 2: with auto_start, `stdio --tenant a` started every tenant's servers. Here
    nothing is unset (so loading the whole file would succeed): b's server must still not start,
    and a's logs and catalog cache go under <data_dir>/stdio, not where a service keeps its own."""
    marks = tmp_path / "marks"
    marks.mkdir()
    config = tmp_path / "hub.yaml"
    env = {"MCP_HUB_TEST_MARK": MARK}
    config.write_text(
        yaml.safe_dump(
            {
                "auth": {"admin_keys": ["an-admin-key-0123456789"]},
                "tenants": {
                    "a": {
                        "api_keys": ["a-key-0123456789abc"],
                        "env": env,
                        "servers": {"mine": spy(marks, "a")},
                    },
                    "b": {
                        "api_keys": ["b-key-0123456789abc"],
                        "env": env,
                        "servers": {"theirs": spy(marks, "b")},
                    },
                },
                "orchestrator": {"data_dir": str(tmp_path / "data"), "auto_start": True},
            }
        )
    )
    async with facade(config, "a", "legacy") as client:
        assert {t.name for t in (await client.list_tools()).tools} >= {"mine__echo"}
        assert (await client.call_tool("mine__echo", {"text": "x"})).structured_content == {"text": "x"}
    assert (marks / "a").exists(), "the spy cannot leave its mark: the test would prove nothing"
    assert not (marks / "b").exists(), "tenant b's server was started by tenant a's stdio facade"
    data = tmp_path / "data"
    assert (data / "stdio" / "logs" / "a" / "mine.log").exists()
    assert (data / "stdio" / "catalogs" / "a" / "mine.json").exists()
    assert not (data / "stdio" / "logs" / "b").exists()
    assert not (data / "logs").exists() and not (data / "catalogs").exists(), sorted(data.iterdir())


def recipe() -> list[str]:
    """The shell lines of docs/clients.md's Inspector CLI block (continuations joined, no comments)."""
    docs = (ROOT / "docs" / "clients.md").read_text()
    block = re.search(r"```bash\n(npm install @modelcontextprotocol/inspector-cli@.*?)```", docs, re.S)
    assert block, "docs/clients.md: no Inspector CLI block"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    return [" ".join(line.split()) for line in lines if line.strip() and not line.startswith("#")]


def run_line(line: str, cwd: Path, **env: str) -> dict[str, Any]:
    """Run one line of the recipe in bash, in `cwd`, and parse the Inspector's JSON answer."""
    result = subprocess.run(
        ["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (line, result.stderr[-2000:])
    return json.loads(result.stdout)


def test_the_inspector_recipe_of_the_docs_works_as_written(served, tmp_path: Path) -> None:
    """Issue 16, friction: the Inspector CLI cannot take the hub's --config through npx; the docs
    give a recipe instead. Each line of it runs here as written, only its placeholders filled in:
    the package pinned as tests/setup.sh installs it, the console script, the tenant's key."""
    install, cd, stdio, http = recipe()
    package = install.split()[-1]
    assert f'"{package}"' in SETUP, f"docs/clients.md installs {package}, tests/setup.sh another version"
    build = node_package("@modelcontextprotocol/inspector-cli", "build", "index.js").parent
    assert build.as_posix().endswith(cd.removeprefix("cd ")), (cd, build)
    script = shutil.which("mcp-hub", path=str(Path(sys.executable).parent))
    assert script, "the console script mcp-hub is not installed beside this Python"
    # The environment of a new shell: PATH (where node is) and HOME, no variable of this test's.
    shell = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}

    key = "inspector-tenant-key-0123"
    tenants = {"default": {"api_keys": [key], "servers": {"a": server()}}}
    hub = served(tenants, auth={"admin_keys": ["inspector-admin-key-0123"]})
    config = tmp_path / "hub.yaml"  # the file the service runs on, with its tenant's leak marker
    stdio = stdio.replace("/path/to/config/hub.yaml", shlex.quote(str(config)))
    stdio = stdio.replace("/path/to/.venv/bin/mcp-hub", shlex.quote(script))
    assert "/path/to" not in stdio, stdio
    assert "a__echo" in {t["name"] for t in run_line(stdio, build, **shell)["tools"]}
    http = http.replace("http://127.0.0.1:8080", hub.url)
    assert hub.url in http, (http, hub.url)
    assert "a__echo" in {t["name"] for t in run_line(http, build, KEY=key, **shell)["tools"]}
