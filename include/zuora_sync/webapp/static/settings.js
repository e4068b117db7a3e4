/* The settings form (validation, what changed, saving) and the sync mode switch. */

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { state } from "./state.js";
import { pollStatus } from "./status.js";
import { selectTab } from "./tabs.js";

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

export { EMAIL_LABELS, SOURCE_LABELS, FREQUENCY_LABELS, RECOMMENDED_MIN_EVENTS, FIELDS, fillOptions, populateSettings, showEventsWarning, renderMe, renderSettingsSource, loadSettings, clearFieldErrors, fieldError, recipientsList, validate, changedValues, syncModeChoice, renderModeAccess };
