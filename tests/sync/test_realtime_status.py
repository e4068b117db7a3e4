"""The "how far is the next sync" rule, including the seed's example."""

from __future__ import annotations

import datetime as dt

from zuora_sync.realtime_status import next_sync

UTC = dt.timezone.utc
TEN = dt.datetime(2025, 3, 3, 10, 0, tzinfo=UTC)


def test_the_seeds_example_fires_at_half_past_ten():
    # Threshold 50, maximum 30 minutes, 49 events since the 10:00 session.
    assert next_sync(49, 50, TEN, 30, TEN + dt.timedelta(minutes=29, seconds=59)).due is None
    at_half_past = next_sync(49, 50, TEN, 30, TEN + dt.timedelta(minutes=30))
    assert at_half_past.due == "max_time"


def test_events_reach_the_threshold_first():
    status = next_sync(50, 50, TEN, 30, TEN + dt.timedelta(minutes=5))
    assert status.due == "events"


def test_message_in_zuora_360_words():
    status = next_sync(7, 10, TEN, 120, TEN + dt.timedelta(minutes=20, seconds=30))
    assert status.message() == "3 more data change events, or at most 100 minutes, until the next sync"
    assert next_sync(9, 10, TEN, 120, TEN + dt.timedelta(minutes=119)).message() == (
        "1 more data change event, or at most 1 minute, until the next sync")
    assert next_sync(0, 10, None, 120, TEN).due == "max_time"  # no session yet: do not wait


# -- the hold after a Failure or Stopped session (the trigger's backoff) -----------------------------------


def test_after_a_failed_session_events_wait_for_the_hold():
    """12 events against a threshold of 10, but the 10:00 session failed: not before 10:15."""
    held = next_sync(12, 10, TEN, 120, TEN + dt.timedelta(minutes=5), last_session_status="Failure")
    assert held.due is None and held.events_needed == 0
    assert held.hold_until == TEN + dt.timedelta(minutes=15) and held.minutes_left == 10
    assert held.message() == ("12 data change events are waiting, but the last session ended Failure: they start "
                              "no sync before 2025-03-03 10:15:00 UTC; at most 10 minutes until the next sync")
    assert "starts now" not in held.message()
    assert held.as_dict()["held_until"] == "2025-03-03T10:15:00+00:00"
    released = next_sync(12, 10, TEN, 120, TEN + dt.timedelta(minutes=15), last_session_status="Failure")
    assert released.due == "events" and released.hold_until is None and released.minutes_left == 0


def test_the_hold_follows_stopped_sessions_too_and_not_finished_ones():
    at_five = TEN + dt.timedelta(minutes=5)
    assert next_sync(12, 10, TEN, 120, at_five, last_session_status="Stopped").due is None
    for status in ("Finished", "Finished with Errors", None):
        assert next_sync(12, 10, TEN, 120, at_five, last_session_status=status).due == "events"
    assert next_sync(12, 10, TEN, 120, at_five, last_session_status="Failure", backoff_minutes=3).due == "events"


def test_below_the_threshold_the_hold_is_said_and_the_maximum_time_is_unchanged():
    held = next_sync(7, 10, TEN, 120, TEN + dt.timedelta(minutes=5), last_session_status="Failure")
    assert held.due is None and held.minutes_left == 115 and held.events_needed == 3
    assert held.message() == ("3 more data change events, or at most 115 minutes, until the next sync (events "
                              "start it no earlier than 2025-03-03 10:15:00 UTC: the last session ended Failure)")


def test_the_hold_never_delays_the_maximum_time():
    # Maximum 10 minutes, hold 15: the maximum time comes first and starts the session.
    status = next_sync(12, 10, TEN, 10, TEN + dt.timedelta(minutes=5), last_session_status="Failure")
    assert status.due is None and status.minutes_left == 5
    assert status.message().endswith("before 2025-03-03 10:15:00 UTC; at most 5 minutes until the next sync")
    assert next_sync(12, 10, TEN, 10, TEN + dt.timedelta(minutes=10), last_session_status="Failure").due == "max_time"
    assert next_sync(3, 10, TEN, 10, TEN + dt.timedelta(minutes=10), last_session_status="Stopped").due == "max_time"


def test_next_change_is_when_time_alone_changes_the_verdict():
    held = next_sync(12, 10, TEN, 120, TEN + dt.timedelta(minutes=5), last_session_status="Failure")
    assert held.next_change_at == TEN + dt.timedelta(minutes=15)
    assert next_sync(1, 10, TEN, 120, TEN).next_change_at == TEN + dt.timedelta(minutes=120)
    assert next_sync(1, 10, None, 120, TEN).next_change_at is None
