// The MCP Hub host for one MCP App view (extension io.modelcontextprotocol/ui).
//
// The view runs in a sandboxed iframe (opaque origin) and speaks JSON-RPC 2.0 over postMessage.
// This page answers `ui/initialize`, sends the tool's input and result, and proxies the view's
// `tools/call` (tools of the originating server that the view may call) and `resources/read`
// (the originating server) to the hub's REST API with the key this page was opened with.
(() => {
  "use strict";
  const ui = window.MCP_HUB_UI;
  const token = new URLSearchParams(location.search).get("token");
  const frame = document.getElementById("view");
  const statusEl = document.getElementById("status");
  const logEl = document.getElementById("log");
  const argsEl = document.getElementById("arguments");
  const q = encodeURIComponent;
  const INVALID_PARAMS = -32602;
  const METHOD_NOT_FOUND = -32601;
  const INTERNAL_ERROR = -32603;
  let initialized = false;
  let pending = null; // {arguments, result} of a run that finished before the view was ready

  const title = ui.tool.title || ui.tool.name;
  document.title = `${title} · MCP Hub`;
  document.getElementById("title").textContent = title;
  document.getElementById("where").textContent =
    `${ui.tenant} / ${ui.server} / ${ui.tool.name} · ${ui.resource_uri}`;

  function note(text, error = false) {
    const item = document.createElement("li");
    item.textContent = text;
    if (error) item.className = "error";
    logEl.appendChild(item);
  }

  function setStatus(text, error = false) {
    statusEl.textContent = text;
    statusEl.className = error ? "error" : "";
  }

  // ------------------------------------------------------------------ the hub's REST API

  async function api(method, path, body) {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error((data.error && data.error.message) || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  async function callTool(name, args) {
    const path = `/api/tools/${q(`${ui.server}.${name}`)}/call?tenant=${q(ui.tenant)}`;
    const data = await api("POST", path, args || {});
    const result = { content: data.content || [], isError: Boolean(data.is_error) };
    if (data.structured_content !== null && data.structured_content !== undefined) {
      result.structuredContent = data.structured_content;
    }
    return result;
  }

  function readResource(uri) {
    const path = `/api/tenants/${q(ui.tenant)}/resources/read?uri=${q(uri)}&server=${q(ui.server)}`;
    return api("GET", path);
  }

  // ------------------------------------------------------------------ JSON-RPC over postMessage

  function post(message) {
    // The view's origin is opaque ("null"), so "*" is the only target origin that reaches it;
    // the message goes to that one window.
    if (frame.contentWindow) frame.contentWindow.postMessage({ jsonrpc: "2.0", ...message }, "*");
  }

  function notify(method, params) {
    post({ method, params });
  }

  class RpcError extends Error {
    constructor(code, message) {
      super(message);
      this.code = code;
    }
  }

  function hostContext() {
    const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    return {
      toolInfo: { tool: ui.tool },
      theme: dark ? "dark" : "light",
      displayMode: "inline",
      availableDisplayModes: ["inline"],
      containerDimensions: { width: frame.clientWidth, maxHeight: 2000 },
      locale: navigator.language,
      timeZone: Intl.DateTimeFormat().resolvedOptions().timeZone,
      userAgent: `MCP Hub ${ui.hub_version}`,
      platform: "web",
    };
  }

  const requests = {
    "ui/initialize": (params) => ({
      protocolVersion: (params && params.protocolVersion) || "2026-01-26",
      hostInfo: { name: "MCP Hub", version: ui.hub_version },
      hostCapabilities: {
        openLinks: {},
        serverTools: {},
        serverResources: {},
        logging: {},
        sandbox: { csp: {} },
      },
      hostContext: hostContext(),
    }),
    ping: () => ({}),
    "tools/call": async (params) => {
      const name = params && params.name;
      if (typeof name !== "string" || !ui.app_tools.includes(name)) {
        throw new RpcError(INVALID_PARAMS, `the view may not call tool ${JSON.stringify(name)}`);
      }
      note(`tools/call ${name}`);
      return callTool(name, params.arguments);
    },
    "resources/read": (params) => {
      if (!params || typeof params.uri !== "string") throw new RpcError(INVALID_PARAMS, "uri is required");
      note(`resources/read ${params.uri}`);
      return readResource(params.uri);
    },
    "ui/open-link": (params) => {
      const url = params && params.url;
      if (typeof url !== "string" || !/^https?:\/\//i.test(url)) {
        throw new RpcError(INVALID_PARAMS, "only http and https links are opened");
      }
      note(`open link ${url}`);
      window.open(url, "_blank", "noopener,noreferrer");
      return {};
    },
    "ui/message": (params) => {
      note(`message (no conversation on this page): ${JSON.stringify(params && params.content)}`);
      return { isError: true };
    },
    "ui/request-display-mode": () => ({ mode: "inline" }),
    "ui/update-model-context": (params) => {
      note(`model context: ${JSON.stringify(params)}`);
      return {};
    },
  };

  const notifications = {
    "ui/notifications/initialized": () => {
      initialized = true;
      note("view initialized");
      if (pending) {
        notify("ui/notifications/tool-input", { arguments: pending.arguments });
        if (pending.result) notify("ui/notifications/tool-result", pending.result);
        pending = null;
      }
    },
    "ui/notifications/size-changed": (params) => {
      const height = Number(params && params.height);
      if (Number.isFinite(height) && height > 0) frame.style.height = `${Math.min(Math.ceil(height), 2000)}px`;
    },
    "notifications/message": (params) => {
      const level = (params && params.level) || "info";
      const data = params && params.data;
      note(`log ${level}: ${typeof data === "string" ? data : JSON.stringify(data)}`, level === "error");
    },
    "ui/notifications/request-teardown": () => note("the view asked to be closed"),
  };

  async function onRequest(message) {
    const handler = requests[message.method];
    if (!handler) {
      post({ id: message.id, error: { code: METHOD_NOT_FOUND, message: `unsupported method ${message.method}` } });
      return;
    }
    try {
      post({ id: message.id, result: await handler(message.params || {}) });
    } catch (error) {
      const code = error.code || (error.status === 404 || error.status === 400 ? INVALID_PARAMS : INTERNAL_ERROR);
      note(`${message.method} failed: ${error.message}`, true);
      post({ id: message.id, error: { code, message: error.message } });
    }
  }

  window.addEventListener("message", (event) => {
    if (event.source !== frame.contentWindow) return; // only the view may talk to this page
    const message = event.data;
    if (!message || message.jsonrpc !== "2.0" || typeof message.method !== "string") return;
    if (message.id !== undefined && message.id !== null) {
      onRequest(message);
    } else if (notifications[message.method]) {
      notifications[message.method](message.params || {});
    }
  });

  // ------------------------------------------------------------------ running the tool

  async function run() {
    let args;
    try {
      args = JSON.parse(argsEl.value || "{}");
      if (args === null || typeof args !== "object" || Array.isArray(args)) throw new Error("not an object");
    } catch (error) {
      setStatus(`The arguments must be a JSON object (${error.message}).`, true);
      return;
    }
    setStatus(`Running ${ui.tool.name}…`);
    if (initialized) notify("ui/notifications/tool-input", { arguments: args });
    else pending = { arguments: args, result: null };
    try {
      const result = await callTool(ui.tool.name, args);
      setStatus(result.isError ? `${ui.tool.name} reported an error.` : `${ui.tool.name} done.`, result.isError);
      if (initialized) notify("ui/notifications/tool-result", result);
      else pending.result = result;
    } catch (error) {
      setStatus(`${ui.tool.name} failed: ${error.message}`, true);
      if (initialized) notify("ui/notifications/tool-cancelled", { reason: error.message });
      else pending = null;
    }
  }

  document.getElementById("call").addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });

  frame.srcdoc = ui.html;
  // A tool that needs no arguments runs at once, as a chat host would have run it.
  const required = (ui.tool.inputSchema && ui.tool.inputSchema.required) || [];
  if (required.length === 0) run();
})();
