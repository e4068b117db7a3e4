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
