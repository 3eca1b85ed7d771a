"""The README's test command: one command that installs what the tests drive, the same in CI, and
a test whose external tool is missing fails with one line that names the install step."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, SETUP

# The failure's own line; pytest's short summary repeats it after "FAILED <test> - Failed: ",
# cut to the terminal's width or not (CI's is wide), so summary lines are not counted.
MISSING_LINE = re.compile(
    r"^(?!FAILED |ERROR )(\S.*) is missing: `bash tests/setup.sh` installs it \(see README, Tests\)$",
    re.M,
)


def readme_test_command() -> str:
    """The command of the README's "Run the tests" block."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"Run the tests:\s*```bash\n(.*?)\n```", readme, re.S)
    assert block, "README: no 'Run the tests' block"
    return block.group(1).strip()


def test_ci_and_make_run_exactly_the_readme_test_command() -> None:
    command = readme_test_command()
    assert command == f"{SETUP} && pytest"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == command, "the last line of .ci/run must be the README's test command"
    assert f"\n\t{command}\n" in (ROOT / "Makefile").read_text()
    assert os.access(ROOT / "tests" / "setup.sh", os.R_OK)
    setup = (ROOT / "tests" / "setup.sh").read_text()
    # Every npm package a test names is one that tests/setup.sh installs.
    named = set()
    tests = Path(ROOT / "tests")
    for test in [*tests.glob("test_*.py"), *tests.glob("helpers/*.py")]:
        named |= set(re.findall(r'node_package\(\s*"(@[^"]+)"', test.read_text()))
    assert named, "no test uses node_package()"
    for package in named:
        assert f'"{package}@' in setup, f"tests/setup.sh does not install {package}"


def run_pytest(test: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run one test of this suite in a child pytest, with `env` added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", test],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_missing_npm_server_fails_its_test_with_one_line_naming_the_install_step(tmp_path: Path) -> None:
    empty = tmp_path / "node_modules"
    empty.mkdir()
    test = "tests/test_runtime.py::test_third_party_everything_server"
    result = run_pytest(test, MCP_HUB_NODE_MODULES=str(empty))
    assert result.returncode == 1, result.stdout[-3000:]
    assert f"FAILED {test}" in result.stdout, result.stdout[-3000:]
    # The failure is that one line: no traceback, no assertion to decode.
    entry = empty / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
    assert MISSING_LINE.findall(result.stdout) == [
        f"npm package @modelcontextprotocol/server-everything ({entry})"
    ], result.stdout
    assert "Traceback" not in result.stdout and "assert" not in result.stdout, result.stdout


def test_a_missing_browser_fails_its_test_with_one_line_naming_the_install_step(tmp_path: Path) -> None:
    test = "tests/test_browser.py::test_sql_console_runs_a_query_and_shows_the_rows"
    result = run_pytest(test, MCP_HUB_CHROMIUM=str(tmp_path / "no-chromium"))
    assert result.returncode == 1, result.stdout[-3000:]
    assert f"ERROR {test}[open hub]" in result.stdout, result.stdout[-3000:]
    missing = MISSING_LINE.findall(result.stdout)
    assert missing and set(missing) == {f"{tmp_path}/no-chromium (Debian's chromium and chromium-driver)"}
    assert "Traceback" not in result.stdout and "assert" not in result.stdout, result.stdout


def test_no_test_file_imports_from_another_test_file() -> None:
    """Helpers that several test files use live in conftest.py or tests/helpers/: importing a test
    file from another collects and runs its tests twice over and ties unrelated files together."""
    tests = ROOT / "tests"
    files = [*tests.glob("*.py"), *tests.glob("helpers/*.py")]
    assert len(files) > 20, files
    offenders = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            offenders += [f"{path.name}:{node.lineno}: {name}" for name in names if name.startswith("test_")]
    assert not offenders, (
        "test files import from other test files (move the helper to conftest.py or tests/helpers/):\n"
        + "\n".join(offenders)
    )
