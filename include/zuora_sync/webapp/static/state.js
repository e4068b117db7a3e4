/* The page's addresses, page sizes and the state its parts share. */


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

export { APP, AIRFLOW, POLL_MS, HISTORY_PAGE, EVENTS_PAGE, REJECTED_PAGE, state };
