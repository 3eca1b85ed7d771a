// MCP Hub admin panel: "Add server", installs from the MCP registries of the hub's configuration.
//
// Search the registries (GET /api/registry/servers), pick an entry, its version (GET
// /api/registry/servers/{name}/versions/{version}) and what to install (a package or a remote);
// the values it declares become fields (secret ones as password fields, required ones required);
// then a tenant and a server name, and POST /api/admin/tenants/{t}/servers/{s}/install. The new
// server then shows in the Servers table by the panel's live events (admin.js, whose `hubAdmin`
// makes the calls with the tab's key); every text from the hub or a registry reaches the DOM as text.
"use strict";

(() => {
  const { api, el, explain } = window.hubAdmin; // (admin.js: the key, the calls, the elements)
  const seg = encodeURIComponent;
  const $ = (id) => document.getElementById(id);
  let chosen = null; // {entry, listed} of the picked entry

  function say(id, message, isError) {
    const box = $(id);
    box.textContent = message;
    box.classList.toggle("error", Boolean(isError));
    box.hidden = !message;
  }

  // ---------------------------------------------------------------------------- the section

  function build() {
    const section = el(
      "section",
      { id: "registry" },
      el("h2", {}, "Add server", el("span", { class: "muted", text: "from an MCP registry" })),
      el(
        "form",
        { id: "registry-search", class: "registry-search" },
        el("input", {
          id: "registry-query",
          type: "search",
          placeholder: "search the registries by name",
          "aria-label": "search the registries",
        }),
        el("button", { type: "submit", class: "primary", text: "search" }),
      ),
      el("p", { id: "registry-status", class: "muted", hidden: true }),
      el("ul", { id: "registry-errors", class: "registry-errors" }),
      el(
        "form",
        { id: "registry-install", class: "try registry-install", hidden: true },
        el("h3", { id: "registry-chosen", class: "registry-chosen" }),
        el("p", { id: "registry-about", class: "muted registry-about" }),
        el("label", { for: "registry-version", text: "version" }),
        el("div", { class: "field" }, el("select", { id: "registry-version" })),
        el("label", { for: "registry-kind", text: "install as" }),
        el("div", { class: "field" }, el("select", { id: "registry-kind" })),
        el("div", { id: "registry-fields", class: "registry-fields" }),
        el("label", { for: "registry-tenant", text: "tenant" }),
        el("div", { class: "field" }, el("select", { id: "registry-tenant", required: true })),
        el("label", { for: "registry-server", text: "server name" }),
        el(
          "div",
          { class: "field" },
          el("input", { id: "registry-server", type: "text", required: true, pattern: "[A-Za-z0-9_\\-]{1,32}" }),
          el("span", { class: "hint", text: "letters, digits, _ and -, at most 32" }),
        ),
        el("div", { class: "submit" }, el("button", { type: "submit", class: "primary", text: "Install" })),
        el("p", { id: "registry-result", class: "result", hidden: true, role: "status" }),
      ),
      el("ul", { id: "registry-results", class: "registry-results" }),
    );
    const servers = $("servers").closest("section");
    servers.after(section);
    $("registry-search").addEventListener("submit", (event) => {
      event.preventDefault();
      search();
    });
    $("registry-version").addEventListener("change", () => pickVersion($("registry-version").value));
    $("registry-kind").addEventListener("change", drawFields);
    $("registry-install").addEventListener("submit", (event) => {
      event.preventDefault();
      install();
    });
    $("signout").addEventListener("click", reset);
  }

  function reset() {
    chosen = null;
    $("registry-results").replaceChildren();
    $("registry-errors").replaceChildren();
    $("registry-install").hidden = true;
    $("registry-fields").replaceChildren();
    say("registry-status", "");
  }

  // ---------------------------------------------------------------------------- search

  async function search() {
    const query = $("registry-query").value.trim();
    say("registry-status", "searching…");
    try {
      const listing = await api("GET", `/api/registry/servers?search=${seg(query)}`);
      const count = listing.servers.length;
      const more = listing.truncated ? " (more than shown: narrow the search)" : "";
      say("registry-status", `${count} server${count === 1 ? "" : "s"} found${more}`);
      $("registry-errors").replaceChildren(
        ...listing.errors.map((e) => el("li", { class: "error", text: `${e.registry} (${e.url}): ${e.message}` })),
      );
      $("registry-results").replaceChildren(...listing.servers.map(resultRow));
    } catch (error) {
      say("registry-status", explain(error), true);
    }
  }

  function resultRow(listed) {
    const kinds = listed.installs.map((i) => i.kind).join(", ") || "nothing to install";
    const pick = el("button", {
      type: "button",
      class: "pick",
      text: "choose",
      "aria-label": `choose ${listed.name}`,
      onclick: () => choose(listed),
    });
    return el(
      "li",
      { "data-name": listed.name, "data-registry": listed.registry_url },
      el("span", { class: "name", text: listed.title || listed.name }),
      el("span", { class: "muted", text: ` ${listed.name} ${listed.version} · ${kinds} · ${listed.registry}` }),
      listed.status !== "active" ? el("span", { class: "error", text: ` ${listed.status}` }) : null,
      el("div", { class: "description", text: listed.description }),
      pick,
    );
  }

  // ---------------------------------------------------------------------------- the install form

  async function choose(listed) {
    chosen = { listed, entry: listed };
    $("registry-chosen").textContent = listed.title || listed.name;
    $("registry-about").textContent = `${listed.name} · ${listed.description}`;
    const versions = $("registry-version");
    versions.replaceChildren(...listed.versions.map((v) => el("option", { value: v, text: v })));
    versions.value = listed.version;
    $("registry-server").value = suggestedName(listed.name);
    say("registry-result", "");
    drawKinds();
    $("registry-install").hidden = false;
    $("registry-install").scrollIntoView({ block: "nearest" });
    await tenants();
  }

  async function pickVersion(version) {
    const { listed } = chosen;
    try {
      const path = `/api/registry/servers/${seg(listed.name)}/versions/${seg(version)}`;
      chosen.entry = await api("GET", `${path}?registry=${seg(listed.registry_url)}`);
      drawKinds();
    } catch (error) {
      say("registry-result", explain(error), true);
    }
  }

  function suggestedName(name) {
    const last = name.split("/").pop().replace(/^(mcp-)?server-/, "").replace(/[^A-Za-z0-9_-]/g, "-");
    return last.slice(0, 32) || "server";
  }

  async function tenants() {
    const select = $("registry-tenant");
    const keep = select.value;
    const answer = await api("GET", "/api/tenants");
    select.replaceChildren(...answer.tenants.map((t) => el("option", { value: t.name, text: t.name })));
    if (keep && answer.tenants.some((t) => t.name === keep)) select.value = keep;
  }

  function drawKinds() {
    const select = $("registry-kind");
    const installs = chosen.entry.installs;
    select.replaceChildren(
      ...installs.map((i) => {
        const what = i.identifier ? `${i.kind} ${i.identifier}@${i.version}` : `${i.kind} ${i.url}`;
        const text = i.installable ? what : `${what} (${i.why_not})`;
        return el("option", { value: i.id, text, disabled: !i.installable });
      }),
    );
    const first = installs.find((i) => i.installable);
    if (first) select.value = first.id;
    drawFields();
  }

  function fieldInput(field, id) {
    if (field.choices.length) {
      const select = el(
        "select",
        { id, required: field.is_required },
        field.is_required ? null : el("option", { value: "", text: "(not set)" }),
        ...field.choices.map((c) => el("option", { value: c, text: c })),
      );
      if (field.default) select.value = field.default;
      return select;
    }
    const type = field.is_secret ? "password" : field.format === "number" ? "number" : "text";
    return el("input", {
      id,
      type,
      required: field.is_required,
      autocomplete: field.is_secret ? "new-password" : "off",
      value: field.is_secret ? "" : field.default || "",
      placeholder: field.placeholder || (field.is_secret && field.default ? "(default)" : ""),
    });
  }

  function drawFields() {
    const box = $("registry-fields");
    const install = chosen.entry.installs.find((i) => i.id === $("registry-kind").value);
    const rows = [];
    (install ? install.fields : []).forEach((field, i) => {
      if (field.fixed) return; // (the publisher set it: it comes with the entry)
      const id = `registry-field-${i}`;
      const input = fieldInput(field, id);
      input.name = field.key;
      input.dataset.key = field.key;
      const kind = { env: "environment variable", argument: "argument", header: "header", variable: "variable" };
      const hint = [kind[field.kind] || field.kind, field.description].filter(Boolean).join(" · ");
      rows.push(
        el("label", { for: id }, field.name, field.is_required ? el("span", { class: "required", text: " *" }) : null),
        el("div", { class: "field" }, input, el("span", { class: "hint", text: hint })),
      );
    });
    box.replaceChildren(...rows);
  }

  async function install() {
    const form = $("registry-install");
    if (!form.reportValidity()) return;
    const values = {};
    for (const input of $("registry-fields").querySelectorAll("[data-key]")) {
      if (input.value !== "") values[input.dataset.key] = input.value;
    }
    const tenant = $("registry-tenant").value;
    const server = $("registry-server").value.trim();
    const body = {
      registry: chosen.entry.registry_url,
      name: chosen.entry.name,
      version: $("registry-version").value,
      install: $("registry-kind").value,
      values,
    };
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    say("registry-result", "installing…");
    try {
      const done = await api("POST", `/api/admin/tenants/${seg(tenant)}/servers/${seg(server)}/install`, body);
      say("registry-result", `installed ${done.tenant}/${done.server}`);
      for (const input of $("registry-fields").querySelectorAll("input[type=password]")) input.value = "";
    } catch (error) {
      say("registry-result", explain(error), true);
    } finally {
      button.disabled = false;
    }
  }

  build();
})();
