"""Airflow DAG: incremental sync of Accounts & Related Objects, every two hours or daily, backfillable."""

from airflow.sdk import CronDataIntervalTimetable

from zuora_sync.dag_factory import build_sync_dag, dry_run_param, objects_param, window_params
from zuora_sync.planning import INCREMENTAL
from zuora_sync.settings import incremental_schedule

dag = build_sync_dag(
    "zuora_incremental_sync",
    session_type=INCREMENTAL,
    scope="accounts",
    # The setting scheduled_sync_frequency: every_2_hours (default) or daily; read at parse time.
    schedule=CronDataIntervalTimetable(incremental_schedule(), timezone="UTC"),
    params={"objects": objects_param("accounts"), **window_params(), "dry_run": dry_run_param()},
    doc_md="""
### Zuora incremental sync — Accounts & Related Objects

Every two hours (or daily at 00:00 UTC: the setting `scheduled_sync_frequency`, on the Zuora Sync
page or in the Variable `zuora_sync_settings`; it applies when Airflow next parses this file), syncs
the records created, updated or deleted in Zuora during the run's data
interval (with a small look-back), starting earlier if an earlier session failed, so no change is
lost. Deletions and records that stop qualifying (a cancelled account, an expired subscription
version) are removed from Salesforce. Records Salesforce rejected last time are retried.

**Backfill** any past range (Trigger → Backfill): each window is re-synced exactly; rerunning a
window writes the same result, and no watermark moves back. A manual run without an interval syncs
from the last successful sync to now, or over the window given in the form. The scheduled/real-time
choice is which of this DAG and `zuora_realtime_sync` is unpaused. In Real-time mode, unpause this
DAG for the backfill and pause it again before its next interval ends: the latest interval, which
Airflow starts on unpausing, was synced already and records no session, and backfill sessions do
not count as a mode change (docs/operations.md).
""",
)
