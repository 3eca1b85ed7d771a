#!/usr/bin/env bash
# Installs what the test suite drives, into the Python that runs this script (`$PYTHON`, else
# `python`, else `python3`): the README's test command is `bash tests/setup.sh && pytest`.
#
# - the project with its `test` extra (pytest, selenium, mcp-server-time, ...), editable;
# - the npm MCP servers the tests run as real subprocesses, pinned, into tests/.deps/node_modules
#   (the tests look there, or in $MCP_HUB_NODE_MODULES);
# - Debian's chromium and chromium-driver for the browser tests, and bubblewrap (`bwrap`), the
#   sandbox every stdio server runs in by default, redis-server, which the cluster tests start, and
#   haproxy, whose `haproxy -c` checks config/haproxy.cfg, and openssl, which makes the TLS tests'
#   certificate (apt-get, as root or with sudo).
#
# Running it again installs only what is missing. What it cannot install (no npm, no apt-get, no
# root) it names at the end; the tests that need it then fail with one line naming this script.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-$(command -v python || command -v python3)}
NODE_DIR=tests/.deps
NODE_PACKAGES=(
  "@modelcontextprotocol/server-everything@2026.8.31"
  "@modelcontextprotocol/inspector-cli@1.0.3"
  "@modelcontextprotocol/server-basic-vanillajs@2.0.3"
  "@modelcontextprotocol/server-filesystem@2026.8.31"
  "@modelcontextprotocol/server-memory@2026.8.31"
  "@modelcontextprotocol/conformance@0.1.13"
)
missing=()

say() { echo "tests/setup.sh: $*" >&2; }

say "installing the project and its test extra into $PYTHON"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -e '.[test]'

if command -v npm >/dev/null && command -v node >/dev/null; then
  installed=1
  for package in "${NODE_PACKAGES[@]}"; do
    name=${package%@*} version=${package##*@}
    manifest="$NODE_DIR/node_modules/$name/package.json"
    [ -f "$manifest" ] && grep -q "\"version\": \"$version\"" "$manifest" || installed=0
  done
  if [ "$installed" = 0 ]; then
    say "installing ${NODE_PACKAGES[*]} into $NODE_DIR"
    npm install --no-audit --no-fund --silent --prefix "$NODE_DIR" "${NODE_PACKAGES[@]}"
  fi
else
  missing+=("Node.js 20 with npm (Debian: apt-get install nodejs npm), for the npm MCP servers")
fi

debian=()
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  debian+=(chromium chromium-driver)
fi
if ! command -v bwrap >/dev/null; then
  debian+=(bubblewrap)
fi
if ! command -v redis-server >/dev/null; then
  debian+=(redis-server)
fi
if ! command -v haproxy >/dev/null && [ ! -x /usr/sbin/haproxy ]; then  # (sbin: not on a user's PATH)
  debian+=(haproxy)
fi
if ! command -v openssl >/dev/null; then  # (a self-signed certificate for the TLS tests)
  debian+=(openssl)
fi
if [ ${#debian[@]} -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo=(sudo)
  fi
  if command -v apt-get >/dev/null && { [ "$(id -u)" -eq 0 ] || [ ${#sudo[@]} -gt 0 ]; }; then
    say "installing Debian's ${debian[*]} (apt-get)"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${debian[@]}" >/dev/null
  else
    missing+=("Debian's ${debian[*]} (as root: apt-get install ${debian[*]})")
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  say "could not install, so the tests that need them will fail:"
  for what in "${missing[@]}"; do
    echo "  - $what" >&2
  done
else
  say "everything the tests need is installed"
fi
