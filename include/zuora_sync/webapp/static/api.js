/* Talking to the web app: JSON requests, a lost login, links into the Airflow UI, the UI's theme. */

import { $, el } from "./dom.js";
import { AIRFLOW, APP, state } from "./state.js";

// ------------------------------------------------------------------ the web app

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.message)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options) {
  const response = await fetch(new URL(path, APP), {
    credentials: "same-origin",
    headers: { "Accept": "application/json", ...(options && options.body ? { "Content-Type": "application/json" } : {}) },
    ...options,
  });
  let body = null;
  const text = await response.text();
  if (text) {
    try { body = JSON.parse(text); } catch (e) { body = { detail: text.slice(0, 300) }; }
  }
  // 401, or Airflow's 403 for a token it cannot read: the login is gone. Any other 403 is a
  // permission this user lacks (the caller says which); the page stays usable.
  if (response.status === 401 || (response.status === 403 && body && body.detail === "Invalid JWT token")) {
    showLoggedOut();
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function showLoggedOut() {
  if (state.loggedOut) return;
  state.loggedOut = true;
  $("session-ended").hidden = false;
  $("status-state").textContent = "stopped: not logged in";
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === "" || value === null || value === undefined) continue;
    search.append(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// Links to Airflow's own pages. The Airflow UI shows this page in a sandboxed iframe that may
// not navigate the top window itself, so the link moves the UI's (same-origin) router instead,
// as a click on one of its own links would; opened on its own, the link just works.
function airflowLink(path, text, label) {
  const href = new URL(path, AIRFLOW).toString();
  return el("a", { href, target: "_top", class: "airflow-link", "aria-label": label || null }, text);
}

function navigateTop(href) {
  try {
    const top = window.top;
    if (!top || top === window || top.location.origin !== window.location.origin) return false;
    const url = new URL(href);
    const current = top.history.state;
    const idx = current && typeof current.idx === "number" ? current.idx + 1 : 0;
    const next = { usr: null, key: Math.random().toString(36).slice(2, 10), idx };
    top.history.pushState(next, "", url.pathname + url.search + url.hash);
    top.dispatchEvent(new PopStateEvent("popstate", { state: next }));
    return true;
  } catch (e) {
    return false;
  }
}

document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest("a.airflow-link");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  if (navigateTop(link.href)) event.preventDefault();
});

// Light or dark, as the Airflow UI around the page is (or as the system prefers).
function syncTheme() {
  let dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  try {
    if (window.top !== window) {
      const root = window.top.document.documentElement;
      if (root.classList.contains("dark")) dark = true;
      else if (root.classList.contains("light")) dark = false;
      else if (root.style.colorScheme) dark = root.style.colorScheme === "dark";
    }
  } catch (e) { /* not same-origin: keep the system's preference */ }
  document.documentElement.classList.toggle("dark", dark);
}

export { ApiError, api, showLoggedOut, query, airflowLink, navigateTop, syncTheme };
