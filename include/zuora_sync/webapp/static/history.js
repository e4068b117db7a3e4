/* Sync history (filters, paging), one session's details and its rejected records. */

import { airflowLink, api, query } from "./api.js";
import { $, el, fmtDuration, fmtNumber, statusBadge, tableTime, timeEl, timeZone } from "./dom.js";
import { APP, HISTORY_PAGE, REJECTED_PAGE, state } from "./state.js";
import { currentTab, selectTab } from "./tabs.js";

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

// Rows compared with their stored hashes: what was (a dry run: would be) created, updated, left
// unchanged (not sent) and removed in Salesforce.
const CHANGES = ["created", "updated", "unchanged", "removed"];

function changesTitle(s) {
  return `${s.dry_run ? "Would be" : "Were"} created / updated / unchanged (not sent) / removed in Salesforce`;
}

function renderHistory(answer) {
  const body = document.querySelector("#sessions tbody");
  body.replaceChildren();
  if (!answer.sessions.length) {
    body.append(el("tr", {}, el("td", { colspan: 13, class: "empty", text: "No sessions match these filters." })));
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
      el("td", { class: "num", "data-count": "changes", title: changesTitle(s),
                 text: CHANGES.map((k) => fmtNumber(t[k] ?? 0)).join(" / ") }),
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
  if (!names.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "empty", text: "No counts recorded." })));
  const note = $("detail-changes-note");
  note.hidden = !names.length;
  note.textContent = s.dry_run
    ? "Dry run: created, updated, unchanged and removed are what this session would have done; nothing was written."
    : "Created, updated and removed: what Salesforce took; unchanged: rows not sent, their values are as Salesforce last took them.";
  for (const name of names) {
    const c = s.objects[name];
    body.append(el("tr", { "data-object": name },
      el("th", { scope: "row", text: name }),
      el("td", { class: "num", "data-count": "extracted", text: fmtNumber(c.extracted) }),
      el("td", { class: "num", "data-count": "upserted", text: fmtNumber(c.upserted) }),
      el("td", { class: "num", "data-count": "deleted", text: fmtNumber(c.deleted) }),
      el("td", { class: "num", "data-count": "failed", text: fmtNumber(c.failed) }),
      ...CHANGES.map((k) => el("td", { class: "num", "data-count": k, text: fmtNumber(c[k] ?? 0) }))));
  }
  if (names.length > 1) {
    const t = s.totals;
    body.append(el("tr", {},
      el("th", { scope: "row", text: "All objects" }),
      el("td", { class: "num", text: fmtNumber(t.extracted) }), el("td", { class: "num", text: fmtNumber(t.upserted) }),
      el("td", { class: "num", text: fmtNumber(t.deleted) }), el("td", { class: "num", text: fmtNumber(t.failed) }),
      ...CHANGES.map((k) => el("td", { class: "num", text: fmtNumber(t[k] ?? 0) }))));
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

export { localDayStart, filterParams, fillSelect, loadHistory, renderHistory, openSession, renderSession, loadRejected };
