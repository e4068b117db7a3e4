"""The sync's settings: one validated JSON Airflow Variable, ``zuora_sync_settings``.

Everything a user may tune without code lives here, with its default; a wrong value is refused
with what is allowed, and unknown keys are refused too (a typo must not be silently ignored).
Read settings inside tasks, not at DAG-parse time.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

VARIABLE = "zuora_sync_settings"


class SettingsError(ValueError):
    """Invalid settings; the message names the setting and what is allowed."""


@dataclass(frozen=True)
class Settings:
    """The sync's settings and their defaults."""

    #: Zuora shows and reads datetimes in the tenant's time zone (Zuora system time is Pacific).
    zuora_time_zone: str = "America/Los_Angeles"
    #: Incremental windows start this many minutes early, so changes committed late are not missed.
    lookback_minutes: int = 5
    #: Stop a session cleanly when fewer Salesforce API requests than this remain today.
    salesforce_api_reserve: int = 500
    #: Where staged files go (an ObjectStoragePath URL, e.g. s3://bucket/prefix); default: under AIRFLOW_HOME.
    staging_url: str | None = None
    #: How long sync history, rejected records and events are kept.
    retention_days: int = 90
    #: A session waiting for another one's lock checks again after this many seconds (deferred meanwhile).
    lock_poll_seconds: int = 30
    #: A lock not released (a crashed session) expires after this many hours.
    lock_lease_hours: int = 6

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.zuora_time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"zuora_time_zone: {self.zuora_time_zone!r} is not an IANA time zone (e.g. America/Los_Angeles, UTC)"
            ) from None
        for name, low in (("lookback_minutes", 0), ("salesforce_api_reserve", 0), ("retention_days", 1),
                          ("lock_poll_seconds", 1), ("lock_lease_hours", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SettingsError(f"{name}: must be a whole number of at least {low}, got {value!r}")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zuora_time_zone)

    def staging_root(self) -> str:
        if self.staging_url:
            return self.staging_url.rstrip("/")
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        return "file://" + os.path.join(os.path.abspath(home), "zuora_sync", "staging")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_settings(raw: str | dict | None) -> Settings:
    """Settings from the Variable's JSON text (or a dict); ``None`` gives the defaults."""
    if raw in (None, ""):
        return Settings()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise SettingsError(f"{VARIABLE}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise SettingsError(f"{VARIABLE}: must be a JSON object")
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SettingsError(f"{VARIABLE}: unknown settings {unknown}; allowed: {sorted(known)}")
    return Settings(**raw)


def load_settings() -> Settings:
    """The current settings, from the Airflow Variable (defaults when it is not set)."""
    from airflow.sdk import Variable

    return parse_settings(Variable.get(VARIABLE, default=None))
