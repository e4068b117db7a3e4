"""Reconciliation and watermarks: what a session removes from Salesforce, and what it marks synced.

A full sync reconciles: every Salesforce record the sync owns (it carries the external id) whose
key is not among the rows Zuora keeps is removed; records people created themselves are never
touched. A window moves an object's watermark only when it joins it. The rules are in
``docs/operations.md`` ("Reconciliation", "Watermarks").
"""

from __future__ import annotations

import csv
import datetime as dt
import sqlite3
from collections.abc import Iterable
from pathlib import Path

__all__ = ["advanced_watermark", "orphan_keys", "orphans"]


def orphans(salesforce_csv: Path, keep_keys: Iterable[str], workdir: Path) -> dict[str, str]:
    """Records Salesforce holds whose key Zuora no longer keeps, ``{Salesforce Id: key}``.

    Both sides go through an SQLite file in ``workdir``, so memory stays flat at any size.

    :param salesforce_csv: ``Id,<key>`` rows exported from Salesforce (header first).
    :param keep_keys: every key the extract kept.
    """
    db = sqlite3.connect(workdir / "reconcile.db")
    try:
        db.execute("CREATE TABLE keep (key TEXT PRIMARY KEY) WITHOUT ROWID")
        db.execute("CREATE TABLE sf (id TEXT, key TEXT)")
        db.executemany("INSERT OR IGNORE INTO keep VALUES (?)", ((k,) for k in keep_keys))
        with open(salesforce_csv, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            db.executemany("INSERT INTO sf VALUES (?, ?)", ((row[0], row[1]) for row in reader if row))
        # Only records the sync owns (they carry the external id) are ever removed.
        return dict(db.execute("SELECT id, key FROM sf WHERE key IS NOT NULL AND key <> '' "
                               "AND key NOT IN (SELECT key FROM keep)"))
    finally:
        db.close()


def orphan_keys(known: Iterable[str], keep_keys: Iterable[str], workdir: Path) -> list[str]:
    """The keys of ``known`` (the records the stored hashes say Salesforce holds) that Zuora no
    longer keeps: a full sync's orphans when the hashes describe Salesforce
    (:func:`zuora_sync.hashes.fingerprint_trusted`), found without asking Salesforce. On disk, as
    :func:`orphans`.
    """
    db = sqlite3.connect(workdir / "reconcile-keys.db")
    try:
        db.execute("CREATE TABLE keep (key TEXT PRIMARY KEY) WITHOUT ROWID")
        db.execute("CREATE TABLE known (key TEXT PRIMARY KEY) WITHOUT ROWID")
        db.executemany("INSERT OR IGNORE INTO keep VALUES (?)", ((k,) for k in keep_keys))
        db.executemany("INSERT OR IGNORE INTO known VALUES (?)", ((k,) for k in known))
        return [row[0] for row in db.execute("SELECT key FROM known WHERE key NOT IN (SELECT key FROM keep)")]
    finally:
        db.close()


def advanced_watermark(current: dt.datetime | None, window: tuple[dt.datetime, dt.datetime], *,
                       started: dt.datetime) -> dt.datetime | None:
    """Where an object's watermark goes once a window of its changes is safely in Salesforce, or
    ``None`` to leave it where it is.

    The watermark says "every change before this is in Salesforce". A window ``[start, end]``
    extends that only when it starts at or before the watermark; otherwise (a backfill, or a form
    window, after an earlier session failed) the changes between the watermark and the window's
    start are still unsynced, and moving the watermark past them would lose them. It moves to the
    window's end, never beyond the session's start (later changes may not be visible to this
    session yet), and never back.

    :param current: the object's watermark now (``None``: none yet, so nothing says the history
        before the window is synced).
    :param window: the window the session read (look-back included).
    :param started: when the session began.
    """
    start, end = window
    if current is None or start > current:
        return None
    moved = min(end, started)
    return moved if moved > current else None
