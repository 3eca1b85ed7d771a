// SQL console: an MCP Hub app. It talks to the hub over the WebSocket gateway only:
// app_ready -> app_state (config, catalog, servers); tool_call -> tool_result | error; live
// catalog_changed and server_status frames keep the side panel current: one line per server.
(function () {
  "use strict";
  const hub = window.MCP_HUB_CONFIG;
  const $ = (id) => document.getElementById(id);
  const pending = new Map();
  let nextId = 1;
  let ws;

  function setStatus(text) { $("status").textContent = text; }

  function call(toolName, args) {
    const id = String(nextId++);
    ws.send(JSON.stringify({ type: "tool_call", id, data: { tool_name: toolName, arguments: args } }));
    return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
  }

  function showTools(names) {
    const list = $("tools");
    list.replaceChildren(...names.map((name) => {
      const item = document.createElement("li");
      item.textContent = name;
      return item;
    }));
  }

  /** The line of a server in the Servers panel, made on first sight and updated in place. */
  function showServer(status) {
    const list = $("servers");
    let item = [...list.children].find((li) => li.dataset.server === status.server);
    if (!item) {
      item = document.createElement("li");
      item.dataset.server = status.server;
      list.append(item);
    }
    item.textContent = `${status.server}: ${status.state}`;
  }

  /** The whole Servers panel from app_state: servers no longer configured go away. */
  function showServers(statuses) {
    const names = new Set(statuses.map((s) => s.server));
    for (const item of [...$("servers").children]) {
      if (!names.has(item.dataset.server)) item.remove();
    }
    statuses.forEach(showServer);
  }

  function showRows(data) {
    const table = $("result");
    const head = document.createElement("tr");
    for (const column of data.columns) {
      const cell = document.createElement("th");
      cell.textContent = column;
      head.appendChild(cell);
    }
    const rows = data.rows.map((row) => {
      const tr = document.createElement("tr");
      for (const value of row) {
        const cell = document.createElement("td");
        cell.textContent = value === null ? "NULL" : String(value);
        tr.appendChild(cell);
      }
      return tr;
    });
    table.replaceChildren(head, ...rows);
    $("message").textContent = `${data.row_count} row(s)` + (data.truncated ? " (truncated)" : "");
    $("message").style.color = "#1d2433";
  }

  async function run() {
    $("message").textContent = "";
    $("result").replaceChildren();
    try {
      const result = await call(hub.config.tool, { sql: $("sql").value });
      if (result.is_error) {
        $("message").style.color = "#a33";
        $("message").textContent = result.content.map((c) => c.text || "").join(" ");
      } else {
        showRows(result.structured_content);
      }
    } catch (error) {
      $("message").style.color = "#a33";
      $("message").textContent = `${error.code}: ${error.message}`;
    }
  }

  function connect() {
    ws = new WebSocket(hub.ws_url);
    ws.onopen = () => {
      setStatus(`connected · tenant ${hub.tenant_id}`);
      ws.send(JSON.stringify({ type: "app_ready", data: {} }));
    };
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      const waiter = message.id !== undefined ? pending.get(message.id) : undefined;
      switch (message.type) {
        case "app_state":
          showTools(message.data.tools.map((t) => t.name));
          showServers(message.data.servers || []);
          $("run").disabled = false;
          break;
        case "tool_result":
          if (waiter) { pending.delete(message.id); waiter.resolve(message.data); }
          break;
        case "error":
          if (waiter) { pending.delete(message.id); waiter.reject(message.data); }
          else { setStatus(`error: ${message.data.message}`); }
          break;
        case "catalog_changed":
          ws.send(JSON.stringify({ type: "app_ready", data: {} }));
          break;
        case "server_status":
          showServer(message.data);
          break;
      }
    };
    ws.onclose = () => { setStatus("disconnected; retrying…"); $("run").disabled = true; setTimeout(connect, 2000); };
  }

  $("sql").value = hub.config.example || "";
  $("run").addEventListener("click", run);
  connect();
})();
