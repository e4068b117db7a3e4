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
#: Zuora 360's choices for "Maximum Data Change Events Before Sync" (the seed document).
MAX_EVENTS_CHOICES = (1, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500)
#: Zuora 360's email notification options: None, Errors Only, All (Excluding / Including Zero Records).
EMAIL_CHOICES = ("none", "errors_only", "all_excluding_zero_records", "all_including_zero_records")
EVENT_SOURCES = ("callouts", "polling")
#: ``lock_lease_seconds``' bounds: it is renewed every third of it (so at least every second), and a
#: crashed session's lock blocks every sync until it expires (so a week at most).
LOCK_LEASE_RANGE = (3, 7 * 24 * 3600)
#: Settings renamed since they were introduced: old key → (new key, factor from the old unit to the
#: new). A stored Variable that still uses an old key keeps working, with the same meaning.
RENAMED = {"lock_lease_hours": ("lock_lease_seconds", 3600)}


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
    #: A session's lock expires this many seconds after its last renewal. A running session renews
    #: it every third of this; only a crashed one's lock expires, and the next session takes it over.
    #: (It was ``lock_lease_hours`` before; a Variable that still says so is read in hours.)
    lock_lease_seconds: int = 6 * 3600
    #: Real-time sync starts after this many data change events ...
    max_events_before_sync: int = 10
    #: ... or after this many minutes since the last session ended, whichever comes first.
    max_minutes_between_syncs: int = 120
    #: A real-time session that begins more than max_minutes_between_syncs + this many minutes after
    #: the last session ended follows a pause of real-time sync: it is a full sync (zuora_sync.sync_mode).
    mode_change_grace_minutes: int = 60
    #: After each session: none, errors_only, all_excluding_zero_records or all_including_zero_records.
    email_notifications: str = "errors_only"
    #: Who gets the session emails (through the ``smtp_default`` connection).
    email_recipients: tuple[str, ...] = ()
    #: Where real-time events come from: Zuora callouts to the web app, or polling Zuora for changes
    #: (for deployments that Zuora cannot call; costs Zuora API requests).
    event_source: str = "callouts"
    #: How often the real-time trigger looks at the event count (and, when polling, at Zuora).
    trigger_poll_seconds: int = 5
    #: A cleanup above this many records is refused unless the form accepts it (Zuora's advice: 1,000,000).
    cleanup_record_limit: int = 1_000_000

    def __post_init__(self) -> None:
        if self.max_events_before_sync not in MAX_EVENTS_CHOICES:
            raise SettingsError(f"max_events_before_sync: {self.max_events_before_sync!r} is not allowed; "
                                f"choose one of {list(MAX_EVENTS_CHOICES)}")
        if self.email_notifications not in EMAIL_CHOICES:
            raise SettingsError(f"email_notifications: {self.email_notifications!r} is not allowed; "
                                f"choose one of {list(EMAIL_CHOICES)}")
        if self.event_source not in EVENT_SOURCES:
            raise SettingsError(f"event_source: {self.event_source!r} is not allowed; choose one of {list(EVENT_SOURCES)}")
        recipients = self.email_recipients
        if isinstance(recipients, str):
            recipients = tuple(r.strip() for r in recipients.split(",") if r.strip())
        if not isinstance(recipients, (list, tuple)) or not all(isinstance(r, str) and "@" in r for r in recipients):
            raise SettingsError(f"email_recipients: a list of email addresses, got {self.email_recipients!r}")
        object.__setattr__(self, "email_recipients", tuple(recipients))
        try:
            ZoneInfo(self.zuora_time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"zuora_time_zone: {self.zuora_time_zone!r} is not an IANA time zone (e.g. America/Los_Angeles, UTC)"
            ) from None
        for name, low in (("lookback_minutes", 0), ("salesforce_api_reserve", 0), ("retention_days", 1),
                          ("lock_poll_seconds", 1), ("lock_lease_seconds", LOCK_LEASE_RANGE[0]),
                          ("max_minutes_between_syncs", 1),
                          ("trigger_poll_seconds", 1), ("cleanup_record_limit", 1),
                          ("mode_change_grace_minutes", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SettingsError(f"{name}: must be a whole number of at least {low}, got {value!r}")
        if self.lock_lease_seconds > LOCK_LEASE_RANGE[1]:
            raise SettingsError(f"lock_lease_seconds: at most {LOCK_LEASE_RANGE[1]} (a week), got "
                                f"{self.lock_lease_seconds!r}; a crashed session's lock would block syncs that long")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zuora_time_zone)

    def staging_root(self) -> str:
        if self.staging_url:
            return self.staging_url.rstrip("/")
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        return "file://" + os.path.join(os.path.abspath(home), "zuora_sync", "staging")

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["email_recipients"] = list(self.email_recipients)
        return values


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
    raw = upgrade_keys(raw)
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SettingsError(f"{VARIABLE}: unknown settings {unknown}; allowed: {sorted(known)}")
    return Settings(**raw)


def upgrade_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with the old keys of :data:`RENAMED` replaced by their new ones, values converted.

    Giving a setting under both names is refused: which one was meant cannot be known.
    """
    upgraded = dict(raw)
    for old, (new, factor) in RENAMED.items():
        if old not in upgraded:
            continue
        value = upgraded.pop(old)
        if new in upgraded:
            raise SettingsError(f"{old} and {new} are the same setting ({old} is its old name); give {new} only")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SettingsError(f"{old}: must be a whole number of at least 1, got {value!r} (or give {new})")
        upgraded[new] = value * factor
    return upgraded


def names_of(key: str) -> set[str]:
    """Every name a setting goes by: its current one and its old ones (:data:`RENAMED`)."""
    current = RENAMED[key][0] if key in RENAMED else key
    return {current} | {old for old, (new, _) in RENAMED.items() if new == current}


def load_settings() -> Settings:
    """The current settings, from the Airflow Variable (defaults when it is not set)."""
    from airflow.sdk import Variable

    return parse_settings(Variable.get(VARIABLE, default=None))


def merged(current: Settings, changes: dict[str, Any]) -> Settings:
    """``current`` with ``changes`` applied, validated (unknown keys refused)."""
    return parse_settings({**current.as_dict(), **changes})
