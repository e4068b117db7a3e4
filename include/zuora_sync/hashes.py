"""Send only what changed: each record's hash, compared with the one Salesforce last accepted.

The extract's row loop (run by the load task, in its producer thread: :mod:`zuora_sync.pipeline`)
computes a hash of every staged row's mapped values (the Bulk CSV cells, flag included, and the
second-pass link values) and asks a :class:`HashFilter` whether to send it:

* **unchanged** — the stored hash is the same and Salesforce still holds the record: not sent;
* **updated** — Salesforce holds the record, but the hash differs (or none is stored): sent;
* **created** — Salesforce lacks the record: sent.

Sent rows are written as *pending* ``key,hash,kind`` lines to a staged file next to the upsert
parts. The load (:func:`zuora_sync.writing.upsert_object`) commits them once Salesforce's results
are known (:func:`commit_plan`): only a row Salesforce accepted exactly as staged keeps a hash; a
rejected row and a row whose second-pass links failed get none (and lose an old one), so the next
session sends them again, unless Salesforce would refuse them again as they are
(:mod:`zuora_sync.refusals`). A row sent again with an optional lookup emptied
(:mod:`zuora_sync.lookups`) keeps an :func:`emptied_mark`: it is not sent while its emptied
lookups' targets stay out of Salesforce, and goes (writing the lookup) once one is in.

Whether Salesforce "still holds" a record as hashed: the stored hashes describe Salesforce as long
as nothing else changed it since the last session ended (:func:`fingerprint_trusted`); then a
record is present exactly when it has a hash. Otherwise the extract task reads Salesforce's owned
keys with their ``SystemModstamp`` and stages them, and the load's row loop asks :class:`KeySet`:
a record Salesforce lacks is created again, one changed there since the last session (a person's
edit, a lookup Salesforce cleared when its target was deleted) is sent again. ``docs/operations.md`` ("Send only what changed") says when hashes are cleared.

Everything here is pure (no Salesforce, no state store): the callers pass functions and files in.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from json.encoder import encode_basestring as _json_string  # json.dumps's own, ensure_ascii=False
from typing import IO, Any

__all__ = [
    "CREATED", "EMPTIED", "NOT_AS_STAGED", "UNCHANGED", "UPDATED", "HashCounts", "HashFilter", "HashSource", "KeySet", "PENDING_HASHES", "SEEN_KEYS",
    "REFUSED_UNSENT", "commit_plan", "emptied_mark", "fingerprint_trusted", "read_pending", "row_hash", "salesforce_instant",
    "StoredHashes",
]

#: Staged file of the rows sent, ``key,hash,kind`` (kind: ``c`` created, ``u`` updated).
PENDING_HASHES = "hashes-pending.csv"
#: Staged file of every key the filter saw (sent or not): what a full sync keeps, flagged rows included.
SEEN_KEYS = "hashes-seen.txt"
#: Staged file of the keys not sent because Salesforce would refuse them again (:mod:`zuora_sync.refusals`).
REFUSED_UNSENT = "hashes-refused.txt"

CREATED, UPDATED, UNCHANGED = "c", "u", "="
#: Stored for a record Salesforce holds, but not as staged (see :func:`commit_plan`): no row's hash.
NOT_AS_STAGED = "-"
#: Starts the mark of a row written with optional lookups emptied (:func:`emptied_mark`).
EMPTIED = "~"
_MARK_LENGTH = 64   # the state store's hash column


def emptied_mark(digest: str, positions: Iterable[int]) -> str:
    """What is stored for a row Salesforce took with optional lookups emptied because their targets
    were not in Salesforce: the row's hash as staged and the emptied cells' positions (in the row's
    cells, then its second-pass links). While the row and those targets stay as they are, the row
    is not sent again; once a target is in, the row goes and its lookup is written.
    """
    mark = f"{EMPTIED}{digest}:{','.join(str(p) for p in sorted(set(positions)))}"
    return mark if len(mark) <= _MARK_LENGTH else NOT_AS_STAGED


def row_hash(cells: Iterable[str], links: Iterable[str] = ()) -> str:
    """The hash of a staged row: its Bulk CSV cells and its second-pass link values, in order.

    JSON keeps the cells apart (no separator can be confused with a value); SHA-256, 32 hex digits
    (128 bits) are plenty to tell one record's versions apart.
    """
    cells, links = list(cells), list(links)
    try:  # the JSON text json.dumps writes for two lists of strings, without building an encoder per row
        payload = f"[[{','.join(map(_json_string, cells))}],[{','.join(map(_json_string, links))}]]"
    except TypeError:  # a value that is not a string: json.dumps says how it is written
        payload = json.dumps([cells, links], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


@dataclass
class HashCounts:
    """What the filter decided: rows that would be created, updated, or are unchanged (not sent)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    #: Of the unchanged: rows Salesforce refused before and would refuse again as they are (not sent).
    refused: int = 0
    #: Of the unchanged: rows written with optional lookups emptied, whose targets are still not in.
    emptied: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged,
                "refused": self.refused, "emptied": self.emptied}


class StoredHashes:
    """The stored hashes of one object, read from the state store a key range at a time.

    Rows arrive in key order (the extract pages Data Query by key), so the next ``page`` stored
    hashes from the first key asked cover the rows that follow; memory stays flat at any size. A
    key outside the cached range (another part of the selection, another order) reads a new range:
    correct in any order, only slower.

    :param read: ``read(from_key, limit)`` → ``[(key, hash), ...]`` in key order, keys ``>= from_key``
        (:meth:`zuora_sync.state.StateStore.stored_hashes`).
    """

    def __init__(self, read: Callable[[str, int], list[tuple[str, str]]], page: int = 5000):
        self._read = read
        self._page = page
        self._low: str | None = None
        self._high: str | None = None   # None with _low set: everything from _low on is cached
        self._cache: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        if self._low is None or key < self._low or (self._high is not None and key > self._high):
            rows = self._read(key, self._page)
            self._cache = dict(rows)
            self._low = key
            self._high = rows[-1][0] if len(rows) >= self._page else None
        return self._cache.get(key)


#: :class:`KeySet`: a range that answered fewer keys than this before a key fell outside it suggests
#: keys out of order: the next ones are looked up alone, up to ``_ALONE_BEFORE_RANGE`` of them.
_RANGE_SERVES = 16
_ALONE_BEFORE_RANGE = 256


class KeySet:
    """Salesforce's owned records of an object (``Id,<key>,SystemModstamp`` rows), on disk.

    An SQLite file in a private working directory, so membership tests stay cheap and memory flat.

    :param since: the newest ``SystemModstamp`` Salesforce had when the last writing session ended
        (the recorded fingerprint), or None when unknown. A record changed after it was changed
        outside the sync (by a person, or by Salesforce itself: deleting a lookup's target clears
        the lookup), so its stored hash no longer says what Salesforce holds: it is *touched*.
        Unknown: every record counts as touched.
    """

    def __init__(self, salesforce_csv: Path, workdir: Path, since: str | None = None, *, page: int = 5000):
        self._page = page
        self._low: str | None = None
        self._high: str | None = None   # None with _low set: every key from _low on is cached
        self._cache: dict[str, int] = {}
        self._served = self._alone = 0  # keys the cached range answered; keys looked up alone since
        self._db = sqlite3.connect(workdir / "salesforce-keys.db")
        self._db.execute("CREATE TABLE k (key TEXT PRIMARY KEY, touched INTEGER) WITHOUT ROWID")
        limit = salesforce_instant(since) if since else None
        with open(salesforce_csv, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            self._db.executemany("INSERT OR IGNORE INTO k VALUES (?, ?)", (
                (row[1], int(limit is None or len(row) < 3 or not row[2] or salesforce_instant(row[2]) > limit))
                for row in reader if len(row) > 1 and row[1]))
        self._db.commit()

    def __contains__(self, key: object) -> bool:
        return self._lookup(key) is not None

    def touched(self, key: str) -> bool:
        """Whether Salesforce changed the record since the last session ended (see ``since``)."""
        return bool(self._lookup(key))

    def _lookup(self, key: object) -> int | None:
        """The record's ``touched`` flag, or None when Salesforce lacks it.

        Rows arrive in key order, so keys are read a range at a time (as :class:`StoredHashes`
        does): the next ``page`` keys from the key asked; a key inside the cached range that is not
        in it is not in Salesforce. A key outside it reads a new range, unless the current one served
        few keys (keys out of order): then it is looked up alone, until enough such look-ups passed
        to try a range again. Correct in any order; fast in key order.
        """
        if isinstance(key, str) and self._low is not None and key >= self._low and (
                self._high is None or key <= self._high):
            self._served += 1
            return self._cache.get(key)
        if not isinstance(key, str) or (self._low is not None and self._served < _RANGE_SERVES
                                        and self._alone < _ALONE_BEFORE_RANGE):
            self._alone += 1
            row = self._db.execute("SELECT touched FROM k WHERE key = ?", (key,)).fetchone()
            return None if row is None else row[0]
        rows = self._db.execute("SELECT key, touched FROM k WHERE key >= ? ORDER BY key LIMIT ?",
                                (key, self._page)).fetchall()
        self._cache = dict(rows)
        self._low = key
        self._high = rows[-1][0] if len(rows) >= self._page else None
        self._served, self._alone = 1, 0
        return self._cache.get(key)

    def missing(self, keys: Iterable[str]) -> Iterator[str]:
        """The keys given that Salesforce lacks."""
        for key in keys:
            if key not in self:
                yield key

    def close(self) -> None:
        self._db.close()


def salesforce_instant(text: str) -> dt.datetime:
    """A Salesforce datetime as REST (``…000+0000``) or a Bulk query CSV (``…000Z``) writes it."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    value = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", value)
    return dt.datetime.fromisoformat(value)


class HashFilter:
    """Decides, row by row in the extract's loop, whether a staged row goes to Salesforce.

    :param stored: the stored hash of a key, or None (a :class:`StoredHashes` ``get``).
    :param present: whether Salesforce holds a key; None when the stored hashes describe Salesforce
        (:func:`fingerprint_trusted`): then a record is present exactly when it has a hash.
    :param pending: where the sent rows' ``key,hash,kind`` lines go (:data:`PENDING_HASHES`).
    :param seen: where every key goes (:data:`SEEN_KEYS`), or None.
    :param force: send every row (a full sync's ``force``; an on-demand sync), classified all the same.
    :param touched: whether Salesforce changed a record since the last session (a :class:`KeySet`
        ``touched``): then its stored hash proves nothing and the row is sent. None: nothing was.
    :param settled: whether Salesforce would refuse a row again as it is (a
        :class:`zuora_sync.refusals.Refusals` ``settled``): then it is not sent, its key goes to
        ``unsent`` (it stays rejected). None: rows refused before are sent again.
    :param absent: whether the target of the optional lookup at a position of the row's cells
        (then links) is still not in Salesforce, given the lookup's value; a row stored with
        :func:`emptied_mark` is not sent while each of its emptied lookups' targets is absent.
    :param own: the positions whose lookup targets this very object (a hierarchy parent). Such a
        target may arrive in this session, in a row read later: a row waiting for one is held
        back and sent at the end (:meth:`due`) if its target was sent meanwhile — unless the target
        went only as a retry of a refusal with unchanged values (``retried``), which Salesforce most
        likely refuses again; should it take it, the next session writes the lookup.
    """

    def __init__(self, stored: Callable[[str], str | None], present: Callable[[str], bool] | None,
                 pending: IO[str], seen: IO[str] | None = None, *, force: bool = False,
                 touched: Callable[[str], bool] | None = None,
                 settled: Callable[[str, list[str]], bool] | None = None, unsent: IO[str] | None = None,
                 absent: Callable[[int, str], bool] | None = None, own: Iterable[int] = (),
                 retried: Callable[[str, list[str]], bool] | None = None):
        self._own = frozenset(own)
        self._retried = retried
        self._later: list[tuple[str, str, list[str], list[str], list[str]]] = []
        self._sent: IO[str] | None = None   # keys sent, on local disk, when rows may wait on their own object
        self._stored = stored
        self._present = present
        self._touched = touched
        self._settled = settled
        self._unsent = unsent
        self._absent = absent
        self._pending = csv.writer(pending, lineterminator="\n")
        self._seen = seen
        self.force = force
        self.counts = HashCounts()
        #: Whether the row last admitted is one Salesforce lacks (created, not updated).
        self.created = False

    def admit(self, key: str, cells: list[str], links: Iterable[str] = ()) -> bool:
        """Whether to send this row; a row sent is noted as pending, every row counted."""
        links = list(links)
        digest = row_hash(cells, links)
        old = self._stored(key)
        there = (old is not None) if self._present is None else self._present(key)
        if self._seen is not None:
            self._seen.write(key + "\n")
        if not self.force and not (self._touched and self._touched(key)):
            if there and old == digest:
                self.counts.unchanged += 1
                return False
            emptied = self._still_emptied(old, digest, cells, links) if there else None
            if emptied is not None:
                self.counts.unchanged += 1
                self.counts.emptied += 1
                mine = [(cells + links)[p] for p in emptied if p in self._own]
                if mine:
                    self._later.append((key, digest, cells, links, mine))
                return False
            if self._settled is not None and self._settled(key, cells):
                self.counts.unchanged += 1
                self.counts.refused += 1
                if self._unsent is not None:
                    self._unsent.write(key + "\n")
                return False
        kind = UPDATED if there else CREATED
        self.created = kind == CREATED
        if kind == CREATED:
            self.counts.created += 1
        else:
            self.counts.updated += 1
        self._pending.writerow([key, digest, kind])
        if self._own and not (self._retried and self._retried(key, cells)):
            if self._sent is None:
                self._sent = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="zuora-sync-sent-")
            self._sent.write(key + "\n")
        return True

    def due(self) -> list[tuple[str, list[str], list[str]]]:
        """``(key, cells, links)`` of the rows held back for a target of their own object that was
        sent in this session after all: send them now (noted as pending updates)."""
        if not self._later:
            return []
        wanted = {target for *_, targets in self._later for target in targets}
        sent: set[str] = set()
        if self._sent is not None:
            self._sent.seek(0)
            sent = {line.strip() for line in self._sent if line.strip() in wanted}
        ready = []
        for key, digest, cells, links, targets in self._later:
            if any(target in sent for target in targets):
                self.counts.unchanged -= 1
                self.counts.emptied -= 1
                self.counts.updated += 1
                self._pending.writerow([key, digest, UPDATED])
                ready.append((key, cells, links))
        self._later = []
        return ready

    def close(self) -> None:
        if self._sent is not None:
            self._sent.close()
            self._sent = None

    def _still_emptied(self, old: str | None, digest: str, cells: list[str], links: list[str]) -> list[int] | None:
        """The emptied positions when ``old`` is the :func:`emptied_mark` of this very row and its emptied
        targets are all still absent; else None (the row is sent)."""
        if self._absent is None or not old or not old.startswith(EMPTIED):
            return None
        stored, _, where = old[1:].partition(":")
        if stored != digest or not where:
            return None
        values = cells + links
        try:
            positions = [int(p) for p in where.split(",")]
        except ValueError:
            return None
        if all(0 <= p < len(values) and values[p] and self._absent(p, values[p]) for p in positions):
            return positions
        return None


@dataclass
class HashSource:
    """What a :class:`HashFilter` compares with, before the extract opens its staged files.

    :ivar stored: the stored hash of a key, or None (a :class:`StoredHashes` ``get``).
    :ivar present: Salesforce's keys (a :class:`KeySet` ``__contains__``), or None when the stored
        hashes describe Salesforce (:func:`fingerprint_trusted`).
    :ivar force: send every row.
    :ivar touched: records Salesforce changed since the last session (a :class:`KeySet` ``touched``).
    :ivar settled: rows Salesforce would refuse again as they are (a :class:`~zuora_sync.refusals.Refusals` ``settled``).
    :ivar absent: whether an emptied optional lookup's target is still not in Salesforce (see :class:`HashFilter`).
    """

    stored: Callable[[str], str | None]
    present: Callable[[str], bool] | None = None
    force: bool = False
    touched: Callable[[str], bool] | None = None
    settled: Callable[[str, list[str]], bool] | None = None
    absent: Callable[[int, str], bool] | None = None
    own: tuple[int, ...] = ()
    retried: Callable[[str, list[str]], bool] | None = None

    def filter(self, pending: IO[str], seen: IO[str] | None = None, unsent: IO[str] | None = None) -> HashFilter:
        return HashFilter(self.stored, self.present, pending, seen, force=self.force, touched=self.touched,
                          settled=self.settled, unsent=unsent, absent=self.absent, own=self.own,
                          retried=self.retried)


def read_pending(lines: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """``(key, hash, kind)`` of a :data:`PENDING_HASHES` file's lines."""
    for row in csv.reader(lines):
        if len(row) == 3:
            yield row[0], row[1], row[2]


@dataclass
class Commit:
    """What the load stores once Salesforce's results are known (:func:`commit_plan`)."""

    keep: list[tuple[str, str]] = field(default_factory=list)   # (key, hash) to store
    drop: list[str] = field(default_factory=list)                # keys whose hash goes
    created: int = 0
    updated: int = 0


def commit_plan(pending: Iterable[tuple[str, str, str]], failed: set[str], partial: set[str],
                emptied: dict[str, Iterable[int]] | None = None) -> Commit:
    """Which pending hashes to store: a real hash only for rows Salesforce accepted exactly as staged.

    A row Salesforce holds but not as staged — written with an optional lookup emptied, its
    second-pass link refused, or an update refused (its old values stay) — gets :data:`NOT_AS_STAGED`
    instead of a hash: it equals no row's hash, so the row is sent again next session, while the
    store still knows Salesforce holds the record (so :func:`fingerprint_trusted` can hold). A
    refused row Salesforce never had gets nothing.

    :param failed: keys refused in the first pass (or by the conversion).
    :param partial: keys written, but not as staged (lookup emptied, second-pass link refused).
    :param emptied: of the partial keys, those written with only optional lookups emptied (their
        targets not in Salesforce), with the emptied cells' positions: they get :func:`emptied_mark`.
    :returns: hashes to keep and to drop, and the created / updated counts of the rows written
        (a partial row was written, so it counts; a failed one did not).
    """
    result = Commit()
    for key, digest, kind in pending:
        if key in failed:
            if kind == CREATED:
                result.drop.append(key)
            else:
                result.keep.append((key, NOT_AS_STAGED))
            continue
        if kind == CREATED:
            result.created += 1
        else:
            result.updated += 1
        if key not in partial:
            result.keep.append((key, digest))
        elif emptied and key in emptied:
            result.keep.append((key, emptied_mark(digest, emptied[key])))
        else:
            result.keep.append((key, NOT_AS_STAGED))
    return result


def fingerprint_trusted(now: dict[str, Any] | None, recorded: dict[str, Any] | None, hashed_now: int) -> bool:
    """Whether the stored hashes still say exactly which owned records Salesforce holds.

    :param now: Salesforce's ``{"record_count", "last_modified"}`` of the object's owned records
        (carrying the external id) at this session's start.
    :param recorded: the same, measured when the last writing session ended, with ``hashed_count``
        (the hashes the store had then); None when unknown.
    :param hashed_now: the hashes the store has now.

    Every hashed record was accepted by Salesforce and hashes go before their record is removed, so
    the hashed keys are a subset of Salesforce's owned keys. When the counts are equal the sets
    are too; and when Salesforce's count and newest ``SystemModstamp`` did not move since, nobody
    deleted, restored, created or edited an owned record in between.
    """
    if now is None or recorded is None:
        return False
    return (int(now["record_count"]) == int(recorded["record_count"]) == int(recorded["hashed_count"]) == hashed_now
            and (now.get("last_modified") or "") == (recorded.get("last_modified") or ""))
