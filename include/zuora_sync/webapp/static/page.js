/* The Zuora Sync page: status (live), sync history, charts, rejected records, settings, events.
 *
 * Plain JavaScript, no build step, no third-party code. Every value from the server goes into
 * the page as text (textContent, setAttribute), never as HTML. The page lives in an iframe of the
 * Airflow UI (or on its own at /zuora-sync/ui/); every URL is relative to where it was served.
 */
(function () {
  "use strict";

  const APP = new URL("../", window.location.href);          // /zuora-sync/
  const AIRFLOW = new URL("../../", window.location.href);   // the Airflow UI's root
  const POLL_MS = 5000;
  const HISTORY_PAGE = 25;
  const EVENTS_PAGE = 50;
  const REJECTED_PAGE = 100;

  const state = {
    status: null,
    lastSessionKey: null,
    filters: { since: "", until: "", type: "", status: "" },
    offset: 0,
    total: 0,
    historyRows: [],
    detailId: null,
    detailReturnFocus: null,
    rejectedOffset: 0,
    eventsOffset: 0,
    eventsTotal: null,
    settings: null,
    allowed: null,
    me: null,
    canChangeMode: null,
    modeTouched: false,
    chartsStale: true,
    loggedOut: false,
  };

  // ------------------------------------------------------------------ helpers

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) if (child) node.append(child);
    return node;
  }

  const numberFormat = new Intl.NumberFormat();
  const fmtNumber = (n) => (n === null || n === undefined ? "—" : numberFormat.format(n));
  const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  // In tables: no year when it is this year's.
  const compactFormat = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  const thisYear = new Date().getFullYear();
  const tableTime = (iso) => timeEl(iso, iso && new Date(iso).getFullYear() === thisYear ? compactFormat : dateTimeFormat);
  const shortFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  const dayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
  const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

  function timeEl(iso, format) {
    if (!iso) return el("span", { class: "muted", text: "—" });
    const date = new Date(iso);
    return el("time", { datetime: iso, title: date.toISOString() }, (format || dateTimeFormat).format(date));
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
    const h = Math.floor(m / 60);
    return `${h} h ${String(m % 60).padStart(2, "0")} min`;
  }

  function fmtAgo(iso) {
    if (!iso) return "";
    const minutes = Math.round((Date.now() - new Date(iso).getTime()) / 60000);
    if (minutes < 1) return "just now";
    if (minutes < 60) return `${minutes} min ago`;
    const hours = Math.round(minutes / 60);
    if (hours < 48) return `${hours} h ago`;
    return `${Math.round(hours / 24)} days ago`;
  }

  function statusClass(status) {
    return {
      "Finished": "finished", "Finished with Errors": "errors", "Failure": "failure",
      "Sync Clean-up": "cleanup", "Stopped": "stopped", "Running": "running",
    }[status] || "";
  }

  function statusBadge(session) {
    const badge = el("span", { class: `status-badge ${statusClass(session.display_status)}`, text: session.display_status });
    if (session.display_status !== session.status) {
      return el("span", {}, badge, " ", el("span", { class: "muted", text: `(${session.status})` }));
    }
    return badge;
  }

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

  // ------------------------------------------------------------------ tabs

  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));

  function selectTab(tab, focus) {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      $(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
    onTabShown(tab.id);
  }

  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab, false));
    tab.addEventListener("keydown", (event) => {
      const index = tabs.indexOf(tab);
      let next = null;
      if (event.key === "ArrowRight") next = tabs[(index + 1) % tabs.length];
      else if (event.key === "ArrowLeft") next = tabs[(index - 1 + tabs.length) % tabs.length];
      else if (event.key === "Home") next = tabs[0];
      else if (event.key === "End") next = tabs[tabs.length - 1];
      if (next) {
        event.preventDefault();
        selectTab(next, true);
      }
    });
  }

  function currentTab() {
    return tabs.find((t) => t.getAttribute("aria-selected") === "true").id;
  }

  function onTabShown(id) {
    if (id === "tab-charts" && state.chartsStale) loadCharts();
    if (id === "tab-events") loadEvents();
    if (id === "tab-settings" && !state.settings) loadSettings();
  }

  // ------------------------------------------------------------------ status (live)

  function renderStatus(status) {
    state.status = status;
    const mode = status.mode || {};
    const modeName = mode.mode || "unknown";
    $("mode").textContent = modeName;
    const note = $("mode-note");
    note.replaceChildren();
    if (modeName === "Real-time") {
      note.append(airflowLink("dags/zuora_realtime_sync", "zuora_realtime_sync"), " unpaused");
    } else if (modeName === "Scheduled") {
      note.append(airflowLink("dags/zuora_incremental_sync", "zuora_incremental_sync"), " unpaused");
    } else if (modeName === "None") {
      note.append("both sync DAGs paused: manual syncs only");
    }

    const next = $("next-sync");
    next.replaceChildren();
    const upcoming = status.next_sync;
    if (!upcoming) {
      next.append(el("span", { class: "error", text: status.settings_error
        ? `The settings are invalid: ${status.settings_error}` : "Not known" }));
      next.removeAttribute("data-events-needed");
    } else {
      next.dataset.eventsNeeded = String(upcoming.events_needed);
      next.dataset.minutesLeft = String(upcoming.minutes_left);
      if (modeName === "Real-time") {
        next.append(el("span", { id: "next-sync-message", text: upcoming.message }));
      } else if (upcoming.mode_change) {
        next.append(el("span", { class: "muted", text: "Real-time sync is off. " }),
          el("span", { id: "next-sync-message", text: "Switched to Real-time, it starts at once with a full sync." }));
      } else {
        next.append(el("span", { class: "muted", text: "Real-time sync is off. When on: " }),
          el("span", { id: "next-sync-message", text: upcoming.message }));
      }
    }

    $("pending-count").textContent = fmtNumber(status.pending_events);
    $("events-badge").textContent = status.pending_events ? fmtNumber(status.pending_events) : "";

    const last = $("last-session");
    last.replaceChildren();
    const session = status.last_session;
    if (session) {
      const displayStatus = session.session_type === "Sync Clean-up" ? "Sync Clean-up" : session.status;
      last.append(
        el("button", { type: "button", class: "session-link", text: `#${session.id}`,
                       "aria-label": `Open session ${session.id}`, onclick: () => openSession(session.id) }),
        ` ${session.session_type} · `,
        el("span", { class: `status-badge ${statusClass(displayStatus)}`, text: displayStatus }),
        el("span", { class: "muted", text: session.ended_at ? ` · ended ${fmtAgo(session.ended_at)}`
          : ` · started ${fmtAgo(session.started_at)}` }));
    } else {
      last.append(el("span", { class: "muted", text: "No session yet" }));
    }

    const warnings = [];
    if (mode.warning) warnings.push(mode.warning);
    for (const [scope, holder] of Object.entries(status.locks || {})) warnings.push(`Running: ${holder} holds the ${scope} lock`);
    const warning = $("status-warning");
    warning.hidden = warnings.length === 0;
    warning.textContent = warnings.join(" · ");

    syncModeChoice(modeName);

    const stamp = new Date(status.now || Date.now());
    $("status-state").textContent = `updated ${stamp.toLocaleTimeString()}`;

    // A session began or ended: the history, the charts and the events change with it.
    const key = session ? `${session.id}/${session.status}/${session.ended_at}` : "none";
    if (state.lastSessionKey !== null && key !== state.lastSessionKey) {
      loadHistory();
      state.chartsStale = true;
      if (currentTab() === "tab-charts") loadCharts();
    } else if (state.historyRows.some((row) => row.status === "Running")) {
      loadHistory();
    }
    state.lastSessionKey = key;
    if (currentTab() === "tab-events" && state.eventsTotal !== status.pending_events) loadEvents();
  }

  let pollTimer = null;
  async function pollStatus() {
    clearTimeout(pollTimer);
    if (!document.hidden && !state.loggedOut) {
      try {
        renderStatus(await api("status"));
        syncTheme();
      } catch (error) {
        if (!state.loggedOut) $("status-state").textContent = `could not be read (${error.message}); retrying`;
      }
    }
    if (!state.loggedOut) pollTimer = setTimeout(pollStatus, POLL_MS);
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden) pollStatus(); });

  // ------------------------------------------------------------------ sync history

  function localDayStart(value, plusDays) {
    const [y, m, d] = value.split("-").map(Number);
    return new Date(y, m - 1, d + (plusDays || 0));
  }

  function filterParams() {
    const f = state.filters;
    return {
      since: f.since ? localDayStart(f.since).toISOString() : "",
      until: f.until ? localDayStart(f.until, 1).toISOString() : "",
      type: f.type,
      status: f.status,
    };
  }

  function fillSelect(select, values, labels) {
    const keep = select.value;
    const first = select.options[0];
    select.replaceChildren(first);
    for (const value of values) select.append(el("option", { value, text: (labels && labels[value]) || value }));
    select.value = keep;
  }

  async function loadHistory() {
    const summary = $("history-summary");
    try {
      const answer = await api(`sessions${query({ ...filterParams(), limit: HISTORY_PAGE, offset: state.offset })}`);
      if (!$("f-type").options[1]) fillSelect($("f-type"), answer.types);
      if (!$("f-status").options[1]) fillSelect($("f-status"), answer.statuses);
      state.total = answer.total;
      state.historyRows = answer.sessions;
      renderHistory(answer);
    } catch (error) {
      summary.textContent = `The sync history could not be read: ${error.message}`;
    }
  }

  function renderHistory(answer) {
    const body = document.querySelector("#sessions tbody");
    body.replaceChildren();
    if (!answer.sessions.length) {
      body.append(el("tr", {}, el("td", { colspan: 12, class: "empty", text: "No sessions match these filters." })));
    }
    for (const s of answer.sessions) {
      const t = s.totals;
      body.append(el("tr", { "data-session-id": s.id },
        el("td", {}, el("button", { type: "button", class: "session-link", text: `#${s.id}`,
                                    "aria-label": `Open session ${s.id}: counts per object and rejected records`,
                                    onclick: (event) => openSession(s.id, event.currentTarget) })),
        el("td", {}, s.type, s.dry_run ? el("span", { class: "muted", text: " (dry run)" }) : null),
        el("td", { text: s.trigger }),
        el("td", {}, tableTime(s.started_at)),
        el("td", { class: "num", text: fmtDuration(s.duration_seconds) }),
        el("td", {}, statusBadge(s)),
        el("td", { class: "num", "data-count": "extracted", text: fmtNumber(t.extracted) }),
        el("td", { class: "num", "data-count": "upserted", text: fmtNumber(t.upserted) }),
        el("td", { class: "num", "data-count": "deleted", text: fmtNumber(t.deleted) }),
        el("td", { class: "num", "data-count": "rejected", text: fmtNumber(t.failed) }),
        el("td", { class: "num", text: `${fmtNumber(s.api_calls.zuora)} / ${fmtNumber(s.api_calls.salesforce)}` }),
        el("td", {}, s.dag_run_path ? airflowLink(s.dag_run_path, "DAG run", `Airflow DAG run of session ${s.id}`) : "—")));
    }
    const first = answer.total ? answer.offset + 1 : 0;
    const last = answer.offset + answer.sessions.length;
    $("history-summary").textContent = answer.total
      ? `Sessions ${fmtNumber(first)}–${fmtNumber(last)} of ${fmtNumber(answer.total)}, newest first; times in ${timeZone}.`
      : "No sessions.";
    $("page-label").textContent = answer.total ? `Page ${Math.floor(answer.offset / HISTORY_PAGE) + 1} of ${Math.max(1, Math.ceil(answer.total / HISTORY_PAGE))}` : "";
    $("page-newer").disabled = answer.offset === 0;
    $("page-older").disabled = last >= answer.total;
  }

  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const since = $("f-since").value;
    const until = $("f-until").value;
    const error = $("filter-error");
    if (since && until && since > until) {
      error.hidden = false;
      error.textContent = "“From” must not be after “To”.";
      $("f-since").setAttribute("aria-invalid", "true");
      $("f-since").focus();
      return;
    }
    error.hidden = true;
    $("f-since").removeAttribute("aria-invalid");
    state.filters = { since, until, type: $("f-type").value, status: $("f-status").value };
    state.offset = 0;
    state.chartsStale = true;
    loadHistory();
  });

  $("f-reset").addEventListener("click", () => {
    for (const id of ["f-since", "f-until", "f-type", "f-status"]) $(id).value = "";
    $("filters").requestSubmit();
  });

  $("page-newer").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - HISTORY_PAGE);
    loadHistory();
  });
  $("page-older").addEventListener("click", () => {
    state.offset += HISTORY_PAGE;
    loadHistory();
  });

  // ------------------------------------------------------------------ one session

  async function openSession(id, returnFocus) {
    if (currentTab() !== "tab-history") selectTab($("tab-history"), false);
    state.detailId = id;
    state.detailReturnFocus = returnFocus || null;
    state.rejectedOffset = 0;
    $("history-list").hidden = true;
    $("session-detail").hidden = false;
    $("detail-title").textContent = `Session #${id}`;
    $("detail-facts").replaceChildren();
    document.querySelector("#detail-objects tbody").replaceChildren();
    document.querySelector("#rejected tbody").replaceChildren();
    $("rejected-summary").textContent = "Loading…";
    $("rejected-download").href = new URL(`sessions/${id}/rejected.csv`, APP).toString();
    $("detail-title").focus();
    try {
      const session = await api(`sessions/${id}`);
      if (state.detailId !== id) return;
      renderSession(session);
      await loadRejected(true);
    } catch (error) {
      $("detail-error").hidden = false;
      $("detail-error").textContent = `The session could not be read: ${error.message}`;
    }
  }

  function renderSession(s) {
    $("detail-title").textContent = `Session #${s.id}: ${s.type}, ${s.display_status}`;
    const facts = $("detail-facts");
    facts.replaceChildren();
    const fact = (name, ...value) => facts.append(el("dt", { text: name }), el("dd", {}, ...value));
    fact("Type", s.type + (s.dry_run ? " (dry run)" : ""));
    fact("Status", statusBadge(s));
    fact("Trigger", s.trigger);
    fact("Started", timeEl(s.started_at));
    fact("Ended", timeEl(s.ended_at));
    fact("Duration", fmtDuration(s.duration_seconds));
    if (s.window_start || s.window_end) fact("Changes from", timeEl(s.window_start), " to ", timeEl(s.window_end));
    fact("API requests", `Zuora ${fmtNumber(s.api_calls.zuora)}, Salesforce ${fmtNumber(s.api_calls.salesforce)}`);
    fact("Airflow", s.dag_run_path ? airflowLink(s.dag_run_path, `${s.dag_id} · ${s.run_id}`) : "—");
    for (const [key, value] of Object.entries(s.details || {})) {
      fact(key.replace(/_/g, " "), typeof value === "object" ? JSON.stringify(value) : String(value));
    }
    const error = $("detail-error");
    error.hidden = !s.error;
    error.textContent = s.error ? `Error: ${s.error}` : "";

    const body = document.querySelector("#detail-objects tbody");
    body.replaceChildren();
    const names = Object.keys(s.objects);
    if (!names.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "empty", text: "No counts recorded." })));
    for (const name of names) {
      const c = s.objects[name];
      body.append(el("tr", { "data-object": name },
        el("th", { scope: "row", text: name }),
        el("td", { class: "num", "data-count": "extracted", text: fmtNumber(c.extracted) }),
        el("td", { class: "num", "data-count": "upserted", text: fmtNumber(c.upserted) }),
        el("td", { class: "num", "data-count": "deleted", text: fmtNumber(c.deleted) }),
        el("td", { class: "num", "data-count": "failed", text: fmtNumber(c.failed) })));
    }
    if (names.length > 1) {
      const t = s.totals;
      body.append(el("tr", {},
        el("th", { scope: "row", text: "All objects" }),
        el("td", { class: "num", text: fmtNumber(t.extracted) }), el("td", { class: "num", text: fmtNumber(t.upserted) }),
        el("td", { class: "num", text: fmtNumber(t.deleted) }), el("td", { class: "num", text: fmtNumber(t.failed) })));
    }
  }

  async function loadRejected(reset) {
    const id = state.detailId;
    if (reset) state.rejectedOffset = 0;
    let answer;
    try {
      answer = await api(`sessions/${id}/rejected${query({ limit: REJECTED_PAGE, offset: state.rejectedOffset })}`);
    } catch (error) {
      if (error.status !== 403 || state.detailId !== id) throw error;
      // Customer data: the Airflow role must allow reading this DAG's task logs and running it.
      $("rejected-download").hidden = true;
      $("rejected-more").hidden = true;
      $("rejected-summary").textContent = "Your Airflow role may not see rejected records (customer data): "
        + "it needs to read this DAG's task logs and to run it.";
      return;
    }
    if (state.detailId !== id) return;
    const body = document.querySelector("#rejected tbody");
    if (reset) body.replaceChildren();
    if (!answer.total) body.append(el("tr", {}, el("td", { colspan: 5, class: "empty", text: "No rejected records." })));
    for (const r of answer.rows) {
      body.append(el("tr", { "data-external-id": r.external_id || "" },
        el("td", { text: r.object }),
        el("td", { text: r.external_id || "—" }),
        el("td", { text: r.error_code }),
        el("td", { class: "wrap", text: r.message }),
        el("td", {}, r.resolved_at ? el("span", {}, "yes, session ", String(r.resolved_by_session)) : el("span", { class: "muted", text: "not yet" }))));
    }
    state.rejectedOffset += answer.rows.length;
    $("rejected-summary").textContent = answer.total
      ? `${fmtNumber(answer.total)} rejected record${answer.total === 1 ? "" : "s"}; showing ${fmtNumber(state.rejectedOffset)}.`
      : "No rejected records.";
    const download = $("rejected-download");
    download.hidden = !answer.total;
    $("rejected-more").hidden = state.rejectedOffset >= answer.total;
  }

  $("rejected-more").addEventListener("click", () => loadRejected(false).catch((error) => {
    $("rejected-summary").textContent = `More rejected records could not be read: ${error.message}`;
  }));

  $("detail-back").addEventListener("click", () => {
    state.detailId = null;
    $("session-detail").hidden = true;
    $("history-list").hidden = false;
    const back = state.detailReturnFocus;
    const row = back && document.contains(back) ? back
      : document.querySelector("#sessions tbody .session-link");
    if (row) row.focus();
  });

  // ------------------------------------------------------------------ charts

  // The top of a y axis with four gridlines at whole, round numbers, at or above ``value``.
  function niceMax(value) {
    const raw = Math.max(value, 1) / 4;
    const exponent = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const multiple of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5, 8, 10]) {
      const step = multiple * exponent;
      if (step >= raw && Number.isInteger(step)) return step * 4;
    }
    return 40 * exponent;
  }

  function chartFrame(width, height, title, description) {
    const titleId = `t${Math.random().toString(36).slice(2, 8)}`;
    return svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": titleId },
      svg("title", { id: titleId, text: `${title}. ${description}` }));
  }

  function yAxis(root, top, left, right, bottom, max) {
    for (let i = 0; i <= 4; i += 1) {
      const value = (max / 4) * i;
      const y = bottom - ((bottom - top) * i) / 4;
      root.append(svg("line", { class: i ? "grid" : "axis", x1: left, x2: right, y1: y, y2: y }));
      root.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", text: fmtNumber(Math.round(value)) }));
    }
  }

  function fillTable(table, headers, rows) {
    table.replaceChildren(
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", { text: c }))))));
  }

  function drawRecordsChart(sessions) {
    const box = $("chart-records");
    box.replaceChildren();
    const points = sessions.slice().reverse();   // oldest first
    const synced = (s) => s.totals.upserted + s.totals.deleted;
    const rejected = (s) => s.totals.failed;
    const legend = el("div", { class: "legend" },
      el("span", {}, el("span", { class: "swatch synced" }), "Synced (upserted + deleted)"),
      el("span", {}, el("span", { class: "swatch rejected" }), "Rejected"));
    if (!points.length) {
      box.append(el("p", { class: "muted", text: "No sessions to chart." }));
      fillTable($("chart-records-table"), ["Session"], []);
      return;
    }
    const width = 1000, height = 190, left = 60, right = 990, top = 12, bottom = 162;
    const max = niceMax(Math.max(1, ...points.map((s) => Math.max(synced(s), rejected(s)))));
    const totalSynced = points.reduce((a, s) => a + synced(s), 0);
    const totalRejected = points.reduce((a, s) => a + rejected(s), 0);
    const root = chartFrame(width, height, "Records synced and rejected per session",
      `${points.length} sessions: ${fmtNumber(totalSynced)} records synced, ${fmtNumber(totalRejected)} rejected`);
    yAxis(root, top, left, right, bottom, max);
    const slot = (right - left) / points.length;
    const bar = Math.max(1, Math.min(24, slot * 0.4));
    const labelEvery = Math.max(1, Math.ceil(points.length / 8));
    const scale = (v) => (v <= 0 ? 0 : Math.max(2, ((bottom - top) * v) / max));
    points.forEach((s, i) => {
      const x = left + slot * i + slot / 2;
      const group = svg("g", {},
        svg("title", { text: `Session ${s.id} (${s.type}, ${s.display_status}), ${shortFormat.format(new Date(s.started_at))}: ` +
                              `${fmtNumber(synced(s))} synced, ${fmtNumber(rejected(s))} rejected` }),
        svg("rect", { class: "synced", x: x - bar, y: bottom - scale(synced(s)), width: bar, height: scale(synced(s)) }),
        svg("rect", { class: "rejected", x, y: bottom - scale(rejected(s)), width: bar, height: scale(rejected(s)) }));
      root.append(group);
      if (i % labelEvery === 0) {
        root.append(svg("text", { x, y: bottom + 16, "text-anchor": "middle", text: shortFormat.format(new Date(s.started_at)) }));
      }
    });
    box.append(legend, root);
    fillTable($("chart-records-table"), ["Session", "Started", "Type", "Status", "Synced", "Rejected"],
      points.map((s) => [`#${s.id}`, dateTimeFormat.format(new Date(s.started_at)), s.type, s.display_status,
        fmtNumber(synced(s)), fmtNumber(rejected(s))]));
  }

  function drawUsageChart(usage) {
    const box = $("chart-usage");
    box.replaceChildren();
    const days = usage.days;
    const allowance = usage.allowance;
    const note = $("allowance-note");
    const highest = Math.max(0, ...days.map((d) => d.salesforce));
    const parts = [];
    if (allowance && allowance.max) {
      parts.push(`Salesforce allows this org ${fmtNumber(allowance.max)} API requests a day; ` +
        `${fmtNumber(allowance.used)} used in the last 24 hours by all clients ` +
        `(checked ${new Date(allowance.checked_at).toLocaleTimeString()}).`);
    } else if (allowance && allowance.remaining === 0) {
      parts.push("Salesforce refuses API requests now: the org's daily allowance is used up.");
    } else {
      parts.push(`The allowance is not known: ${usage.allowance_error || "not read yet"}.`);
    }
    if (usage.reserve !== null && usage.reserve !== undefined) {
      parts.push(`Sessions stop cleanly when fewer than ${fmtNumber(usage.reserve)} remain.`);
    }
    parts.push(`Days in ${usage.timezone}.`);
    const width = 1000, height = 190, left = 60, right = 990, top = 14, bottom = 162;
    let max = niceMax(Math.max(1, highest));
    let showLine = false;
    if (allowance && allowance.max) {
      if (allowance.max <= max * 4) {
        max = niceMax(Math.max(highest, allowance.max));
        showLine = true;
      } else {
        const share = (100 * highest) / allowance.max;
        parts.push(`The allowance line is above this scale: the busiest day used ${share < 0.01 && highest ? "< 0.01" : share.toFixed(2)} % of it.`);
      }
    }
    note.textContent = parts.join(" ");
    const total = days.reduce((a, d) => a + d.salesforce, 0);
    const root = chartFrame(width, height, "Salesforce API requests per day",
      `${days.length} days, ${fmtNumber(total)} requests by sync sessions; busiest day ${fmtNumber(highest)}` +
      (allowance && allowance.max ? `; daily allowance ${fmtNumber(allowance.max)}` : ""));
    yAxis(root, top, left, right, bottom, max);
    const slot = (right - left) / days.length;
    const bar = Math.max(1, Math.min(30, slot * 0.7));
    const labelEvery = Math.max(1, Math.ceil(days.length / 10));
    days.forEach((d, i) => {
      const x = left + slot * i + slot / 2;
      const h = d.salesforce > 0 ? Math.max(2, ((bottom - top) * d.salesforce) / max) : 0;
      const [y0, m0, d0] = d.date.split("-").map(Number);
      const label = dayFormat.format(new Date(y0, m0 - 1, d0));
      root.append(svg("g", {},
        svg("title", { text: `${label}: ${fmtNumber(d.salesforce)} Salesforce requests, ${fmtNumber(d.zuora)} Zuora requests, ${d.sessions} sessions` }),
        svg("rect", { class: "usage", x: x - bar / 2, y: bottom - h, width: bar, height: h })));
      if (i % labelEvery === 0 && (days.length - 1 - i >= labelEvery / 2 || i === days.length - 1 || labelEvery === 1)) {
        root.append(svg("text", { x, y: bottom + 16, "text-anchor": "middle", text: label }));
      }
    });
    if (showLine) {
      const y = bottom - ((bottom - top) * allowance.max) / max;
      root.append(svg("line", { class: "allowance", x1: left, x2: right, y1: y, y2: y }),
        svg("text", { class: "allowance-label", x: right - 4, y: y - 5, "text-anchor": "end",
                      text: `Daily allowance ${fmtNumber(allowance.max)}` }));
    }
    const legend = el("div", { class: "legend" },
      el("span", {}, el("span", { class: "swatch usage" }), "Salesforce requests by sync sessions"),
      showLine ? el("span", {}, el("span", { class: "swatch allowance" }), "Daily allowance") : null);
    box.append(legend, root);
    fillTable($("chart-usage-table"), ["Day", "Salesforce requests", "Zuora requests", "Sessions"],
      days.map((d) => [d.date, fmtNumber(d.salesforce), fmtNumber(d.zuora), fmtNumber(d.sessions)]));
  }

  async function loadCharts() {
    state.chartsStale = false;
    const params = filterParams();
    let days = 30;
    if (state.filters.since) {
      const end = state.filters.until ? localDayStart(state.filters.until, 1) : new Date();
      days = Math.min(366, Math.max(1, Math.ceil((end - localDayStart(state.filters.since)) / 86400000)));
    }
    $("charts-scope").textContent = "The session chart follows the sync history's filters (the latest 500 sessions); " +
      `the usage chart shows the last ${days} days.`;
    const [sessions, usage] = await Promise.allSettled([
      api(`sessions${query({ ...params, limit: 500 })}`),
      api(`api-usage${query({ days, tz: timeZone })}`),
    ]);
    if (sessions.status === "fulfilled") drawRecordsChart(sessions.value.sessions);
    else $("chart-records").replaceChildren(el("p", { class: "error", text: `Could not read the sessions: ${sessions.reason.message}` }));
    if (usage.status === "fulfilled") drawUsageChart(usage.value);
    else $("chart-usage").replaceChildren(el("p", { class: "error", text: `Could not read the API usage: ${usage.reason.message}` }));
  }

  // ------------------------------------------------------------------ settings

  const EMAIL_LABELS = {
    none: "None",
    errors_only: "Errors only",
    all_excluding_zero_records: "All sessions that synced records",
    all_including_zero_records: "All sessions",
  };
  const SOURCE_LABELS = { callouts: "Zuora callouts", polling: "Polling Zuora" };
  const FREQUENCY_LABELS = { every_2_hours: "Every 2 hours", daily: "Daily (00:00 UTC)" };
  const RECOMMENDED_MIN_EVENTS = 10;
  const FIELDS = {
    max_events_before_sync: "s-max-events",
    max_minutes_between_syncs: "s-max-minutes",
    event_source: "s-event-source",
    scheduled_sync_frequency: "s-frequency",
    email_notifications: "s-email",
    manual_email_notifications: "s-manual-email",
    email_recipients: "s-recipients",
  };

  function fillOptions(select, values, labels) {
    select.replaceChildren(...values.map((v) => el("option", { value: String(v), text: (labels && labels[v]) || String(v) })));
  }

  function populateSettings(settings) {
    $("s-max-events").value = String(settings.max_events_before_sync);
    $("s-max-minutes").value = String(settings.max_minutes_between_syncs);
    $("s-event-source").value = settings.event_source;
    $("s-frequency").value = settings.scheduled_sync_frequency;
    $("s-email").value = settings.email_notifications;
    $("s-manual-email").value = settings.manual_email_notifications;
    $("s-recipients").value = (settings.email_recipients || []).join(", ");
    showEventsWarning();
    clearFieldErrors();
  }

  // The seed's advice: fewer than 10 events per sync uses more Salesforce API requests.
  function showEventsWarning() {
    $("s-max-events-warning").hidden = !(Number($("s-max-events").value) < RECOMMENDED_MIN_EVENTS);
  }
  $("s-max-events").addEventListener("change", showEventsWarning);

  // "Add me": the user who saves the settings is added to the recipients (Zuora 360 emails the
  // user who set the notifications up), unless they untick it or Airflow knows no address of theirs.
  function renderMe(me) {
    const box = $("s-add-me");
    const note = $("s-add-me-note");
    if (me && me.email) {
      $("s-add-me-label").textContent = `Add me (${me.email}) to the recipients when I save`;
      box.disabled = false;
      note.hidden = true;
    } else {
      box.checked = false;
      box.disabled = true;
      note.hidden = false;
      note.textContent = `Your Airflow user${me && me.name ? ` (${me.name})` : ""} has no email address: put yours in the recipients to get the emails.`;
    }
  }

  function renderSettingsSource(answer) {
    const source = {
      variable: "Stored in the Airflow Variable zuora_sync_settings (also on Admin → Variables).",
      defaults: "Nothing stored yet: these are the defaults.",
      environment: "Set by the environment variable AIRFLOW_VAR_ZUORA_SYNC_SETTINGS: change them there.",
    }[answer.source] || "";
    $("settings-source").textContent = source + (answer.error ? ` The stored value is invalid: ${answer.error}` : "");
  }

  async function loadSettings() {
    const message = $("settings-message");
    try {
      const answer = await api("settings");
      state.allowed = answer.allowed;
      fillOptions($("s-max-events"), answer.allowed.max_events_before_sync);
      fillOptions($("s-event-source"), answer.allowed.event_source, SOURCE_LABELS);
      fillOptions($("s-email"), answer.allowed.email_notifications, EMAIL_LABELS);
      fillOptions($("s-manual-email"), answer.allowed.manual_email_notifications, EMAIL_LABELS);
      fillOptions($("s-frequency"), answer.allowed.scheduled_sync_frequency, FREQUENCY_LABELS);
      state.me = answer.me;
      renderMe(answer.me);
      state.canChangeMode = answer.can_change_mode !== false;
      renderModeAccess();
      $("s-max-minutes").min = String(answer.allowed.max_minutes_between_syncs.minimum);
      state.settings = answer.settings || answer.defaults;
      populateSettings(state.settings);
      renderSettingsSource(answer);
      $("s-max-minutes").max = String(answer.allowed.max_minutes_between_syncs.maximum);
      const locked = answer.source === "environment" || answer.can_edit === false;
      for (const id of [...Object.values(FIELDS), "settings-save", "settings-revert"]) $(id).disabled = locked;
      if (locked) $("s-add-me").disabled = true;
      if (answer.can_edit === false) {
        $("settings-source").textContent += " Read-only: changing them needs edit access to the Airflow Variable zuora_sync_settings.";
      }
    } catch (error) {
      message.textContent = `The settings could not be read: ${error.message}`;
    }
  }

  function clearFieldErrors() {
    for (const id of Object.values(FIELDS)) {
      $(id).removeAttribute("aria-invalid");
      const box = $(`${id}-error`);
      box.hidden = true;
      box.textContent = "";
    }
  }

  function fieldError(key, text) {
    const id = FIELDS[key];
    if (!id) return false;
    $(id).setAttribute("aria-invalid", "true");
    const box = $(`${id}-error`);
    box.hidden = false;
    box.textContent = text.charAt(0).toUpperCase() + text.slice(1);
    return true;
  }

  function recipientsList(text) {
    return text.split(",").map((r) => r.trim()).filter(Boolean);
  }

  // The same rules the API applies (zuora_sync.settings), with the allowed values it offers.
  function validate() {
    const allowed = state.allowed;
    const errors = {};
    const values = {};
    const events = Number($("s-max-events").value);
    if (!allowed.max_events_before_sync.includes(events)) {
      errors.max_events_before_sync = `${$("s-max-events").value} is not allowed; choose one of [${allowed.max_events_before_sync.join(", ")}]`;
    }
    values.max_events_before_sync = events;
    const minutesText = $("s-max-minutes").value.trim();
    const { minimum, maximum } = allowed.max_minutes_between_syncs;
    if (!/^\d+$/.test(minutesText) || Number(minutesText) < minimum || Number(minutesText) > maximum) {
      errors.max_minutes_between_syncs = `must be a whole number of at least ${minimum} and at most ${maximum}, got ${minutesText === "" ? "nothing" : minutesText}`;
    }
    values.max_minutes_between_syncs = Number(minutesText);
    values.event_source = $("s-event-source").value;
    if (!allowed.event_source.includes(values.event_source)) errors.event_source = `choose one of ${allowed.event_source.join(", ")}`;
    for (const key of ["email_notifications", "manual_email_notifications", "scheduled_sync_frequency"]) {
      values[key] = $(FIELDS[key]).value;
      if (!allowed[key].includes(values[key])) errors[key] = `choose one of ${allowed[key].join(", ")}`;
    }
    values.email_recipients = recipientsList($("s-recipients").value);
    const bad = values.email_recipients.filter((r) => !r.includes("@") || /[\u0000-\u001f\u007f]/.test(r));
    if (bad.length) errors.email_recipients = `a list of email addresses, separated by commas; not an address: ${bad.join(", ")}`;
    return { values, errors };
  }

  function changedValues(values) {
    const changes = {};
    for (const [key, value] of Object.entries(values)) {
      if (JSON.stringify(value) !== JSON.stringify(state.settings[key])) changes[key] = value;
    }
    return changes;
  }

  $("settings-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = $("settings-message");
    clearFieldErrors();
    message.className = "";
    const { values, errors } = validate();
    const keys = Object.keys(errors);
    if (keys.length) {
      for (const key of keys) fieldError(key, errors[key]);
      message.className = "error";
      message.textContent = "Not saved: correct the highlighted setting" + (keys.length > 1 ? "s." : ".");
      $(FIELDS[keys[0]]).focus();
      return;
    }
    const changes = changedValues(values);
    const addMe = $("s-add-me").checked && !$("s-add-me").disabled;
    const me = state.me && state.me.email;
    const meMissing = addMe && me && !recipientsList($("s-recipients").value).some(
      (r) => r.toLowerCase().includes(me.toLowerCase()));
    if (!Object.keys(changes).length && !meMissing) {
      message.textContent = "Nothing has changed.";
      return;
    }
    $("settings-save").disabled = true;
    try {
      const answer = await api(`settings${addMe ? "" : "?add_me_to_recipients=false"}`,
        { method: "PUT", body: JSON.stringify(changes) });
      state.settings = answer.settings;
      populateSettings(state.settings);
      renderSettingsSource(answer);
      message.className = "ok";
      const saved = Object.keys(changes);
      message.textContent = (saved.length ? `Saved: ${saved.join(", ")}.` : "Saved.")
        + (answer.added_recipient ? ` You (${answer.added_recipient}) were added to the email recipients.` : "")
        + " A real-time wait under way applies them at its next look.";
      pollStatus();
    } catch (error) {
      message.className = "error";
      const detail = error.body && error.body.detail ? String(error.body.detail) : error.message;
      const match = /^(\w+): (.*)$/s.exec(detail);
      if (error.status === 400 && match && fieldError(match[1], match[2])) {
        message.textContent = "Not saved: the server refused a value.";
        $(FIELDS[match[1]]).focus();
      } else {
        message.textContent = `Not saved: ${detail}`;
      }
    } finally {
      $("settings-save").disabled = false;
    }
  });

  $("settings-revert").addEventListener("click", () => {
    if (state.settings) populateSettings(state.settings);
    $("settings-message").className = "";
    $("settings-message").textContent = "Changes discarded.";
  });

  // ------------------------------------------------------------------ sync mode

  // The radio buttons follow the mode the status reports, unless the user is choosing another.
  function syncModeChoice(modeName) {
    if (state.modeTouched) return;
    for (const radio of document.querySelectorAll('#mode-choices input[name="mode"]')) {
      radio.checked = radio.value === modeName;
    }
  }
  $("mode-choices").addEventListener("change", () => { state.modeTouched = true; });

  function renderModeAccess() {
    const locked = state.canChangeMode === false;
    for (const radio of document.querySelectorAll('#mode-choices input[name="mode"]')) radio.disabled = locked;
    $("mode-save").disabled = locked;
    if (locked) $("mode-form-hint").textContent = "Read-only: changing the sync mode needs the right to edit (pause and unpause) zuora_incremental_sync and zuora_realtime_sync.";
  }

  $("mode-change-link").addEventListener("click", () => {
    selectTab($("tab-settings"), false);
    const chosen = document.querySelector('#mode-choices input[name="mode"]:checked')
      || document.querySelector('#mode-choices input[name="mode"]');
    chosen.focus();
  });

  $("mode-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = $("mode-message");
    const chosen = document.querySelector('#mode-choices input[name="mode"]:checked');
    message.className = "";
    if (!chosen) {
      message.className = "error";
      message.textContent = "Choose a sync mode first.";
      return;
    }
    $("mode-save").disabled = true;
    try {
      const answer = await api("mode", { method: "PUT", body: JSON.stringify({ mode: chosen.value }) });
      message.className = "ok";
      message.textContent = answer.message;
      state.modeTouched = false;
      pollStatus();
    } catch (error) {
      message.className = "error";
      const detail = error.body && error.body.detail ? String(error.body.detail) : error.message;
      message.textContent = error.status === 403
        ? "Not changed: you may not pause or unpause zuora_incremental_sync and zuora_realtime_sync."
        : `Not changed: ${detail}`;
    } finally {
      $("mode-save").disabled = state.canChangeMode === false;
    }
  });

  // ------------------------------------------------------------------ pending events

  let eventsLoading = false;
  async function loadEvents() {
    if (eventsLoading) return;
    eventsLoading = true;
    try {
      const answer = await api(`pending-events${query({ limit: EVENTS_PAGE, offset: state.eventsOffset })}`);
      state.eventsTotal = answer.total;
      const body = document.querySelector("#events tbody");
      body.replaceChildren();
      if (!answer.events.length) {
        body.append(el("tr", {}, el("td", { colspan: 6, class: "empty", text: "No pending events: everything received has been synced." })));
      }
      for (const e of answer.events) {
        body.append(el("tr", { "data-event-id": e.id },
          el("td", {}, tableTime(e.received_at)),
          el("td", { text: e.event_type }),
          el("td", { text: e.object || "—" }),
          el("td", { text: e.object_id || "—" }),
          el("td", { text: e.change_type || "—" }),
          el("td", { class: "muted", text: e.notification_id })));
      }
      const last = answer.offset + answer.events.length;
      $("events-summary").textContent = answer.total
        ? `${fmtNumber(answer.total)} pending event${answer.total === 1 ? "" : "s"}, newest first; showing ${fmtNumber(answer.offset + 1)}–${fmtNumber(last)}.`
        : "No pending events.";
      $("events-page-label").textContent = answer.total
        ? `Page ${Math.floor(answer.offset / EVENTS_PAGE) + 1} of ${Math.max(1, Math.ceil(answer.total / EVENTS_PAGE))}` : "";
      $("events-newer").disabled = answer.offset === 0;
      $("events-older").disabled = last >= answer.total;
    } catch (error) {
      $("events-summary").textContent = `The events could not be read: ${error.message}`;
    } finally {
      eventsLoading = false;
    }
  }

  $("events-refresh").addEventListener("click", loadEvents);
  $("events-newer").addEventListener("click", () => {
    state.eventsOffset = Math.max(0, state.eventsOffset - EVENTS_PAGE);
    loadEvents();
  });
  $("events-older").addEventListener("click", () => {
    state.eventsOffset += EVENTS_PAGE;
    loadEvents();
  });

  // ------------------------------------------------------------------ start

  syncTheme();
  pollStatus();
  loadHistory();
  // A link to one session (each sync task's "Zuora Sync session" link in Airflow): ?session=<id>.
  const linkedSession = new URLSearchParams(window.location.search).get("session") || "";
  if (/^[1-9][0-9]{0,15}$/.test(linkedSession)) openSession(Number(linkedSession));
})();
