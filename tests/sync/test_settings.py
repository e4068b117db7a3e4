"""The sync's settings (``zuora_sync.settings``): the lock lease in seconds, range-checked, and a
Variable that still says ``lock_lease_hours`` read with its old meaning."""

from __future__ import annotations

import pytest

from zuora_sync.settings import Settings, SettingsError, parse_settings


def test_the_lease_is_a_setting_in_seconds_that_still_reads_the_old_hours():
    assert Settings().lock_lease_seconds == 6 * 3600
    assert parse_settings({"lock_lease_seconds": 30}).lock_lease_seconds == 30
    assert parse_settings({"lock_lease_hours": 2}).lock_lease_seconds == 7200  # a Variable from before
    for raw, words in (({"lock_lease_seconds": 2}, "at least 3"),
                       ({"lock_lease_seconds": 8 * 24 * 3600}, "at most 604800"),
                       ({"lock_lease_seconds": "600"}, "whole number"),
                       ({"lock_lease_seconds": 1.5}, "whole number"),
                       ({"lock_lease_hours": 0}, "lock_lease_hours: must be a whole number of at least 1"),
                       ({"lock_lease_hours": 1, "lock_lease_seconds": 60}, "give lock_lease_seconds only")):
        with pytest.raises(SettingsError, match=words):
            parse_settings(raw)


def test_every_setting_has_a_type_and_a_range():
    """A setting added without a rule would accept anything: each field is either a bounded whole
    number, a choice, or has a check of its own (and its default passes it)."""
    from dataclasses import fields

    from zuora_sync.settings import INTEGER_RANGES, allowed, json_schema

    checked_otherwise = {"max_events_before_sync", "email_notifications", "manual_email_notifications",
                         "event_source", "email_recipients", "zuora_time_zone", "staging_url",
                         "scheduled_sync_frequency", "keep_staged_files"}
    names = {f.name for f in fields(Settings)}
    assert names == set(INTEGER_RANGES) | checked_otherwise, names ^ (set(INTEGER_RANGES) | checked_otherwise)
    assert set(allowed()) == names == set(json_schema()["properties"])
    for name, (low, high) in INTEGER_RANGES.items():
        assert low <= getattr(Settings(), name) <= high, name
        for wrong in (low - 1, high + 1, True, float(low), str(low), None, 10**30):
            with pytest.raises(SettingsError, match=f"^{name}: "):
                parse_settings({name: wrong})


def test_keep_staged_files_is_a_json_boolean():
    assert parse_settings({}).keep_staged_files is False
    assert parse_settings({"keep_staged_files": True}).keep_staged_files is True
    for wrong in (1, 0, "true", "yes", [True]):
        with pytest.raises(SettingsError, match="^keep_staged_files: "):
            parse_settings({"keep_staged_files": wrong})


@pytest.mark.parametrize("recipient", ["ops@example.com", "Ops Team <ops@example.com>", '"a b"@example.com',
                                       "ops@localhost", "  ops@example.com  "])
def test_a_recipient_is_one_rfc_5322_address(recipient):
    assert parse_settings({"email_recipients": [recipient]}).email_recipients == (recipient.strip(),)


@pytest.mark.parametrize("recipient", [
    "ops@example.com\r\nBcc: attacker@evil.example", "ops@example.com\nX: y", "ops@example.com, other@example.com",
    "group: ops@example.com;", "not-an-address", "@example.com", "a@", "a@b@c", "", " ", "é@example.com",
    "x" * 400 + "@example.com", 42, None, ["ops@example.com"],
])
def test_anything_else_is_not_a_recipient(recipient):
    with pytest.raises(SettingsError, match="^email_recipients: "):
        parse_settings({"email_recipients": [recipient]})


def test_choices_take_their_own_type_only():
    assert parse_settings({"max_events_before_sync": 50}).max_events_before_sync == 50
    for wrong in (True, 10.0, "10", [10], None):
        with pytest.raises(SettingsError, match="max_events_before_sync: .* is not allowed"):
            parse_settings({"max_events_before_sync": wrong})
    with pytest.raises(SettingsError, match="email_notifications"):
        parse_settings({"email_notifications": ["none"]})


@pytest.mark.parametrize("value, ok", [
    ("s3://bucket/prefix", True), ("file:///shared/staging", True), ("/shared/staging", True), ("", True),
    ("gs://b", True), (123, False), ("relative/dir", False), ("//host/share", False), ("s3://", False),
    ("s3://bucket/a b", False), ("s3://bucket\n", False), ("x" * 3000, False),
])
def test_the_staging_url_is_a_url_or_an_absolute_path(value, ok):
    if ok:
        assert parse_settings({"staging_url": value}).staging_url == value
    else:
        with pytest.raises(SettingsError, match="^staging_url: "):
            parse_settings({"staging_url": value})


@pytest.mark.parametrize("zone", [123, "Europe", "A" * 300, "../x", "/etc/localtime", "Mars/Olympus", "", None])
def test_the_time_zone_is_an_iana_zone(zone):
    with pytest.raises(SettingsError, match="^zuora_time_zone: "):
        parse_settings({"zuora_time_zone": zone})


def test_manual_syncs_email_every_session_by_default_and_the_schedule_is_a_choice():
    """The seed: All (Including Zero Records) is the default for on-demand and manual syncs; Zuora
    360's Scheduled Sync runs every two hours or daily."""
    assert Settings().manual_email_notifications == "all_including_zero_records"
    assert Settings().email_notifications == "errors_only"
    assert Settings().scheduled_sync_frequency == "every_2_hours"
    assert parse_settings({"scheduled_sync_frequency": "daily"}).scheduled_sync_frequency == "daily"
    for raw, words in (({"manual_email_notifications": "always"}, "manual_email_notifications: 'always' is not allowed"),
                       ({"scheduled_sync_frequency": "hourly"}, "choose one of \\['every_2_hours', 'daily'\\]")):
        with pytest.raises(SettingsError, match=words):
            parse_settings(raw)
