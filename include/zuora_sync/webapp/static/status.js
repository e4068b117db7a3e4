/* The live status panel, polled every few seconds. */

import { airflowLink, api, syncTheme } from "./api.js";
import { loadCharts } from "./charts.js";
import { $, el, fmtAgo, fmtNumber, statusClass } from "./dom.js";
import { loadEvents } from "./events.js";
import { loadHistory, openSession } from "./history.js";
import { syncModeChoice } from "./settings.js";
import { POLL_MS, state } from "./state.js";
import { currentTab } from "./tabs.js";

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

export { renderStatus, pollTimer, pollStatus };
