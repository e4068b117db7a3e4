"""The one retry policy (zuora_sync.retry): waits, limits and the Retry-After parser."""

from __future__ import annotations

import datetime as dt

import pytest

from zuora_sync.retry import SALESFORCE, ZUORA, RetryAfterTooLong, RetryPolicy, parse_retry_after


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter():
    policy = RetryPolicy(retries=8, base=1.0, cap=10.0, jitter=0.5)
    for attempt, ceiling in enumerate([1, 2, 4, 8, 10, 10]):
        waits = [policy.backoff(attempt) for _ in range(200)]
        assert min(waits) >= ceiling * 0.5 and max(waits) <= ceiling
        assert max(waits) - min(waits) > 0  # jittered: many workers do not come back together


def test_no_jitter_gives_the_exact_backoff():
    assert RetryPolicy(base=0.5, cap=8.0, jitter=0.0).backoff(3) == 4.0


def test_retry_after_is_honoured_up_to_the_longest_wait():
    policy = RetryPolicy(base=0.5, longest_retry_after=30.0)
    assert 7.0 <= policy.wait(0, 7.0) <= 7.5
    assert 30.0 <= policy.wait(5, 30.0) <= 30.5
    with pytest.raises(RetryAfterTooLong, match="Retry-After 31 s is longer than the 30 s"):
        policy.wait(0, 31.0)


def test_allows_counts_retries_after_the_first_try():
    policy = RetryPolicy(retries=2)
    assert [policy.allows(a) for a in range(4)] == [True, True, False, False]
    assert not RetryPolicy(retries=0).allows(0)


def test_with_changes_only_the_given_fields():
    changed = ZUORA.with_(retries=1, base=None)
    assert (changed.retries, changed.base, changed.cap) == (1, ZUORA.base, ZUORA.cap)
    assert SALESFORCE.with_() == SALESFORCE


@pytest.mark.parametrize("fields", [{"retries": -1}, {"base": 0}, {"base": 2.0, "cap": 1.0}, {"jitter": 1.5}])
def test_an_impossible_policy_is_refused(fields):
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(**fields)


@pytest.mark.parametrize("value, seconds", [
    ("7", 7.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0), ("inf", float("inf")),
    ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0), ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    (None, None), ("", None), ("soon", None), ("nan", None), ("Wed, 99 Foo", None),
])
def test_parse_retry_after(value, seconds):
    now = dt.datetime(2015, 10, 21, 7, 28, tzinfo=dt.UTC)
    assert parse_retry_after(value, now=now) == seconds
