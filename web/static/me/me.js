// The page of /me/credentials/<server>: a user sets their own values for a per_user server's
// variables (PUT /api/me/credentials/<server>), sees which are set (GET, never a value) and forgets
// them (DELETE). The key is typed once and kept in the tab's sessionStorage; inputs are password
// fields, never prefilled, and cleared after each save.
"use strict";

(() => {
  const KEY_ITEM = "mcp-hub-me-key";
  // An admin who came from the panel in this tab is signed in already (its key, the same origin).
  if (!sessionStorage.getItem(KEY_ITEM) && sessionStorage.getItem("mcp-hub-admin-key")) {
    sessionStorage.setItem(KEY_ITEM, sessionStorage.getItem("mcp-hub-admin-key"));
  }
  const server = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const tenant = new URLSearchParams(location.search).get("tenant");
  const api = "/api/me/credentials/" + encodeURIComponent(server) +
    (tenant ? "?tenant=" + encodeURIComponent(tenant) : "");
  const $ = (id) => document.getElementById(id);

  function notice(text) {
    $("notice").textContent = text;
    $("notice").hidden = !text;
  }

  async function call(method, body) {
    const headers = { "Content-Type": "application/json" };
    const key = sessionStorage.getItem(KEY_ITEM);
    if (key) headers.Authorization = "Bearer " + key;
    const answer = await fetch(api, { method, headers, body: body ? JSON.stringify(body) : undefined });
    const data = await answer.json().catch(() => ({}));
    if (answer.status === 401) {
      sessionStorage.removeItem(KEY_ITEM);
      showSignin();
      throw new Error("that key is not valid here");
    }
    if (!answer.ok) throw new Error((data.error && data.error.message) || "HTTP " + answer.status);
    return data;
  }

  function render(data) {
    const box = $("variables");
    box.replaceChildren();
    for (const variable of data.variables) {
      const row = document.createElement("p");
      const label = document.createElement("label");
      label.htmlFor = "var-" + variable.name;
      label.textContent = variable.name + (variable.set ? " (set)" : " (not set)");
      const input = document.createElement("input");
      input.id = "var-" + variable.name;
      input.name = variable.name;
      input.type = "password";
      input.autocomplete = "off";
      input.spellcheck = false;
      input.placeholder = variable.set ? "set: leave empty to keep it" : "not set";
      row.append(label, " ", input);
      box.append(row);
    }
    $("server").textContent = data.server;
    $("panel").hidden = false;
    $("signin").hidden = true;
    $("signout").hidden = !sessionStorage.getItem(KEY_ITEM);
  }

  function showSignin() {
    $("panel").hidden = true;
    $("signin").hidden = false;
  }

  async function load() {
    try {
      render(await call("GET"));
      notice("");
    } catch (error) {
      notice(error.message);
    }
  }

  $("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_ITEM, $("signin-key").value);
    $("signin-key").value = "";
    load();
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_ITEM);
    showSignin();
  });
  $("credentials").addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = {};
    for (const input of $("variables").querySelectorAll("input")) {
      if (input.value) values[input.name] = input.value;
    }
    if (!Object.keys(values).length) return notice("type a value to set");
    try {
      render(await call("PUT", values));
      notice("saved: your next call starts the server with them");
    } catch (error) {
      notice(error.message);
    }
  });
  $("forget").addEventListener("click", async () => {
    try {
      render(await call("DELETE"));
      notice("forgotten");
    } catch (error) {
      notice(error.message);
    }
  });

  if (sessionStorage.getItem(KEY_ITEM)) load();
  else fetch(api).then((a) => (a.status === 401 ? showSignin() : load()));
})();
