/* The Zuora Sync page: status (live), sync history, charts, rejected records, settings, events.
 *
 * Plain JavaScript as ES modules, no build step, no third-party code. Every value from the server
 * goes into the page as text (textContent, setAttribute), never as HTML. The page lives in an
 * iframe of the Airflow UI (or on its own at /zuora-sync/ui/); every URL is relative to where it
 * was served. This is the entry point; each part is a module:
 *
 *   state.js     addresses, page sizes, shared state     dom.js       elements and formats
 *   api.js       requests, lost login, links, theme       tabs.js      tabs
 *   status.js    the live status                          history.js   history, a session, rejected
 *   charts.js    the chart registry and its charts        settings.js  settings and the sync mode
 *   events.js    pending data change events
 */

import "./tabs.js";
import "./charts.js";
import "./settings.js";
import "./events.js";
import { syncTheme } from "./api.js";
import { loadHistory, openSession } from "./history.js";
import { pollStatus } from "./status.js";

syncTheme();
pollStatus();
loadHistory();
// A link to one session (each sync task's "Zuora Sync session" link in Airflow): ?session=<id>.
const linkedSession = new URLSearchParams(window.location.search).get("session") || "";
if (/^[1-9][0-9]{0,15}$/.test(linkedSession)) openSession(Number(linkedSession));
