"""How far away the next real-time sync is, in Zuora 360's words.

"N more data change events, or at most M minutes, until the next sync" — shown by the status
endpoint, the sync page and the real-time sensor's log, so all three say the same.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class NextSync:
    """The real-time trigger's state at one moment."""

    pending_events: int
    threshold: int
    minutes_left: int
    due: str | None       # "events" or "max_time" when a sync should start now, else None

    @property
    def events_needed(self) -> int:
        return max(self.threshold - self.pending_events, 0)

    def message(self) -> str:
        if self.due == "events":
            return f"{self.pending_events} data change events have accumulated: the next sync starts now"
        if self.due == "max_time":
            return "The maximum time between syncs has passed: the next sync starts now"
        events = "event" if self.events_needed == 1 else "events"
        minutes = "minute" if self.minutes_left == 1 else "minutes"
        return f"{self.events_needed} more data change {events}, or at most {self.minutes_left} {minutes}, until the next sync"

    def as_dict(self) -> dict:
        return {"pending_events": self.pending_events, "threshold": self.threshold,
                "events_needed": self.events_needed, "minutes_left": self.minutes_left, "due": self.due,
                "message": self.message()}


def next_sync(pending_events: int, threshold: int, last_session_end: dt.datetime | None, max_minutes: int,
              now: dt.datetime) -> NextSync:
    """Whether a real-time sync is due: ``threshold`` events, or ``max_minutes`` since the last session ended.

    With no session yet, the maximum time counts as passed: the first sync should not wait.
    """
    if last_session_end is None:
        elapsed = float("inf")
    else:
        elapsed = (now - last_session_end).total_seconds() / 60
    minutes_left = 0 if math.isinf(elapsed) else max(math.ceil(max_minutes - elapsed), 0)
    if pending_events >= threshold:
        due = "events"
    elif elapsed >= max_minutes:
        due = "max_time"
    else:
        due = None
    return NextSync(pending_events, threshold, minutes_left, due)
