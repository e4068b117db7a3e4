"""The tenant's time zone: how Zuora shows datetimes and reads those written without an offset.

Zuora stores instants, but ZOQL answers and Data Query results show them in the tenant's time
zone, and a datetime literal without an offset is read in it. Zuora system time is Pacific, so
that is the default; ``set_time_zone`` (admin API) picks another IANA zone. The sandbox stores UTC
and converts at the edges, so a client that mixes up zones sees the wrong window, as it would
against Zuora.
"""

from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sandbox.zuora.store import TenantStore

DEFAULT_TIME_ZONE = "America/Los_Angeles"  # Zuora system time (Pacific)
TIME_ZONE_SETTING = "time_zone"


@functools.cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def tenant_time_zone(store: TenantStore) -> ZoneInfo:
    """The tenant's time zone (setting ``time_zone``, default Pacific)."""
    return zone(store.get_setting(TIME_ZONE_SETTING) or DEFAULT_TIME_ZONE)


def set_time_zone(store: TenantStore, name: str) -> None:
    """Set the tenant's time zone to an IANA name; raises ``ValueError`` for an unknown one."""
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone: {name}") from None
    store.set_setting(TIME_ZONE_SETTING, name)


def stored_to_local(stored: str, tz: dt.tzinfo) -> dt.datetime:
    """A stored UTC ``YYYY-MM-DD HH:MM:SS[.ffffff]`` value as an aware datetime in ``tz``."""
    return dt.datetime.fromisoformat(stored).replace(tzinfo=dt.timezone.utc).astimezone(tz)
