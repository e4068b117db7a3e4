"""Airflow DAG: real-time sync of Accounts & Related Objects — a session whenever enough Zuora data
change events have arrived, or the maximum time between syncs has passed."""

from zuora_sync.dag_factory import build_sync_dag
from zuora_sync.planning import REAL_TIME

dag = build_sync_dag(
    "zuora_realtime_sync",
    session_type=REAL_TIME,
    scope="accounts",
    schedule="@continuous",  # one run at a time, the next as soon as one ends: each run waits first
    params={},
    wait_for_changes=True,
    doc_md="""
### Zuora real-time sync — Accounts & Related Objects

Each run starts with `wait_for_changes`, a deferrable sensor (it waits in the triggerer, holding
no worker slot): the session starts when **`max_events_before_sync`** data change events are
pending, or **`max_minutes_between_syncs`** minutes have passed since the last session ended,
whichever comes first. Its log says how far away that is: *"7 more data change events, or at most
100 minutes, until the next sync"*. The session then syncs what changed since the last successful
one (from each object's watermark to now) and consumes the events it started with; events that
arrive during a session count toward the next. A session that failed or stopped consumes nothing;
its events start a new session after a 15-minute pause (so a lasting problem does not restart it
in a loop), or at the maximum time.

**Sync modes.** The mode is which DAG is unpaused:

| mode | `zuora_incremental_sync` | `zuora_realtime_sync` |
|---|---|---|
| None | paused | paused |
| Scheduled | unpaused | paused |
| Real-time | paused | unpaused |

Choose the mode on the Zuora Sync page (it pauses and unpauses both), or unpause only one of
them. A real-time session after a mode change is a **full sync**, and starts at once without
waiting for events, as Zuora 360's Turbo Sync does: when the scope's last session that says anything about the mode was not a
real-time one (on-demand syncs, dry runs and backfills say nothing), or when it begins more than
`max_minutes_between_syncs` + `mode_change_grace_minutes` after the last session ended (this DAG
was paused meanwhile). So is any session before the first full sync. The exact rule and how
backfills live with real-time mode: the operations guide (docs/operations.md).

**Settings** (Variable `zuora_sync_settings`, JSON; also editable on the Zuora Sync page):
`max_events_before_sync` — one of 1, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500 (default 10;
lower values use more Salesforce API requests); `max_minutes_between_syncs` (default 120);
`event_source` — `callouts` (Zuora callout notifications POSTed to `/zuora-sync/events`, default)
or `polling` (counts records changed in Zuora since the watermark with a Data Query job, for
deployments Zuora cannot call: 3–5 Zuora API requests per count, so set `trigger_poll_seconds`
to 60 or more); `trigger_poll_seconds` (default 5); `email_notifications` (these recurring
sessions), `manual_email_notifications` (manual and on-demand ones) and `email_recipients`.
A change applies to a wait already under way.
""",
)
