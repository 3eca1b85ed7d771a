// MCP Hub admin panel: plain JavaScript over the REST API and the WebSocket /ws/admin.
//
// The key is typed into the sign-in form (or comes once as /admin?token=..., then leaves the URL)
// and is kept in the tab's sessionStorage until "sign out"; it is sent as "Authorization: Bearer"
// on every REST call and as ?token= on the socket, and shown nowhere. Every text that comes from
// the hub reaches the DOM as text (textContent, text nodes), never as HTML; images only as data:
// URLs of an image type.
"use strict";

(() => {
  const KEY_ITEM = "mcp-hub-admin-key";
  const LOG_LINES = 200;
  const LOG_EVERY_MS = 2000;
  const RETRY_MAX_MS = 10000;
  const STATES_UP = new Set(["running", "starting", "backoff"]);

  const servers = new Map(); // "tenant\nserver" -> {status, row, cells, buttons}
  const tools = new Map(); // "tenant\nname" -> {tool, schema, details}
  let token = takeToken();
  let log = null; // {key, timer} of the open log tail
  let refreshTimer = null;
  let refreshTools = false;
  let socket = null; // the live connection while signed in
  let retryTimer = null;
  let lastTenants = [];
  let down = null; // why the hub cannot be reached, while it cannot: states are then unknown
  let epoch = 0; // bumped at each sign-out: answers to an older epoch's requests are dropped

  const eventListeners = []; // the other scripts' listeners of /ws/admin frames (`hubAdmin.onEvent`)
  const startListeners = []; // and of the panel's start, after a sign-in (`hubAdmin.onStart`)
  const $ = (id) => document.getElementById(id);
  const keyOf = (a, b) => `${a}\n${b}`;
  const seg = encodeURIComponent;

  // ---------------------------------------------------------------------------- helpers

  /** The key of this tab: a ?token= of the URL moves to sessionStorage (and out of the URL). */
  function takeToken() {
    const query = new URLSearchParams(location.search);
    const fromUrl = query.get("token");
    if (fromUrl) {
      sessionStorage.setItem(KEY_ITEM, fromUrl);
      query.delete("token");
      const rest = query.toString();
      history.replaceState(null, "", `${location.pathname}${rest ? `?${rest}` : ""}${location.hash}`);
    }
    return sessionStorage.getItem(KEY_ITEM);
  }

  /** An element; options set attributes (`text` as text, `on*` as listeners); children as nodes or text. */
  function el(tag, options = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(options)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (["value", "checked", "disabled", "hidden", "open"].includes(key)) node[key] = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  /** An error for a hub that did not answer, or answered that it is going away (`unreachable`). */
  function unreachableError(reason) {
    const failure = new Error(`the hub at ${location.host} is unreachable (${reason})`);
    failure.unreachable = true;
    return failure;
  }

  /** A REST call; resolves to the JSON answer, rejects with the hub's error message. */
  async function api(method, path, body, extraHeaders = {}) {
    const headers = { ...extraHeaders };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let answer;
    try {
      answer = await fetch(path, {
        method,
        headers,
        cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (_) {
      // fetch says only "Failed to fetch": no connection, no answer.
      throw unreachableError("no answer");
    }
    let data = null;
    try {
      data = await answer.json();
    } catch (_) {
      data = null;
    }
    if (!answer.ok) {
      const error = data && data.error ? data.error : { code: "http", message: `HTTP ${answer.status}` };
      if (error.code === "shutting_down") throw unreachableError("it is shutting down");
      const failure = new Error(`${error.code}: ${error.message}`);
      failure.status = answer.status;
      throw failure;
    }
    return data;
  }

  function notice(message) {
    const box = $("notice");
    box.textContent = message;
    box.hidden = !message;
  }

  /** What the page says about a failed call; a refused key also leads back to the sign-in form. */
  function explain(error) {
    if (error.unreachable) hubDown(error.message);
    if (error.status === 401) signIn(token ? "The hub no longer accepts this key: sign in again." : "");
    return error.message;
  }

  const show = (value) => (value === null || value === undefined || value === "" ? "—" : String(value));

  // ---------------------------------------------------------------------------- tenants

  function quotaCell(quota, extra) {
    const cell = el("td", { class: "num" }, `${quota.used} / ${quota.limit === null ? "∞" : quota.limit}`);
    if (quota.limit !== null && quota.limit > 0) {
      cell.append(el("meter", { min: 0, max: quota.limit, value: Math.min(quota.used, quota.limit) }));
    }
    if (extra) cell.append(el("div", { class: "muted" }, extra));
    return cell;
  }

  function renderTenants(tenants) {
    lastTenants = tenants;
    const rows = tenants.map((tenant) => {
      const running = tenant.servers.filter((s) => s.state === "running").length;
      const q = tenant.quotas;
      const states = down ? "states unknown" : `${running} of ${tenant.servers.length} running`;
      return el(
        "tr",
        { "data-tenant": tenant.name },
        el("td", { class: "name", text: tenant.name }),
        el("td", { class: "description", text: tenant.description }),
        quotaCell(q.max_servers, states),
        quotaCell(q.max_tools, tenant.hidden_tools ? `${tenant.hidden_tools} hidden by the quota` : null),
        quotaCell(q.max_concurrent_calls),
        quotaCell(q.max_calls_per_minute),
      );
    });
    $("tenants").tBodies[0].replaceChildren(...rows);
  }

  // ---------------------------------------------------------------------------- servers

  function serverEntry(status) {
    const key = keyOf(status.tenant, status.server);
    let entry = servers.get(key);
    if (entry) return entry;
    const name = `${status.tenant}/${status.server}`;
    const cells = {
      tenant: el("td", { class: "tenant", text: status.tenant }),
      server: el("td", { class: "server", text: status.server }),
      state: el("td", { class: "state-cell" }, el("span", { class: "state" })),
      pid: el("td", { class: "pid" }),
      restarts: el("td", { class: "restarts num" }),
      tools: el("td", { class: "tools num" }),
      error: el("td", { class: "error" }),
    };
    const buttons = {
      start: el("button", { type: "button", class: "start", text: "start", "aria-label": `start ${name}` }),
      stop: el("button", { type: "button", class: "stop", text: "stop", "aria-label": `stop ${name}` }),
      restart: el("button", {
        type: "button",
        class: "restart",
        text: "restart",
        "aria-label": `restart ${name}`,
      }),
      log: el("button", {
        type: "button",
        class: "log",
        text: "log",
        "aria-pressed": "false",
        "aria-label": `log of ${name}`,
      }),
    };
    const row = el(
      "tr",
      { "data-tenant": status.tenant, "data-server": status.server },
      ...Object.values(cells),
      el("td", { class: "actions" }, ...Object.values(buttons)),
    );
    entry = { status: {}, row, cells, buttons, busy: false };
    for (const action of ["start", "stop", "restart"]) {
      buttons[action].addEventListener("click", () => act(entry, action));
    }
    buttons.log.addEventListener("click", () => (log && log.key === key ? closeLog() : openLog(key)));
    servers.set(key, entry);
    return entry;
  }

  /** Merge a status (from REST or a server_status frame) into its row. */
  function applyStatus(status) {
    const entry = serverEntry(status);
    entry.status = { ...entry.status, ...status };
    drawServer(entry);
    return entry;
  }

  /** A server's row from its status; while the hub is unreachable its state is unknown. */
  function drawServer(entry) {
    const s = entry.status;
    const badge = entry.cells.state.firstChild;
    badge.textContent = down ? "unknown" : s.state;
    badge.className = down ? "state unknown" : `state ${s.state}`;
    badge.title = down ? `last known: ${s.state}` : "";
    entry.cells.pid.textContent = show(s.pid);
    if (s.per_session || s.per_user) {
      // The shared instance's pid, then how many sessions (users) have their own instance (pids on hover).
      const own = s.instances || [];
      const kind = s.per_user ? "user" : "session";
      entry.cells.pid.textContent += ` + ${own.length} ${kind}${own.length === 1 ? "" : "s"}`;
      entry.cells.pid.title = own.map((i) => `${i.session_kind} ${i.session}: ${i.state} ${show(i.pid)}`).join("\n");
    }
    if (s.per_user && !entry.cells.server.querySelector("a")) {
      // Where the signed-in key's user sets their own values (the page shares this tab's key).
      const page = `/me/credentials/${encodeURIComponent(s.server)}?tenant=${encodeURIComponent(s.tenant)}`;
      entry.cells.server.append(" ", el("a", { class: "credentials", href: page, text: "my credentials" }));
    }
    entry.cells.restarts.textContent = show(s.restarts);
    entry.cells.tools.textContent = show(s.tools);
    entry.cells.error.textContent = s.last_error || "";
    entry.cells.error.title = s.last_error || "";
    entry.row.classList.toggle("stale", Boolean(down));
    setButtons(entry);
  }

  function setButtons(entry) {
    const state = entry.status.state;
    const off = entry.busy || Boolean(down);
    entry.row.classList.toggle("busy", entry.busy);
    entry.buttons.start.disabled = off || state === "running" || state === "starting";
    entry.buttons.stop.disabled = off || !STATES_UP.has(state);
    entry.buttons.restart.disabled = off;
  }

  function renderServers(list) {
    const seen = new Set();
    const rows = list.map((status) => {
      seen.add(keyOf(status.tenant, status.server));
      return applyStatus(status).row;
    });
    for (const [key, entry] of servers) {
      if (!seen.has(key)) {
        servers.delete(key);
        entry.row.remove();
        if (log && log.key === key) closeLog();
      }
    }
    $("servers").tBodies[0].replaceChildren(...rows);
  }

  async function act(entry, action) {
    const { tenant, server } = entry.status;
    const mine = epoch;
    entry.busy = true;
    setButtons(entry);
    try {
      const status = await api("POST", `/api/servers/${seg(tenant)}/${seg(server)}/${action}`);
      if (mine !== epoch) return;
      applyStatus(status);
      notice("");
    } catch (error) {
      const message = explain(error);
      if (mine === epoch) notice(`${action} ${tenant}/${server}: ${message}`);
    } finally {
      entry.busy = false;
      if (mine === epoch) {
        setButtons(entry);
        scheduleRefresh(false);
      }
    }
  }

  // ---------------------------------------------------------------------------- log tail

  function openLog(key) {
    closeLog();
    const entry = servers.get(key);
    if (!entry) return;
    log = { key, timer: null };
    entry.buttons.log.setAttribute("aria-pressed", "true");
    $("log-title").textContent = `${entry.status.tenant}/${entry.status.server}`;
    $("log-lines").textContent = "";
    $("log").hidden = false;
    pollLog(log);
  }

  function closeLog() {
    if (!log) return;
    clearTimeout(log.timer);
    const entry = servers.get(log.key);
    if (entry) entry.buttons.log.setAttribute("aria-pressed", "false");
    log = null;
    $("log").hidden = true;
  }

  async function pollLog(current) {
    const entry = servers.get(current.key);
    if (!entry || log !== current) return;
    const { tenant, server } = entry.status;
    const pre = $("log-lines");
    try {
      const answer = await api("GET", `/api/servers/${seg(tenant)}/${seg(server)}/logs?tail=${LOG_LINES}`);
      if (log !== current) return;
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = answer.lines.length ? answer.lines.join("\n") : "(nothing logged yet)";
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    } catch (error) {
      if (log !== current) return;
      pre.textContent = `(cannot read the log: ${error.message})`;
    }
    current.timer = setTimeout(() => pollLog(current), LOG_EVERY_MS);
  }

  // ---------------------------------------------------------------------------- tools and "try it"

  /** A property as a field sees it: `T | None` (anyOf or oneOf T and null) is a T that may stay empty. */
  function unwrap(prop) {
    if (!prop || typeof prop !== "object") return {};
    const options = prop.anyOf || prop.oneOf;
    if (!Array.isArray(options)) return prop;
    const real = options.filter((o) => !(o && o.type === "null"));
    return real.length === 1 && real[0] && typeof real[0] === "object"
      ? { ...real[0], description: prop.description, default: prop.default }
      : prop;
  }

  /** The JSON type a property names (the first that is not null), or undefined. */
  function typeOf(prop) {
    return Array.isArray(prop.type) ? prop.type.find((t) => t !== "null") : prop.type;
  }

  /** The field kind of an unwrapped property: string, number, integer, boolean, enum or json. */
  function kindOf(prop) {
    if (Array.isArray(prop.enum) && prop.enum.length) return "enum";
    const type = typeOf(prop);
    return ["string", "number", "integer", "boolean"].includes(type) ? type : "json";
  }

  function inputFor(kind, prop, required, id) {
    switch (kind) {
      case "string":
        return el("input", { id, type: "text", value: typeof prop.default === "string" ? prop.default : "" });
      case "number":
      case "integer":
        return el("input", {
          id,
          type: "number",
          step: kind === "integer" ? "1" : "any",
          value: typeof prop.default === "number" ? String(prop.default) : "",
        });
      case "boolean":
        if (required) return el("input", { id, type: "checkbox", checked: prop.default === true });
        return el(
          "select",
          { id },
          el("option", { value: "", text: "(not set)" }),
          el("option", { value: "true", text: "true" }),
          el("option", { value: "false", text: "false" }),
        );
      case "enum": {
        const select = el(
          "select",
          { id },
          required ? null : el("option", { value: "", text: "(not set)" }),
          ...prop.enum.map((v, i) => {
            return el("option", { value: String(i), text: typeof v === "string" ? v : JSON.stringify(v) });
          }),
        );
        const preset = prop.enum.findIndex((v) => JSON.stringify(v) === JSON.stringify(prop.default));
        if (preset >= 0) select.value = String(preset);
        return select;
      }
      default: {
        const hint = typeOf(prop) === "array" ? "[]" : "{}";
        return el("textarea", { id, rows: 3, placeholder: `JSON, e.g. ${hint}`, spellcheck: "false" });
      }
    }
  }

  /** The arguments object from the form's fields; throws with a message naming a bad field. */
  function collect(fields) {
    const args = {};
    for (const field of fields) {
      const { name, kind, input, required, prop } = field;
      if (kind === "boolean" && input.type === "checkbox") {
        args[name] = input.checked;
        continue;
      }
      const raw = input.value;
      if (raw === "" && !(kind === "string" && required)) {
        if (required) throw new Error(`${name} is required`);
        continue;
      }
      if (kind === "string") args[name] = raw;
      else if (kind === "boolean") args[name] = raw === "true";
      else if (kind === "enum") args[name] = prop.enum[Number(raw)];
      else if (kind === "number" || kind === "integer") {
        const value = Number(raw);
        if (!Number.isFinite(value) || (kind === "integer" && !Number.isInteger(value))) {
          throw new Error(`${name} must be ${kind === "integer" ? "an integer" : "a number"}`);
        }
        args[name] = value;
      } else {
        try {
          args[name] = JSON.parse(raw);
        } catch (error) {
          throw new Error(`${name} is not valid JSON: ${error.message}`);
        }
      }
    }
    return args;
  }

  const IMAGE_TYPE = /^image\/[a-z0-9.+-]+$/i;
  const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

  /** An image content block as an <img> (a data: URL of an image type only), else null. */
  function imageOf(block) {
    if (block.type !== "image" || typeof block.data !== "string" || !BASE64.test(block.data)) return null;
    if (typeof block.mimeType !== "string" || !IMAGE_TYPE.test(block.mimeType)) return null;
    const src = `data:${block.mimeType};base64,${block.data}`;
    return el("img", { class: "result-image", src, alt: block.mimeType });
  }

  function showResult(pre, result) {
    const parts = [document.createTextNode(result.is_error ? "tool error" : "ok")];
    for (const block of result.content || []) {
      const image = imageOf(block);
      parts.push("\n", image || (block.type === "text" ? block.text : JSON.stringify(block, null, 2)));
    }
    if (result.structured_content !== null && result.structured_content !== undefined) {
      parts.push(`\nstructured_content: ${JSON.stringify(result.structured_content, null, 2)}`);
    }
    pre.replaceChildren(...parts);
    pre.classList.toggle("error", result.is_error);
    pre.hidden = false;
  }

  function buildForm(entry) {
    const { tool, schema } = entry;
    const declared = schema && schema.properties;
    const props = declared && typeof declared === "object" ? declared : {};
    const required = new Set(schema && Array.isArray(schema.required) ? schema.required : []);
    const form = el("form", { class: "try", novalidate: true });
    const fields = [];
    const prefix = `f${Math.random().toString(36).slice(2, 9)}`;
    const names = Object.keys(props);
    names.forEach((name, i) => {
      const prop = unwrap(props[name]);
      const kind = kindOf(prop);
      const id = `${prefix}-${i}`;
      const isRequired = required.has(name);
      const input = inputFor(kind, prop, isRequired, id);
      input.name = name;
      const typeText = { json: `${typeOf(prop) || "any value"} as JSON`, enum: "" }[kind] ?? kind;
      const hint = [typeText, prop.description].filter(Boolean).join(" · ");
      form.append(
        el("label", { for: id }, name, isRequired ? el("span", { class: "required", text: " *" }) : null),
        el("div", { class: "field" }, input, hint ? el("span", { class: "hint", text: hint }) : null),
      );
      fields.push({ name, kind, input, required: isRequired, prop });
    });
    if (!names.length) {
      // No declared properties: the arguments as one JSON object.
      const id = `${prefix}-args`;
      const input = el("textarea", { id, rows: 2, value: "{}", spellcheck: "false", name: "arguments" });
      form.append(
        el("label", { for: id, text: "arguments" }),
        el("div", { class: "field" }, input, el("span", { class: "hint", text: "a JSON object" })),
      );
      fields.push({ name: "arguments", kind: "raw", input, required: false, prop: {} });
    }
    const button = el("button", { type: "submit", class: "primary", text: "call" });
    const result = el("pre", { class: "result", hidden: true });
    form.append(el("div", { class: "submit" }, button), result);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      let args;
      try {
        const raw = fields.length === 1 && fields[0].kind === "raw";
        args = raw ? JSON.parse(fields[0].input.value || "{}") : collect(fields);
      } catch (error) {
        result.textContent = error.message;
        result.classList.add("error");
        result.hidden = false;
        return;
      }
      button.disabled = true;
      result.textContent = "calling…";
      result.classList.remove("error");
      result.hidden = false;
      try {
        const path = `/api/tools/${seg(tool.name)}/call?tenant=${seg(tool.tenant)}`;
        showResult(result, await api("POST", path, args));
      } catch (error) {
        result.textContent = explain(error);
        result.classList.add("error");
      } finally {
        button.disabled = false;
      }
    });
    return form;
  }

  function toolEntry(tool) {
    const key = keyOf(tool.tenant, tool.name);
    const schemaText = JSON.stringify(tool.input_schema || {});
    let entry = tools.get(key);
    if (entry && entry.schemaText !== schemaText) {
      entry.form?.remove();
      entry.form = null;
    }
    if (!entry) {
      const summary = el("summary");
      const attributes = { class: "tool", "data-tenant": tool.tenant, "data-tool": tool.name };
      const details = el("details", attributes, summary);
      entry = { details, summary, form: null };
      details.addEventListener("toggle", () => {
        if (details.open && !entry.form) {
          entry.form = buildForm(entry);
          details.append(entry.form);
        }
      });
      tools.set(key, entry);
    }
    entry.tool = tool;
    entry.schema = tool.input_schema || {};
    entry.schemaText = schemaText;
    const parts = [
      el("span", { class: "name", text: tool.name }),
      tool.title ? el("span", { class: "title", text: tool.title }) : null,
      el("span", { class: "tenant", text: tool.tenant }),
      el("span", { class: "description", text: tool.description || "" }),
    ];
    entry.summary.replaceChildren(...parts.filter(Boolean));
    if (entry.details.open && !entry.form) {
      entry.form = buildForm(entry);
      entry.details.append(entry.form);
    }
    return entry;
  }

  function renderTools(list) {
    const seen = new Set();
    const nodes = list.map((tool) => {
      seen.add(keyOf(tool.tenant, tool.name));
      return toolEntry(tool).details;
    });
    for (const key of [...tools.keys()]) {
      if (!seen.has(key)) tools.delete(key);
    }
    const empty = el("p", { class: "muted", text: "No tools: no server is running." });
    $("tools").replaceChildren(...(nodes.length ? nodes : [empty]));
    filterTools();
  }

  function filterTools() {
    const words = $("tool-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const entry of tools.values()) {
      const { tenant, name, title, description } = entry.tool;
      const text = `${tenant} ${name} ${title || ""} ${description || ""}`.toLowerCase();
      entry.details.hidden = !words.every((w) => text.includes(w));
    }
  }

  // ---------------------------------------------------------------------------- refresh and events

  async function refresh(withTools) {
    const mine = epoch;
    try {
      const [tenants, list] = await Promise.all([api("GET", "/api/tenants"), api("GET", "/api/servers")]);
      if (mine !== epoch) return; // signed out meanwhile
      hubUp();
      renderTenants(tenants.tenants);
      renderServers(list.servers);
      if (withTools) {
        const catalog = await api("GET", "/api/tools");
        if (mine === epoch) renderTools(catalog.tools);
      }
    } catch (error) {
      if (mine !== epoch) return;
      const message = explain(error);
      if (!error.unreachable && error.status !== 401) notice(message);
    }
  }

  /** One refresh shortly after a burst of events (quotas' usage and the catalog follow the servers). */
  function scheduleRefresh(withTools) {
    refreshTools = refreshTools || withTools;
    if (refreshTimer !== null) return;
    refreshTimer = setTimeout(() => {
      const alsoTools = refreshTools;
      refreshTimer = null;
      refreshTools = false;
      refresh(alsoTools);
    }, 250);
  }

  function live(on, text) {
    const badge = $("live");
    badge.textContent = text;
    badge.className = `live ${on ? "on" : "off"}`;
  }

  // ---------------------------------------------------------------------------- the hub unreachable

  /** Show that the hub does not answer: a banner, and every state as unknown (the last known on hover). */
  function hubDown(reason) {
    const first = !down;
    down = reason;
    const banner = $("unreachable");
    banner.textContent =
      `${reason.charAt(0).toUpperCase()}${reason.slice(1)}. Server states are unknown until it ` +
      "answers again; the page keeps trying and recovers by itself.";
    banner.hidden = false;
    live(false, "hub unreachable");
    if (first) redraw();
  }

  /** The hub answered again: the banner goes, and the states drawn next are current. */
  function hubUp() {
    if (!down) return;
    down = null;
    $("unreachable").hidden = true;
    redraw();
  }

  function redraw() {
    for (const entry of servers.values()) drawServer(entry);
    renderTenants(lastTenants);
  }

  // ---------------------------------------------------------------------------- live events

  let retryMs = 1000;

  function connect() {
    retryTimer = null;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/ws/admin${token ? `?token=${seg(token)}` : ""}`;
    const ws = new WebSocket(url);
    socket = ws;
    ws.addEventListener("open", () => {
      if (socket !== ws) return;
      retryMs = 1000;
      live(true, "live");
      refresh(true); // whatever happened while disconnected
    });
    ws.addEventListener("message", (message) => {
      if (socket !== ws) return;
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch (_) {
        return;
      }
      if (frame.type === "server_status") {
        const known = servers.has(keyOf(frame.data.tenant, frame.data.server));
        if (known) applyStatus(frame.data);
        scheduleRefresh(!known);
      } else if (frame.type === "catalog_changed") {
        scheduleRefresh(true);
      } else if (frame.type === "instance_status") {
        scheduleRefresh(false); // a session instance started or stopped: the servers' rows follow
      }
      for (const listener of eventListeners) listener(frame);
    });
    ws.addEventListener("close", () => {
      if (socket !== ws) return; // signed out, or replaced
      socket = null;
      const why = down ? "hub unreachable" : "disconnected";
      live(false, `${why}; retrying in ${Math.round(retryMs / 1000)} s`);
      refresh(false); // is the hub still there? If not, its states become unknown
      retryTimer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    });
  }

  /** Stop listening: no socket, no pending retry or refresh. */
  function stopLive() {
    clearTimeout(retryTimer);
    clearTimeout(refreshTimer);
    retryTimer = refreshTimer = null;
    refreshTools = false;
    const ws = socket;
    socket = null;
    if (ws) ws.close();
  }

  // ---------------------------------------------------------------------------- sign-in and sign-out

  /** The panel with the tab's key (none on an open hub). */
  function startPanel() {
    $("signin").hidden = true;
    $("panel").hidden = false;
    $("signout").hidden = !token;
    retryMs = 1000;
    refresh(true);
    connect();
    for (const listener of startListeners) listener();
  }

  /** The sign-in form instead of the panel; nothing of the hub's data stays on the page. */
  function signIn(message, isError = true) {
    epoch += 1;
    stopLive();
    closeLog();
    servers.clear();
    tools.clear();
    lastTenants = [];
    down = null;
    for (const id of ["tenants", "servers"]) $(id).tBodies[0].replaceChildren();
    $("tools").replaceChildren();
    $("unreachable").hidden = true;
    notice("");
    $("panel").hidden = true;
    $("signout").hidden = true;
    $("signin").hidden = false;
    const said = $("signin-error");
    said.textContent = message;
    said.classList.toggle("error", isError);
    said.hidden = !message;
    live(false, "signed out");
    $("signin-key").focus();
  }

  /** Whether `key` is an admin key of this hub: `/admin` answers 200 to one, 401 or 404 to others. */
  async function checkKey(key) {
    try {
      const headers = { Authorization: `Bearer ${key}` };
      const answer = await fetch("/admin", { headers, cache: "no-store" });
      if (answer.ok) return null;
      if (answer.status === 401) return "Wrong key: no key of this hub matches it.";
      if (answer.status === 404) return "This key is a tenant's: the admin panel needs an admin key.";
      return `The hub answered HTTP ${answer.status}; try again.`;
    } catch (_) {
      return `The hub at ${location.host} is unreachable; try again when it runs.`;
    }
  }

  $("signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("signin-key");
    const button = $("signin").querySelector("button[type=submit]");
    const key = input.value.trim();
    if (!key) return;
    button.disabled = true;
    const problem = await checkKey(key);
    button.disabled = false;
    if (problem) {
      signIn(problem);
      input.value = key;
      input.select();
      return;
    }
    input.value = "";
    token = key;
    sessionStorage.setItem(KEY_ITEM, key);
    startPanel();
  });

  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_ITEM);
    token = null;
    signIn("Signed out. The key is no longer kept in this tab.", false);
  });

  // ---------------------------------------------------------------------------- start

  $("notice").addEventListener("click", () => notice(""));
  $("log-close").addEventListener("click", closeLog);
  $("tool-filter").addEventListener("input", filterTools);
  api("GET", "/")
    .then((about) => {
      $("version").textContent = `version ${about.version}`;
    })
    .catch(() => {});
  startPanel();
  // What the panel's other scripts (web/static/admin/admin_*.js, loaded after this one) share: the
  // REST call with the tab's key, the element builder, the notice line, a refresh of the tables, and
  // the live events and the panel's start (run at once if it has started, and after each sign-in).
  window.hubAdmin = Object.freeze({
    api,
    el,
    notice,
    explain,
    refresh: () => scheduleRefresh(true),
    onEvent: (listener) => eventListeners.push(listener),
    onStart: (listener) => {
      startListeners.push(listener);
      if (!$("panel").hidden) listener(); // (the panel started before this script was loaded)
    },
  });
})();
