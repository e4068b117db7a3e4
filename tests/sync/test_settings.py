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
