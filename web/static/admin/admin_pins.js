// MCP Hub admin panel: pinned tools (docs/security.md, "Pinned tools").
//
// A section that lists each server whose tools differ from those an admin approved (its status says
// catalog "pending_approval"): the pinning mode, the tools held, the diff per tool (each changed
// field as approved and as the server shows it now) and the buttons "Approve" and "Reject", which
// send the digest of the diff shown (a diff that changed since is refused, 412, and shown anew).
// It follows the servers admin.js fetches (the document event "mcp-hub:servers", after each refresh,
// which the live events of /ws/admin trigger). Text from the hub reaches the DOM as text only.
"use strict";

(() => {
  const KEY_ITEM = "mcp-hub-admin-key";
  const seg = encodeURIComponent;
  let generation = 0; // each render's number: an older render's answers are dropped
  let lastServers = [];

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }

  async function api(method, path, body) {
    const headers = {};
    const token = sessionStorage.getItem(KEY_ITEM);
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const answer = await fetch(path, {
      method,
      headers,
      cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await answer.json().catch(() => null);
    if (!answer.ok) {
      const error = data && data.error ? data.error : { code: "http", message: `HTTP ${answer.status}` };
      throw new Error(`${error.code}: ${error.message}`);
    }
    return data;
  }

  /** The section, made once, after the servers' section. */
  function section() {
    let node = document.getElementById("pins");
    if (node) return node;
    node = el(
      "section",
      { id: "pins" },
      el("h2", {}, "Pinned tools"),
      el(
        "p",
        { class: "muted" },
        "Servers whose tools changed since they were approved. Under pinning enforce the changed and " +
          "new tools are hidden and refused until you approve; under warn they stay, and this warns.",
      ),
      el("p", { id: "pins-none", class: "muted" }, "No server has changed tools waiting for approval."),
      el("div", { id: "pins-list" }),
    );
    const servers = document.getElementById("servers");
    const after = servers ? servers.closest("section") : null;
    if (after) after.after(node);
    else document.getElementById("panel").append(node);
    return node;
  }

  const shown = (value) => (value === null || value === undefined ? "—" : typeof value === "string" ? value : JSON.stringify(value, null, 1));

  function diffTable(view) {
    const rows = [];
    for (const change of view.diff) {
      const fields = Object.entries(change.fields);
      fields.forEach(([field, values], index) => {
        rows.push(
          el(
            "tr",
            { "data-tool": change.tool, class: `pin-${change.change}` },
            el("td", {}, index === 0 ? change.tool : ""),
            el("td", {}, index === 0 ? change.change : ""),
            el("td", {}, field),
            el("td", {}, el("pre", { class: "before" }, shown(values.before))),
            el("td", {}, el("pre", { class: "after" }, shown(values.after))),
          ),
        );
      });
    }
    const head = el("tr", {}, ...["tool", "change", "field", "approved", "now"].map((h) => el("th", {}, h)));
    return el("table", { class: "pin-diff" }, el("thead", {}, head), el("tbody", {}, ...rows));
  }

  function card(view) {
    const name = `${view.tenant}/${view.server}`;
    const said = el("p", { class: "pin-said", role: "alert", hidden: "" });
    const decide = async (action, button) => {
      button.disabled = true;
      try {
        await api("POST", `/api/servers/${seg(view.tenant)}/${seg(view.server)}/pins/${action}`, {
          digest: view.digest,
        });
        const list = await api("GET", "/api/servers");
        await render(list.servers);
      } catch (error) {
        said.textContent = `${action} failed: ${error.message}`;
        said.hidden = false;
        button.disabled = false;
      }
    };
    const approve = el("button", { type: "button", class: "primary approve" }, "Approve");
    approve.addEventListener("click", () => decide("approve", approve));
    const reject = el("button", { type: "button", class: "reject" }, "Reject");
    reject.addEventListener("click", () => decide("reject", reject));
    const held = view.held.length ? `held: ${view.held.join(", ")}` : "nothing held";
    return el(
      "div",
      { class: "pin-card", "data-tenant": view.tenant, "data-server": view.server },
      el("h3", {}, name, " ", el("span", { class: "badge pin-state" }, view.state.replace("_", " "))),
      el("p", { class: "muted" }, `pinning ${view.pinning}; ${held}`),
      diffTable(view),
      el("div", { class: "pin-actions" }, approve, reject),
      said,
    );
  }

  async function render(servers) {
    lastServers = servers;
    const mine = ++generation;
    const pending = servers.filter((s) => s.catalog === "pending_approval");
    const views = await Promise.all(
      pending.map((s) => api("GET", `/api/servers/${seg(s.tenant)}/${seg(s.server)}/pins`).catch(() => null)),
    );
    if (mine !== generation) return;
    const cards = views.filter((v) => v && v.diff.length).map(card);
    section();
    document.getElementById("pins-list").replaceChildren(...cards);
    document.getElementById("pins-none").hidden = cards.length > 0;
  }

  document.addEventListener("mcp-hub:servers", (event) => {
    render(event.detail).catch(() => render(lastServers).catch(() => {}));
  });
})();
