"""The sync's words, one place each: session types, statuses, modes, scopes, event sources.

Each is a ``StrEnum``: a member *is* its stored string (``SessionType.FULL == "Full"``), so sync
history, XCom, the settings Variable and the page keep the values they always had
(``docs/operations.md``), and a typo is an ``AttributeError`` instead of a silent mismatch.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EventSource", "Mode", "Scope", "SessionStatus", "SessionType"]


class SessionType(StrEnum):
    """What started a session, as sync history and Zuora 360 name it."""

    FULL = "Full"
    INCREMENTAL = "Incremental"
    REAL_TIME = "Real-time"
    ON_DEMAND = "On-demand"
    CATALOG = "Product Catalog"
    CLEANUP = "Sync Clean-up"


class SessionStatus(StrEnum):
    """How a session ended (or that it has not yet)."""

    RUNNING = "Running"
    FINISHED = "Finished"
    FINISHED_WITH_ERRORS = "Finished with Errors"
    FAILURE = "Failure"
    STOPPED = "Stopped"


class Mode(StrEnum):
    """Which rows of an object a session reads."""

    FULL = "full"           # everything of the scope
    WINDOW = "window"       # the changes in a window of time, plus every row to retry
    ACCOUNTS = "accounts"   # chosen customer accounts and what belongs to them


class Scope(StrEnum):
    """A set of objects synced, locked and cleaned up together."""

    ACCOUNTS = "accounts"   # Accounts & Related Objects
    CATALOG = "catalog"     # the Product Catalog


class EventSource(StrEnum):
    """Where the real-time sync learns of changes."""

    CALLOUTS = "callouts"   # Zuora's signed callout notifications
    POLLING = "polling"     # Data Query counts of changed rows
