"""The sync's settings: one validated JSON Airflow Variable, ``zuora_sync_settings``.

Everything a user may tune without code lives here, with its default; a wrong value is refused
with what is allowed, and unknown keys are refused too (a typo must not be silently ignored).
Every setting has a type and a range (:data:`INTEGER_RANGES`, the choices, :func:`check_recipient`,
:func:`check_staging_url`): a value the sync could not use (a number of minutes that overflows a
date, a URL that is not a string, a header injected into an email address) is refused here, when it
is written and wherever it is read, not later in a task or the trigger.
Read settings inside tasks, not at DAG-parse time.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, fields
from email.headerregistry import HeaderRegistry
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from zuora_sync.vocabulary import EventSource

VARIABLE = "zuora_sync_settings"
#: Zuora 360's choices for "Maximum Data Change Events Before Sync".
MAX_EVENTS_CHOICES = (1, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500)
#: Zuora 360's email notification options: None, Errors Only, All (Excluding / Including Zero Records).
EMAIL_CHOICES = ("none", "errors_only", "all_excluding_zero_records", "all_including_zero_records")
EVENT_SOURCES = tuple(source.value for source in EventSource)
#: How often Scheduled mode runs ``zuora_incremental_sync`` (Zuora 360's Scheduled Sync: every two
#: hours or daily), as the cron expression of its ``CronDataIntervalTimetable`` (UTC).
SCHEDULES = {"every_2_hours": "0 */2 * * *", "daily": "0 0 * * *"}
#: ``max_events_before_sync`` below this uses more Salesforce API requests (Zuora 360: "We recommend
#: that you set this to 10 or higher").
RECOMMENDED_MIN_EVENTS = 10
#: ``lock_lease_seconds``' bounds: it is renewed every third of it (so at least every second), and a
#: crashed session's lock blocks every sync until it expires (so a week at most).
LOCK_LEASE_RANGE = (3, 7 * 24 * 3600)
#: Settings renamed since they were introduced: old key → (new key, factor from the old unit to the
#: new). A stored Variable that still uses an old key keeps working, with the same meaning.
RENAMED = {"lock_lease_hours": ("lock_lease_seconds", 3600)}
#: Every whole-number setting's bounds (inclusive). The upper bounds keep values inside what dates,
#: timers and the databases can hold (minutes beyond a week overflow nothing, 10**10 would).
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "lookback_minutes": (0, 24 * 60),
    "salesforce_api_reserve": (0, 100_000_000),
    "retention_days": (1, 3650),
    "lock_poll_seconds": (1, 3600),
    "lock_lease_seconds": LOCK_LEASE_RANGE,
    "max_minutes_between_syncs": (1, 7 * 24 * 60),
    "mode_change_grace_minutes": (0, 7 * 24 * 60),
    "trigger_poll_seconds": (1, 3600),
    "cleanup_record_limit": (1, 1_000_000_000),
}
#: Why a bound is what it is, where the range alone does not say.
_RANGE_NOTES = {"lock_lease_seconds": "; a crashed session's lock would block syncs that long"}
MAX_RECIPIENTS = 100
#: An address fits in 254 characters (RFC 5321); a display name may add some.
MAX_RECIPIENT_LENGTH = 320
MAX_URL_LENGTH = 2048
MAX_TIME_ZONE_LENGTH = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")


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
    #: Keep each session's staged files (they hold customer records) after it ends, for inspection;
    #: by default a session that did not fail removes them (``EndSyncSessionOperator``).
    keep_staged_files: bool = False
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
    #: After each recurring session (scheduled, real-time, backfill): none, errors_only,
    #: all_excluding_zero_records or all_including_zero_records.
    email_notifications: str = "errors_only"
    #: The same choice for manual and on-demand sessions (a run someone triggered, and cleanups):
    #: Zuora 360's default for them is All (Including Zero Records).
    manual_email_notifications: str = "all_including_zero_records"
    #: Who gets the session emails (through the ``smtp_default`` connection).
    email_recipients: tuple[str, ...] = ()
    #: Where real-time events come from: Zuora callouts to the web app, or polling Zuora for changes
    #: (for deployments that Zuora cannot call; costs Zuora API requests).
    event_source: str = "callouts"
    #: How often the real-time trigger looks at the event count (and, when polling, at Zuora).
    trigger_poll_seconds: int = 5
    #: A cleanup above this many records is refused unless the form accepts it (Zuora's advice: 1,000,000).
    cleanup_record_limit: int = 1_000_000
    #: How often ``zuora_incremental_sync`` runs in Scheduled mode: every_2_hours or daily (at 00:00
    #: UTC). Read when Airflow parses the DAG file, so a change applies at its next parse.
    scheduled_sync_frequency: str = "every_2_hours"

    def __post_init__(self) -> None:
        for name, (low, high) in INTEGER_RANGES.items():
            check_whole_number(name, getattr(self, name), low, high)
        check_choice("max_events_before_sync", self.max_events_before_sync, MAX_EVENTS_CHOICES)
        check_choice("email_notifications", self.email_notifications, EMAIL_CHOICES)
        check_choice("manual_email_notifications", self.manual_email_notifications, EMAIL_CHOICES)
        check_choice("scheduled_sync_frequency", self.scheduled_sync_frequency, tuple(SCHEDULES))
        check_choice("event_source", self.event_source, EVENT_SOURCES)
        check_choice("keep_staged_files", self.keep_staged_files, (False, True))
        recipients = self.email_recipients
        if isinstance(recipients, str):
            recipients = tuple(r.strip() for r in recipients.split(",") if r.strip())
        if not isinstance(recipients, (list, tuple)) or len(recipients) > MAX_RECIPIENTS:
            raise SettingsError(f"email_recipients: a list of at most {MAX_RECIPIENTS} email addresses, "
                                f"got {_shown(self.email_recipients)}")
        object.__setattr__(self, "email_recipients", tuple(check_recipient(r) for r in recipients))
        check_time_zone("zuora_time_zone", self.zuora_time_zone)
        if self.staging_url not in (None, ""):  # empty: the default, as before
            check_staging_url(self.staging_url)

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


def _shown(value: Any) -> str:
    """A refused value as an error message quotes it: its repr, cut short."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's 4300-digit conversion limit
        return "a number too large to show"
    return text if len(text) <= 80 else text[:77] + "..."


def check_whole_number(name: str, value: Any, low: int, high: int) -> int:
    """``value`` if it is an ``int`` (not a bool, not ``10.0``) within ``low``..``high``."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SettingsError(f"{name}: must be a whole number of at least {low} and at most {high}, "
                            f"got {_shown(value)}{_RANGE_NOTES.get(name, '')}")
    return value


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """``value`` if it is one of ``choices`` and of the same type (``True`` and ``10.0`` are not 1 and 10)."""
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        raise SettingsError(f"{name}: {_shown(value)} is not allowed; choose one of {list(choices)}")
    return value


def check_time_zone(name: str, value: Any) -> ZoneInfo:
    """The IANA time zone named ``value`` (a string such as ``America/Los_Angeles``)."""
    problem = f"{name}: {_shown(value)} is not an IANA time zone (e.g. America/Los_Angeles, UTC)"
    if not isinstance(value, str) or not value or len(value) > MAX_TIME_ZONE_LENGTH:
        raise SettingsError(problem)
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory of the zone database
        raise SettingsError(problem) from None


def check_recipient(value: Any) -> str:
    """``value`` if it is one RFC 5322 address (``ops@example.com`` or ``Ops <ops@example.com>``).

    Parsed by the standard library's email header parser; a list, a group, a line break (a header
    injected into the session email) or anything the parser had to repair is refused.
    """
    problem = (f"email_recipients: {_shown(value)} is not an email address (a list of email addresses, "
               "one RFC 5322 address each, e.g. ops@example.com or Ops <ops@example.com>)")
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_RECIPIENT_LENGTH or _CONTROL.search(value):
        raise SettingsError(problem)
    try:
        header = HeaderRegistry()("To", value.strip())
        groups, defects = header.groups, header.defects
    except Exception:  # the parser raises more than HeaderParseError on some inputs (e.g. IndexError on "a@")
        raise SettingsError(problem) from None
    if defects or len(groups) != 1 or groups[0].display_name is not None or len(groups[0].addresses) != 1:
        raise SettingsError(problem)
    address = groups[0].addresses[0]
    if not address.username or not address.domain:
        raise SettingsError(problem)
    return value.strip()


def check_staging_url(value: Any) -> str:
    """``value`` if it is where staged files can go: a URL (``s3://bucket/prefix``, ``file:///path``)
    or an absolute local path, one line of text."""
    if (not isinstance(value, str) or len(value) > MAX_URL_LENGTH or _CONTROL.search(value)
            or not (_URL.match(value) or (value.startswith("/") and not value.startswith("//")))):
        raise SettingsError(f"staging_url: {_shown(value)} is not a URL (e.g. s3://bucket/prefix or "
                            "file:///shared/staging) or an absolute path")
    return value


def allowed() -> dict[str, Any]:
    """What each setting accepts, for forms and error messages: choices, ranges, or words."""
    values: dict[str, Any] = {
        "max_events_before_sync": list(MAX_EVENTS_CHOICES),
        "email_notifications": list(EMAIL_CHOICES),
        "manual_email_notifications": list(EMAIL_CHOICES),
        "scheduled_sync_frequency": list(SCHEDULES),
        "event_source": list(EVENT_SOURCES),
        "email_recipients": f"a list of at most {MAX_RECIPIENTS} email addresses, one RFC 5322 address each",
        "zuora_time_zone": "an IANA time zone, e.g. America/Los_Angeles",
        "staging_url": "a URL (s3://bucket/prefix, file:///shared/staging) or an absolute path; null: the default",
        "keep_staged_files": [False, True],
    }
    for name, (low, high) in INTEGER_RANGES.items():
        values[name] = {"minimum": low, "maximum": high}
    return values


def json_schema() -> dict[str, Any]:
    """The settings as a JSON Schema object (the ``PUT /settings`` body: any subset, ``null`` resets one)."""
    recipient = {"type": "string", "format": "email", "maxLength": MAX_RECIPIENT_LENGTH}
    properties: dict[str, Any] = {
        "max_events_before_sync": {"enum": [*MAX_EVENTS_CHOICES, None]},
        "email_notifications": {"enum": [*EMAIL_CHOICES, None]},
        "manual_email_notifications": {"enum": [*EMAIL_CHOICES, None]},
        "scheduled_sync_frequency": {"enum": [*SCHEDULES, None]},
        "event_source": {"enum": [*EVENT_SOURCES, None]},
        "email_recipients": {"anyOf": [{"type": "array", "maxItems": MAX_RECIPIENTS, "items": recipient},
                                       {"type": "string", "description": "addresses separated by commas"},
                                       {"type": "null"}]},
        "zuora_time_zone": {"type": ["string", "null"], "maxLength": MAX_TIME_ZONE_LENGTH,
                            "examples": ["America/Los_Angeles"]},
        "staging_url": {"type": ["string", "null"], "maxLength": MAX_URL_LENGTH,
                        "examples": ["s3://bucket/zuora-sync"]},
        "keep_staged_files": {"type": ["boolean", "null"]},
    }
    for name, (low, high) in INTEGER_RANGES.items():
        properties[name] = {"type": ["integer", "null"], "minimum": low, "maximum": high}
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "description": "The settings to change; null puts one back to its default."}


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
        # In the old unit, with the new setting's upper bound: the message speaks of what was given.
        check_whole_number(old, value, 1, INTEGER_RANGES[new][1] // factor)
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


def incremental_schedule() -> str:
    """The cron expression of ``zuora_incremental_sync``'s timetable: :data:`SCHEDULES` of the
    ``scheduled_sync_frequency`` setting.

    The one setting read when Airflow parses a DAG file (a schedule cannot be read later). Only
    that key is looked at: any other problem in the Variable is for the tasks to report, and must
    not take the DAG away. The Variable is validated when it is written, so a wrong value here was
    typed into it by hand: the DAG then fails to import with this error, which Airflow shows
    among its DAG import errors.

    :raises SettingsError: ``scheduled_sync_frequency`` is not one of :data:`SCHEDULES`.
    """
    from airflow.sdk import Variable

    raw = Variable.get(VARIABLE, default=None)
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        value = {}  # the tasks say what is wrong with it
    frequency = value.get("scheduled_sync_frequency") if isinstance(value, dict) else None
    if frequency is None:
        return SCHEDULES[Settings.scheduled_sync_frequency]
    try:
        check_choice("scheduled_sync_frequency", frequency, tuple(SCHEDULES))
    except SettingsError as exc:
        raise SettingsError(f"{VARIABLE}: {exc} (correct it on the Zuora Sync page or in Admin → Variables; "
                            "zuora_incremental_sync cannot be scheduled until then)") from None
    return SCHEDULES[frequency]


def merged(current: Settings, changes: dict[str, Any]) -> Settings:
    """``current`` with ``changes`` applied, validated (unknown keys refused)."""
    return parse_settings({**current.as_dict(), **changes})
