/* The charts, in a small registry: each has a name, what it loads and how it draws (SVG plus a table). */

import { api, query } from "./api.js";
import { $, dateTimeFormat, dayFormat, el, fmtNumber, shortFormat, svg, timeZone } from "./dom.js";
import { filterParams, localDayStart } from "./history.js";
import { state } from "./state.js";

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

// The registry: each chart names its container, what it reads (given the days shown and the
// history's filters) and how it draws; a new chart is one more registerChart() call.
const charts = [];

function registerChart(chart) {
  charts.push(chart);
}

registerChart({
  container: "chart-records",
  what: "the sessions",
  read: (days, params) => api(`sessions${query({ ...params, limit: 500 })}`),
  draw: (answer) => drawRecordsChart(answer.sessions),
});

registerChart({
  container: "chart-usage",
  what: "the API usage",
  read: (days) => api(`api-usage${query({ days, tz: timeZone })}`),
  draw: (answer) => drawUsageChart(answer),
});

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
  const answers = await Promise.allSettled(charts.map((chart) => chart.read(days, params)));
  charts.forEach((chart, index) => {
    const answer = answers[index];
    if (answer.status === "fulfilled") chart.draw(answer.value);
    else $(chart.container).replaceChildren(el("p", { class: "error", text: `Could not read ${chart.what}: ${answer.reason.message}` }));
  });
}

export { registerChart, niceMax, chartFrame, yAxis, fillTable, drawRecordsChart, drawUsageChart, loadCharts };
