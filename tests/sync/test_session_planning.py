"""Which window of changes each object reads, per the rules of SPEC §4."""

from __future__ import annotations

import datetime as dt

import pytest

from zuora_sync.planning import object_windows, parse_instant, staging_dir

UTC = dt.timezone.utc
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LOOKBACK = dt.timedelta(minutes=5)


def window(**kwargs):
    result = object_windows(["A", "B"], kwargs.pop("marks", {}), now=NOW, lookback=LOOKBACK, **kwargs)
    return {k: tuple(dt.datetime.fromisoformat(v) for v in w) for k, w in result.items()}


def test_backfill_reads_exactly_its_interval_plus_lookback():
    interval = (dt.datetime(2025, 5, 1, 0, tzinfo=UTC), dt.datetime(2025, 5, 1, 2, tzinfo=UTC))
    got = window(marks={"A": NOW, "B": dt.datetime(2025, 4, 1, tzinfo=UTC)}, interval=interval, backfill=True)
    assert got["A"] == got["B"] == (interval[0] - LOOKBACK, interval[1])


def test_scheduled_run_starts_at_the_older_of_interval_and_watermark():
    interval = (dt.datetime(2025, 6, 1, 8, tzinfo=UTC), dt.datetime(2025, 6, 1, 10, tzinfo=UTC))
    lagging = dt.datetime(2025, 6, 1, 2, tzinfo=UTC)  # an earlier session failed
    got = window(marks={"A": lagging, "B": interval[0]}, interval=interval, backfill=False)
    assert got["A"] == (lagging - LOOKBACK, interval[1])
    assert got["B"] == (interval[0] - LOOKBACK, interval[1])


def test_manual_run_reads_from_the_watermark_to_now():
    mark = dt.datetime(2025, 6, 1, 11, tzinfo=UTC)
    assert window(marks={"A": mark, "B": mark}, interval=None, backfill=False)["A"] == (mark - LOOKBACK, NOW)


def test_a_requested_window_ending_in_the_future_stops_at_now():
    start = dt.datetime(2025, 5, 30, tzinfo=UTC)
    got = window(interval=None, backfill=False, requested=(start, NOW + dt.timedelta(days=1)))
    assert got["A"] == (start - LOOKBACK, NOW)


def test_no_watermark_and_no_window_is_refused():
    with pytest.raises(ValueError, match="must be a full sync"):
        window(interval=None, backfill=False)
    with pytest.raises(ValueError, match="empty or reversed"):
        window(interval=None, backfill=False, requested=(NOW, NOW))


def test_form_instants_and_staging_paths():
    assert parse_instant("2025-01-01T10:00:00") == dt.datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert parse_instant("2025-01-01T10:00:00+02:00") == dt.datetime(2025, 1, 1, 8, tzinfo=UTC)
    assert parse_instant("") is None and parse_instant(None) is None
    assert staging_dir("file:///s", "dag", "manual__2025-01-01T00:00:00+00:00") == "file:///s/dag/manual__2025-01-01T00_00_00_00_00"


# -- where a window's session leaves the object's watermark ----------------------------------------


def test_a_window_that_starts_at_or_before_the_watermark_moves_it_to_its_end():
    from zuora_sync.reconcile import advanced_watermark

    mark = dt.datetime(2025, 6, 1, 8, tzinfo=UTC)
    window = (mark - LOOKBACK, dt.datetime(2025, 6, 1, 10, tzinfo=UTC))
    assert advanced_watermark(mark, window, started=NOW) == window[1]
    # Never beyond the session's start: later changes may not be visible to it yet.
    assert advanced_watermark(mark, window, started=dt.datetime(2025, 6, 1, 9, tzinfo=UTC)) == \
        dt.datetime(2025, 6, 1, 9, tzinfo=UTC)


def test_a_backfill_window_after_a_lagging_watermark_leaves_it_alone():
    """An earlier session failed at 02:00; a backfill re-syncs 08:00–10:00: 02:00–08:00 is still unsynced."""
    from zuora_sync.reconcile import advanced_watermark

    lagging = dt.datetime(2025, 6, 1, 2, tzinfo=UTC)
    window = (dt.datetime(2025, 6, 1, 8, tzinfo=UTC) - LOOKBACK, dt.datetime(2025, 6, 1, 10, tzinfo=UTC))
    assert advanced_watermark(lagging, window, started=NOW) is None


def test_a_window_in_the_past_never_moves_the_watermark_back():
    from zuora_sync.reconcile import advanced_watermark

    mark = NOW - dt.timedelta(minutes=1)
    window = (dt.datetime(2025, 5, 1, 0, tzinfo=UTC) - LOOKBACK, dt.datetime(2025, 5, 1, 2, tzinfo=UTC))
    assert advanced_watermark(mark, window, started=NOW) is None
    assert advanced_watermark(None, window, started=NOW) is None  # nothing says the history before it is synced


def test_a_scheduled_interval_that_later_sessions_synced_has_nothing_to_do():
    """Unpausing zuora_incremental_sync (e.g. for a backfill) in Real-time mode starts its latest interval,
    which the real-time sessions synced already."""
    from zuora_sync.planning import interval_synced

    end = dt.datetime(2025, 6, 1, 10, tzinfo=UTC)
    assert interval_synced({"A": end, "B": end + dt.timedelta(minutes=37)}, ["A", "B"], end)
    assert not interval_synced({"A": end, "B": end - dt.timedelta(seconds=1)}, ["A", "B"], end)
    assert not interval_synced({"A": end}, ["A", "B"], end)  # B was never synced
    assert not interval_synced({}, [], end)


# -- what a session really is --------------------------------------------------------------------

ACCOUNTS = ["CustomerAccount", "Subscription", "Invoice"]


def test_the_first_sync_of_a_scope_is_full_whatever_started_it():
    from zuora_sync.planning import FULL, INCREMENTAL, REAL_TIME, decide

    for requested in (INCREMENTAL, REAL_TIME, "On-demand", FULL):
        decision = decide(requested, "accounts", ACCOUNTS, ["Invoice"], has_full_sync=False)
        assert (decision.session_type, decision.mode, decision.objects) == (FULL, "full", ACCOUNTS)
        assert (decision.why is None) == (requested == FULL)


def test_after_a_full_sync_each_type_keeps_its_mode_and_chosen_objects():
    from zuora_sync.planning import decide

    modes = {"Full": "full", "Incremental": "window", "Real-time": "window", "On-demand": "accounts"}
    for requested, mode in modes.items():
        decision = decide(requested, "accounts", ACCOUNTS, ["Invoice"], has_full_sync=True)
        assert (decision.session_type, decision.mode, decision.objects, decision.why) == \
            (requested, mode, ["Invoice"], None)
    catalog = decide("Product Catalog", "catalog", ["Product"], ["Product"], has_full_sync=False)
    assert (catalog.session_type, catalog.mode) == ("Product Catalog", "full")
    with pytest.raises(ValueError, match="unknown session type"):
        decide("Weekly", "accounts", ACCOUNTS, ACCOUNTS, has_full_sync=True)


def test_a_real_time_session_after_a_mode_change_is_a_full_sync_of_everything():
    from zuora_sync.planning import decide

    decision = decide("Real-time", "accounts", ACCOUNTS, ["Invoice"], has_full_sync=True,
                      mode_change="the sync mode became Real-time")
    assert (decision.session_type, decision.mode, decision.objects) == ("Full", "full", ACCOUNTS)
    assert "the sync mode became Real-time" in decision.why


def test_chosen_objects_come_in_load_order_and_unknown_ones_are_refused():
    from zuora_sync.planning import select_objects

    assert select_objects(ACCOUNTS, ["Invoice", "CustomerAccount"]) == ["CustomerAccount", "Invoice"]
    assert select_objects(ACCOUNTS, []) == select_objects(ACCOUNTS, None) == ACCOUNTS
    with pytest.raises(ValueError, match=r"unknown objects \['Quote'\]"):
        select_objects(ACCOUNTS, ["Quote"])


def test_how_a_run_was_started_chooses_its_window():
    from zuora_sync.planning import session_windows

    mark = dt.datetime(2025, 6, 1, 11, tzinfo=UTC)
    interval = (dt.datetime(2025, 6, 1, 8, tzinfo=UTC), dt.datetime(2025, 6, 1, 10, tzinfo=UTC))

    def start_end(run_type, session_type="Incremental"):
        got = session_windows(["A"], {"A": mark}, run_type=run_type, session_type=session_type, interval=interval,
                              now=NOW, lookback=LOOKBACK)["A"]
        return tuple(dt.datetime.fromisoformat(v) for v in got)

    assert start_end("DagRunType.SCHEDULED") == (interval[0] - LOOKBACK, interval[1])
    assert start_end("backfill") == (interval[0] - LOOKBACK, interval[1])
    assert start_end("manual") == (mark - LOOKBACK, NOW)  # "sync now"
    assert start_end("scheduled", "Real-time") == (mark - LOOKBACK, NOW)  # its interval predates the wait


def test_reconciliation_removes_only_owned_records_zuora_no_longer_keeps(tmp_path):
    from zuora_sync.reconcile import orphans

    exported = tmp_path / "salesforce.csv"
    exported.write_text("Id,Zuora__External_Id__c\n001A,k1\n001B,k2\n001C,\n001D,k4\n", encoding="utf-8")
    assert orphans(exported, iter(["k1", "k4", "k9"]), tmp_path) == {"001B": "k2"}  # 001C is not the sync's


def test_task_ids_are_built_and_read_in_one_place():
    from zuora_sync import task_ids

    for build in (task_ids.extract, task_ids.load, task_ids.delete):
        assert task_ids.object_of(build("PaymentInvoice")) == "PaymentInvoice"
    with pytest.raises(ValueError, match="not an extract, load or delete task"):
        task_ids.object_of(task_ids.END_SESSION)


def test_the_vocabulary_keeps_the_stored_values():
    import json

    from zuora_sync.planning import SessionPlan
    from zuora_sync.vocabulary import Mode, SessionStatus, SessionType

    assert [t.value for t in SessionType] == ["Full", "Incremental", "Real-time", "On-demand", "Product Catalog",
                                              "Sync Clean-up"]
    assert SessionStatus.FINISHED_WITH_ERRORS == "Finished with Errors"
    plan = SessionPlan(session_id=1, session_type=SessionType.REAL_TIME, scope="accounts", mode=Mode.WINDOW,
                       objects=["A"], holder="d/r", staging="file:///s", started="2025-01-01T00:00:00+00:00")
    value = plan.as_xcom()
    assert json.loads(json.dumps(value)) == value and type(value["session_type"]) is str
    assert SessionPlan.from_xcom(value) == plan
