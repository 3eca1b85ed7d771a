// MCP Hub admin panel: pinned tools (docs/security.md, "Pinned tools"), over window.hubAdmin
// (admin.js).
//
// A section that lists each server whose tools differ from those an admin approved (its status says
// catalog "pending_approval"): the pinning mode, the tools held, the diff per tool (each changed
// field as approved and as the server shows it now) and the buttons "Approve" and "Reject", which
// send the digest of the diff shown (a diff that changed since is refused, 412, and shown anew).
// It is drawn at the panel's start and again after the live events that may change it
// (`pins_changed`, `server_status`). Every text from the hub reaches the DOM as text.
"use strict";

(() => {
  const admin = window.hubAdmin;
  const { el } = admin;
  const seg = encodeURIComponent;
  let generation = 0; // each update's number: an older update's answers are dropped
  let timer = null;

  const none = el("p", { id: "pins-none", class: "muted" }, "No server has changed tools waiting for approval.");
  const list = el("div", { id: "pins-list" });
  const section = el(
    "section",
    { id: "pins" },
    el("h2", {}, "Pinned tools"),
    el(
      "p",
      { class: "muted" },
      "Servers whose tools changed since they were approved. Under pinning enforce the changed and " +
        "new tools are hidden and refused until you approve; under warn they stay, and this warns.",
    ),
    none,
    list,
  );
  document.getElementById("servers").closest("section").after(section);

  const shown = (value) =>
    value === null || value === undefined
      ? "—"
      : typeof value === "string"
        ? value
        : JSON.stringify(value, null, 1);

  function diffTable(view) {
    const rows = [];
    for (const change of view.diff) {
      Object.entries(change.fields).forEach(([field, values], index) => {
        rows.push(
          el(
            "tr",
            { "data-tool": change.tool, class: `pin-${change.change}` },
            el("td", { text: index === 0 ? change.tool : "" }),
            el("td", { text: index === 0 ? change.change : "" }),
            el("td", { text: field }),
            el("td", {}, el("pre", { class: "before", text: shown(values.before) })),
            el("td", {}, el("pre", { class: "after", text: shown(values.after) })),
          ),
        );
      });
    }
    const head = el("tr", {}, ...["tool", "change", "field", "approved", "now"].map((h) => el("th", { text: h })));
    return el("table", { class: "pin-diff" }, el("thead", {}, head), el("tbody", {}, ...rows));
  }

  function card(view) {
    const said = el("p", { class: "pin-said", role: "alert", hidden: true });
    const decide = async (action, button) => {
      button.disabled = true;
      try {
        const path = `/api/servers/${seg(view.tenant)}/${seg(view.server)}/pins/${action}`;
        await admin.api("POST", path, { digest: view.digest });
        admin.refresh(); // (the tools it held are listed again)
        await update();
      } catch (error) {
        said.textContent = `${action} failed: ${admin.explain(error)}`;
        said.hidden = false;
        button.disabled = false;
      }
    };
    const approve = el("button", { type: "button", class: "primary approve", text: "Approve" });
    approve.addEventListener("click", () => decide("approve", approve));
    const reject = el("button", { type: "button", class: "reject", text: "Reject" });
    reject.addEventListener("click", () => decide("reject", reject));
    const held = view.held.length ? `held: ${view.held.join(", ")}` : "nothing held";
    return el(
      "div",
      { class: "pin-card", "data-tenant": view.tenant, "data-server": view.server },
      el(
        "h3",
        {},
        `${view.tenant}/${view.server} `,
        el("span", { class: "badge pin-state", text: view.state.replace("_", " ") }),
      ),
      el("p", { class: "muted", text: `pinning ${view.pinning}; ${held}` }),
      diffTable(view),
      el("div", { class: "pin-actions" }, approve, reject),
      said,
    );
  }

  /** Fetch the servers, and the pins of each whose tools differ; draw them. */
  async function update() {
    const mine = ++generation;
    try {
      const servers = (await admin.api("GET", "/api/servers")).servers;
      const pending = servers.filter((s) => s.catalog === "pending_approval");
      const views = await Promise.all(
        pending.map((s) => admin.api("GET", `/api/servers/${seg(s.tenant)}/${seg(s.server)}/pins`).catch(() => null)),
      );
      if (mine !== generation) return;
      const cards = views.filter((v) => v && v.diff.length).map(card);
      list.replaceChildren(...cards);
      none.hidden = cards.length > 0;
    } catch (_) {
      // (the hub is unreachable or the key was refused: admin.js says so)
    }
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(update, 250);
  }

  admin.onEvent((frame) => {
    if (frame.type === "pins_changed" || frame.type === "server_status") soon();
  });
  admin.onStart(update);
})();
