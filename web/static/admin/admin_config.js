// MCP Hub admin panel: the configuration editor (GET /api/admin/config, PUT/DELETE
// /api/admin/tenants/{t}[/servers/{s}]), over window.hubAdmin (admin.js).
//
// A tenant or server is loaded as JSON (its configuration as the file has it, secrets shown as
// ********, which an edit sends back to keep them), edited in a text area and saved with the ETag
// it was loaded with: if someone changed the configuration meanwhile the hub answers 412 and the
// editor says to load again. Every text from the hub reaches the DOM as text.
"use strict";

(() => {
  const admin = window.hubAdmin;
  const { el } = admin;
  const seg = encodeURIComponent;
  let etag = null; // the ETag the text area's content was loaded with

  const tenantInput = el("input", { id: "config-tenant", required: true, placeholder: "tenant", spellcheck: "false" });
  const serverInput = el("input", { id: "config-server", placeholder: "server (empty: the tenant)", spellcheck: "false" });
  const text = el("textarea", { id: "config-text", rows: 12, spellcheck: "false", "aria-label": "configuration (JSON)" });
  const status = el("p", { id: "config-status", class: "muted", role: "status" });
  const warning = el("p", { id: "config-warning", class: "notice", role: "alert", hidden: true });

  function target() {
    const tenant = tenantInput.value.trim();
    const server = serverInput.value.trim();
    const path = `/api/admin/tenants/${seg(tenant)}${server ? `/servers/${seg(server)}` : ""}`;
    return { tenant, server, path, what: server ? `server ${tenant}/${server}` : `tenant ${tenant}` };
  }

  function say(message, isError = false) {
    status.textContent = message;
    status.className = isError ? "config-error" : "muted";
  }

  /** The configuration's ETag and whether the file was edited by hand (then edits get 409). */
  async function overview() {
    const view = await admin.api("GET", "/api/admin/config");
    warning.hidden = !view.changed_on_disk;
    warning.textContent = view.changed_on_disk
      ? `${view.source} was edited by hand since the hub read it: reload it before editing here.`
      : "";
    return view;
  }

  async function load() {
    const { tenant, path, what } = target();
    if (!tenant) return say("name a tenant", true);
    try {
      const view = await overview();
      const raw = await admin.api("GET", path);
      etag = view.etag;
      text.value = JSON.stringify(raw, null, 2);
      say(`loaded ${what}`);
    } catch (error) {
      say(admin.explain(error), true);
    }
  }

  function newServer() {
    etag = null;
    text.value = JSON.stringify({ command: "npx", args: ["-y", "@modelcontextprotocol/server-memory"] }, null, 2);
    say("a new server: name it above, edit, then save");
  }

  async function save() {
    const { tenant, path, what } = target();
    if (!tenant) return say("name a tenant", true);
    let spec;
    try {
      spec = JSON.parse(text.value);
    } catch (error) {
      return say(`not JSON: ${error.message}`, true);
    }
    try {
      const current = etag || (await overview()).etag;
      const answer = await admin.api("PUT", path, spec, { "If-Match": current });
      etag = answer.etag;
      say(`${answer.created ? "added" : "saved"} ${what}`);
      admin.refresh();
    } catch (error) {
      if (error.status === 412) etag = null;
      say(error.status === 412 ? "someone changed the configuration since you loaded it: load it again" : admin.explain(error), true);
    }
  }

  async function remove() {
    const { tenant, path, what } = target();
    if (!tenant || !window.confirm(`Remove ${what} from the configuration?`)) return;
    try {
      const current = etag || (await overview()).etag;
      const answer = await admin.api("DELETE", path, undefined, { "If-Match": current });
      etag = answer.etag;
      text.value = "";
      say(`removed ${what}`);
      admin.refresh();
    } catch (error) {
      say(admin.explain(error), true);
    }
  }

  const section = el(
    "section",
    { id: "config" },
    el("h2", { text: "Configuration" }),
    el(
      "p",
      { class: "muted" },
      "Add, change or remove a tenant or a server: it is checked like ",
      el("code", { text: "hub check" }),
      " does, written back to the configuration file (its comments kept) and applied at once.",
    ),
    warning,
    el(
      "div",
      { class: "config-target" },
      tenantInput,
      serverInput,
      el("button", { type: "button", id: "config-load", onclick: load, text: "load" }),
      el("button", { type: "button", id: "config-new", onclick: newServer, text: "new server" }),
      el("button", { type: "button", id: "config-save", class: "primary", onclick: save, text: "save" }),
      el("button", { type: "button", id: "config-remove", onclick: remove, text: "remove" }),
    ),
    text,
    status,
  );
  document.getElementById("panel").append(section);
  admin.onStart(() => overview().catch(() => {}));
})();
