/* Building the page's elements (text only, never HTML), formats of numbers, times and statuses. */

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

export { $, el, SVG_NS, svg, numberFormat, fmtNumber, dateTimeFormat, compactFormat, thisYear, tableTime, shortFormat, dayFormat, timeZone, timeEl, fmtDuration, fmtAgo, statusClass, statusBadge };
