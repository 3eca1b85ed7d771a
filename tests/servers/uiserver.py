#!/usr/bin/env python3
"""An MCP App server for the hub's browser-host tests (stdio, `mcp` 2.x `MCPServer`).

Tools: `greet {name}` (its `_meta.ui.resourceUri` is the view `ui://greeter/view.html`),
`shout {text}` (visible to the model and the app), `model_only` (visibility ["model"]: a view may
not call it), `app_only` (visibility ["app"]). Resources: the view (its listing carries
`_meta.ui.csp` with one good origin and one injection attempt) and `test://note`.

The view is written by hand against the extension's postMessage protocol (no library): it
initializes, shows what the host told it, and has buttons that exercise the host's proxies.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

VIEW_URI = "ui://greeter/view.html"
VIEW = """<!doctype html>
<html><head><meta charset="utf-8"><title>Greeter view</title></head>
<body>
<p>host: <span id="host">-</span></p>
<p>input: <span id="input">-</span></p>
<p>result: <span id="result">-</span></p>
<p>origin: <span id="origin">-</span></p>
<p><button id="read">read note</button> <span id="note">-</span></p>
<p><button id="call">shout</button> <span id="called">-</span></p>
<p><button id="denied">model_only</button> <span id="denied-result">-</span></p>
<p><button id="fetch">fetch the hub</button> <span id="fetch-result">-</span></p>
<script>
let next = 1;
const waiting = {};
const $ = (id) => document.getElementById(id);
function request(method, params) {
  const id = next++;
  window.parent.postMessage({ jsonrpc: "2.0", id, method, params }, "*");
  return new Promise((resolve, reject) => { waiting[id] = { resolve, reject }; });
}
window.addEventListener("message", (event) => {
  if (event.source !== window.parent) return;
  const m = event.data;
  if (m.id !== undefined && waiting[m.id]) {
    const w = waiting[m.id];
    delete waiting[m.id];
    if (m.error) w.reject(m.error); else w.resolve(m.result);
  } else if (m.method === "ui/notifications/tool-input") {
    $("input").textContent = JSON.stringify(m.params.arguments);
  } else if (m.method === "ui/notifications/tool-result") {
    $("result").textContent = m.params.structuredContent.greeting;
  }
});
$("origin").textContent = String(window.origin);
$("read").onclick = async () => {
  const r = await request("resources/read", { uri: "test://note" });
  $("note").textContent = r.contents[0].text;
};
$("call").onclick = async () => {
  const r = await request("tools/call", { name: "shout", arguments: { text: "hi" } });
  $("called").textContent = r.content[0].text;
};
$("denied").onclick = async () => {
  try {
    await request("tools/call", { name: "model_only", arguments: {} });
    $("denied-result").textContent = "allowed";
  } catch (e) {
    $("denied-result").textContent = "refused: " + e.message;
  }
};
$("fetch").onclick = async () => {
  try { await fetch("/api/tools"); $("fetch-result").textContent = "reached"; }
  catch (e) { $("fetch-result").textContent = "blocked"; }
};
(async () => {
  const init = await request("ui/initialize", {
    protocolVersion: "2026-01-26", appInfo: { name: "greeter", version: "1.0.0" }, appCapabilities: {},
  });
  $("host").textContent = init.hostInfo.name + " / " + init.hostContext.toolInfo.tool.name;
  window.parent.postMessage({ jsonrpc: "2.0", method: "ui/notifications/initialized" }, "*");
  window.parent.postMessage({
    jsonrpc: "2.0", method: "notifications/message", params: { level: "info", data: "view says hello" },
  }, "*");
})();
</script>
</body></html>
"""

server = MCPServer("uiserver")


@server.tool(meta={"ui": {"resourceUri": VIEW_URI}})
def greet(name: str) -> dict[str, str]:
    """Greet someone (shown by the greeter view)."""
    return {"greeting": f"Hello, {name}!"}


@server.tool()
def shout(text: str) -> str:
    """Upper-case `text`."""
    return text.upper()


@server.tool(meta={"ui": {"visibility": ["model"]}})
def model_only() -> str:
    """Only the model may call this."""
    return "model only"


@server.tool(meta={"ui": {"resourceUri": VIEW_URI, "visibility": ["app"]}})
def app_only() -> str:
    """Only a view may call this."""
    return "app only"


@server.resource(
    VIEW_URI,
    mime_type="text/html;profile=mcp-app",
    meta={
        "ui": {"csp": {"connectDomains": ["https://api.example.com"], "resourceDomains": ["x; script-src *"]}}
    },
)
def view() -> str:
    """The greeter view."""
    return VIEW


@server.resource("test://note", mime_type="text/plain")
def note() -> str:
    """A note the view reads through the host."""
    return "a note from the server"


if __name__ == "__main__":
    server.run("stdio")
