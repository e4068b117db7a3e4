/* The tabs and what each loads when shown. */

import { loadCharts } from "./charts.js";
import { $ } from "./dom.js";
import { loadEvents } from "./events.js";
import { loadSettings } from "./settings.js";
import { state } from "./state.js";

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

export { tabs, selectTab, currentTab, onTabShown };
