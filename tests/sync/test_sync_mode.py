"""The sync-mode rule: when a real-time session follows a mode change and must be a full sync."""

from __future__ import annotations

import datetime as dt
import itertools

from zuora_sync.sync_mode import is_backfill, mode_change

UTC = dt.UTC
T0 = dt.datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
RT_DAG = "zuora_realtime_sync"
_ids = itertools.count(1)


def session(ended_minutes: float, session_type: str = "Real-time", *, dag_id: str = RT_DAG,
            trigger: str = "DagRunType.SCHEDULED", status: str = "Finished", dry_run: bool = False) -> dict:
    return {"id": next(_ids), "session_type": session_type, "dag_id": dag_id, "trigger": trigger, "status": status,
            "dry_run": dry_run, "ended_at": T0 + dt.timedelta(minutes=ended_minutes)}


def verdict(*history: dict, began: float, max_minutes: float = 120, grace: float = 60) -> str | None:
    """``history`` newest first, as the state store lists it; ``began``: minutes after T0."""
    return mode_change(list(history), dag_id=RT_DAG, began_at=T0 + dt.timedelta(minutes=began),
                       max_minutes=max_minutes, grace_minutes=grace)


def test_a_real_time_session_after_a_real_time_one_is_not_a_full_sync():
    assert verdict(session(0), began=30) is None
    assert verdict(session(0, "Full"), session(-100), began=30) is None  # after the mode-change full sync


def test_scheduled_and_manual_runs_of_other_dags_are_a_mode_change():
    reason = verdict(session(0, "Incremental", dag_id="zuora_incremental_sync"), session(-60), began=30)
    assert reason and "not a real-time one" in reason and "scheduled" in reason
    assert verdict(session(0, "Full", dag_id="zuora_full_sync", trigger="DagRunType.MANUAL"), began=30)
    assert verdict(began=30) == "no real-time session of the scope has run before: the sync mode changed"


def test_backfills_on_demand_syncs_and_dry_runs_say_nothing_about_the_mode():
    backfill = {"dag_id": "zuora_incremental_sync", "trigger": "DagRunType.BACKFILL"}
    history = [session(20, "Incremental", **backfill), session(15, "Incremental", **backfill),
               session(10, "On-demand", dag_id="zuora_on_demand_sync", trigger="DagRunType.MANUAL"),
               session(5, "Incremental", dag_id="zuora_incremental_sync", trigger="DagRunType.MANUAL", dry_run=True),
               session(0)]
    assert verdict(*history, began=30) is None
    assert is_backfill({"trigger": "backfill"}) and is_backfill({"trigger": "DagRunType.BACKFILL"})
    assert not is_backfill({"trigger": "DagRunType.SCHEDULED"})
    # Passed over, not ignored: what came before them still counts.
    assert verdict(*history[:-1], session(0, "Incremental", dag_id="zuora_incremental_sync"), began=30)


def test_a_failed_mode_change_full_sync_is_repeated_and_a_failed_real_time_session_is_still_one():
    assert verdict(session(0, "Full", status="Failure"), session(-100), began=30)
    assert verdict(session(0, status="Failure"), began=30) is None


def test_real_time_then_none_then_real_time_is_a_full_sync():
    """Paused after the 10:00 session, unpaused at 13:01: more than 120 + 60 minutes without a session."""
    reason = verdict(session(0), began=181)
    assert reason and "3 h 1 min" in reason and "real-time sync was off" in reason
    assert verdict(session(0), began=180) is None  # exactly at the limit: still real-time
    # The mode-change full sync it leads to makes the next session real-time again: one full sync.
    assert verdict(session(190, "Full"), session(0), began=200) is None


def test_a_wait_for_the_lock_does_not_count():
    """The sensor fired at 12:00 (the maximum time), the begin task first ran at 12:00 and then
    waited four hours for an on-demand sync's lock: the gap is from 10:00 to 12:00."""
    on_demand = session(360, "On-demand", dag_id="zuora_on_demand_sync", trigger="DagRunType.MANUAL")
    assert verdict(on_demand, session(0), began=120) is None
    # Had the begin task first run at 13:01, the real-time DAG was not running: a full sync.
    assert verdict(on_demand, session(0), began=181)


def test_the_hold_after_a_failure_never_makes_a_gap():
    """After a Failure, events wait 15 minutes but the maximum time is unchanged: 120 minutes at most."""
    assert verdict(session(0, status="Failure"), began=120.5) is None


def test_another_session_restarts_the_clock():
    on_demand = session(170, "On-demand", dag_id="zuora_on_demand_sync", trigger="DagRunType.MANUAL")
    assert verdict(on_demand, session(0), began=200) is None  # the trigger's maximum time restarted too


def test_a_larger_maximum_moves_the_limit():
    assert verdict(session(0), began=500, max_minutes=600) is None
    assert verdict(session(0), began=500, max_minutes=400, grace=60)
