"""When the next real-time sync starts, in Zuora 360's words: the one rule, used by every side.

"N more data change events, or at most M minutes, until the next sync" — shown by the status
endpoint, the sync page and the real-time sensor's log, and acted on by the real-time trigger, so
all of them say (and do) the same.

The rule (``docs/operations.md``, "Real-time sync"; Zuora 360's own): a session starts when ``threshold`` data change
events are pending, or when ``max_minutes`` have passed since the scope's last session ended,
whichever comes first. One exception keeps a continuous DAG from restarting a failing session in a
loop: after a session that ended *Failure* or *Stopped*, pending events start the next session
only ``backoff_minutes`` after it ended (the *hold*); the maximum-time rule is unchanged, so the
hold never delays a session beyond it.

A change of the sync mode starts the session at once (Zuora 360: "Turbo Sync automatically runs Full
Sync, first, when changing from Scheduled Sync to Real-time Sync or when changing from None to
Real-time Sync"): when :func:`zuora_sync.sync_mode.mode_change` says the next real-time session is
a full sync, it is due now (``due`` ``"mode_change"``), hold permitting — so a mode-change full
sync that failed is not restarted in a loop either.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

#: Session statuses after which pending events are held back.
UNSUCCESSFUL = ("Failure", "Stopped")
#: How long they are held back, in minutes (the trigger's default).
BACKOFF_MINUTES = 15.0


def _stamp(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@dataclass(frozen=True)
class NextSync:
    """The real-time trigger's verdict at one moment.

    ``minutes_left`` is how long, at most, until the next session starts with no further event
    (0 when it is due). ``hold_until`` is set while a hold applies (the last session ended
    ``last_session_status``, Failure or Stopped): pending events start no session before it.
    """

    pending_events: int
    threshold: int
    minutes_left: int
    due: str | None                              # "events", "max_time" or "mode_change" when a session starts now
    hold_until: dt.datetime | None = None
    last_session_status: str | None = None
    max_time_at: dt.datetime | None = None       # when the maximum time passes (None: no session ended yet)
    mode_change: str | None = None               # why the next real-time session is a full sync, if it is

    @property
    def events_needed(self) -> int:
        return max(self.threshold - self.pending_events, 0)

    @property
    def next_change_at(self) -> dt.datetime | None:
        """The next moment at which time alone changes the verdict (the hold ends, the maximum time passes)."""
        moments = [m for m in (self.hold_until, self.max_time_at) if m is not None]
        return min(moments) if moments else None

    def message(self) -> str:
        if self.due == "events":
            return f"{self.pending_events} data change events have accumulated: the next sync starts now"
        if self.due == "max_time":
            return "The maximum time between syncs has passed: the next sync starts now"
        if self.due == "mode_change":
            return "The sync mode changed to Real-time: a full sync starts now"
        at_most = f"at most {_plural(self.minutes_left, 'minute')}"
        if self.hold_until is not None and self.events_needed == 0:
            return (f"{self.pending_events} data change events are waiting, but the last session ended "
                    f"{self.last_session_status}: they start no sync before {_stamp(self.hold_until)}; "
                    f"{at_most} until the next sync")
        events = "event" if self.events_needed == 1 else "events"
        line = f"{self.events_needed} more data change {events}, or {at_most}, until the next sync"
        if self.hold_until is not None:
            line += (f" (events start it no earlier than {_stamp(self.hold_until)}: the last session ended "
                     f"{self.last_session_status})")
        return line

    def as_dict(self) -> dict:
        return {"pending_events": self.pending_events, "threshold": self.threshold,
                "events_needed": self.events_needed, "minutes_left": self.minutes_left, "due": self.due,
                "held_until": self.hold_until.isoformat() if self.hold_until else None,
                "mode_change": self.mode_change, "message": self.message()}


def next_sync(pending_events: int, threshold: int, last_session_end: dt.datetime | None, max_minutes: int,
              now: dt.datetime, *, last_session_status: str | None = None,
              backoff_minutes: float = BACKOFF_MINUTES, mode_change: str | None = None) -> NextSync:
    """Whether a real-time sync is due, and if not, how far away it is (module docstring).

    :param last_session_end: when the scope's last session ended; ``None``: no session yet, so the
        maximum time counts as passed (the first sync should not wait).
    :param last_session_status: that session's status; Failure or Stopped start a hold of
        ``backoff_minutes`` from its end.
    :param mode_change: why the next real-time session is a full sync after a change of the sync
        mode (:func:`zuora_sync.sync_mode.mode_change`), or ``None``: it is due now, unless held.
    """
    if last_session_end is None:
        return NextSync(pending_events, threshold, 0, "max_time", last_session_status=last_session_status,
                        mode_change=mode_change)
    max_time_at = last_session_end + dt.timedelta(minutes=max_minutes)
    hold_until = None
    if last_session_status in UNSUCCESSFUL and now < last_session_end + dt.timedelta(minutes=backoff_minutes):
        hold_until = last_session_end + dt.timedelta(minutes=backoff_minutes)
    if pending_events >= threshold and hold_until is None:
        due = "events"
    elif now >= max_time_at:
        due = "max_time"
    elif mode_change and hold_until is None:
        due = "mode_change"
    else:
        due = None
    if due is not None:
        minutes_left = 0
    else:
        starts_by = min(hold_until, max_time_at) if hold_until is not None and pending_events >= threshold \
            else max_time_at
        minutes_left = max(math.ceil((starts_by - now).total_seconds() / 60), 0)
    if mode_change and hold_until is not None and due is None and hold_until < max_time_at:
        minutes_left = max(math.ceil((hold_until - now).total_seconds() / 60), 0)  # the full sync starts then
    return NextSync(pending_events, threshold, minutes_left, due, hold_until, last_session_status, max_time_at,
                    mode_change)
