/* Pending data change events. */

import { api, query } from "./api.js";
import { $, el, fmtNumber, tableTime } from "./dom.js";
import { EVENTS_PAGE, state } from "./state.js";

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

export { eventsLoading, loadEvents };
