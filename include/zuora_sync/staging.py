"""The staged files between an object's extract and its load, and the manifest that lists them.

The extract and load tasks write, per object, into ``<staging_url>/<session>/<Object>/`` (an
``ObjectStoragePath``: local disk by default, any storage Airflow's ObjectStoragePath reaches when
``staging_url`` says so, so whichever worker runs the load can read them):

``upsert-NNNN.csv``   Bulk API 2.0 upsert files (chunks), each under :data:`MAX_FILE_BYTES` and
                      :data:`CHUNK_ROWS` rows: the load uploads each as soon as it is closed
``links-NNNN.csv``    second-pass columns (e.g. the customer hierarchy) for the kept rows
``delete-keys.txt``   external ids of rows to remove from Salesforce
``keep-keys.txt``     every kept external id, for a full sync's reconciliation
``rejected.jsonl``    rows whose values could not be converted, with the reason
``manifest.json``     :class:`Manifest`: what is there, and the counts (written last)
``selection.json``    which rows: the extract task's :class:`~zuora_sync.queries.Selection`, read
                      by the load task, which runs the row loop (``docs/architecture.md``)
``salesforce-keys.csv`` Salesforce's owned keys, staged by the extract task when the stored hashes
                      may not describe Salesforce; read by the load's hash filter and a full
                      sync's reconciliation (:mod:`zuora_sync.hashes`)
``hashes-pending.csv`` ``key,hash,kind`` of the rows sent, committed by the load once Salesforce
                      answered; ``hashes-seen.txt`` every key the hash filter saw

The load task reads only what the :class:`Manifest` names. Files hold customer data: on local disk
they are created ``0600`` in directories created ``0700`` (:mod:`zuora_sync.private_files`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zuora_sync.private_files import make_private_dir, open_private

__all__ = [
    "CHUNK_ROWS", "MAX_FILE_BYTES", "Counts", "CsvParts", "Manifest", "RejectedConversion", "StagedObject",
    "local_copy",
]

#: Bulk API 2.0 takes 100 MB a job; leave room for its base64 estimate.
MAX_FILE_BYTES = 90 * 1024 * 1024

#: Rows of the first upsert chunk and the most of any later one. Each chunk becomes one Bulk job
#: as soon as it is closed, so a small first chunk starts Salesforce early (it waits for nothing
#: but the first 4,000 rows); the size then doubles, so a large object costs few jobs: the 245,000
#: RatePlanCharge rows of the 100,000-account tenant are 7 (4k, 8k, ..., 64k, 64k, then the rest).
#: Each job costs about five API requests (create, upload, close, a poll, failed rows); SPEC §10
#: allows two per 10,000 records. No more than 64,000: Salesforce works through one chunk while
#: the next is converted, and a chunk twice the size of the one before can take longer to convert
#: than that one takes to load (at 128,000 Salesforce sat idle 4.9 s waiting for RatePlanCharge's
#: last chunk, docs/benchmarks.md). 64,000 rows of the widest object stay far below a file's 90 MB.
CHUNK_ROWS = (4_000, 64_000)

MANIFEST = "manifest.json"
DELETE_KEYS = "delete-keys.txt"
KEEP_KEYS = "keep-keys.txt"
REJECTED = "rejected.jsonl"
SELECTION = "selection.json"
#: Salesforce's owned records of the object, ``Id,<key>,SystemModstamp``, when the extract task
#: had to read them (the stored hashes were not trusted): read by the load and the reconciliation.
SALESFORCE_KEYS = "salesforce-keys.csv"


@dataclass
class Counts:
    """Rows an extract read and what it made of them."""

    extracted: int = 0
    upserts: int = 0
    deletes: int = 0
    rejected: int = 0


@dataclass
class Manifest:
    """What one object's extract staged, as the load reads it (and as it travels through XCom).

    :ivar directory: where the files are (an ``ObjectStoragePath`` URL or a local path).
    :ivar mode: the selection's mode (``window``, ``full``, ``accounts``).
    """

    object: str
    salesforce: str
    key: str
    mode: str
    directory: str
    counts: Counts = field(default_factory=Counts)
    upsert_files: list[str] = field(default_factory=list)
    link_files: list[str] = field(default_factory=list)
    on_delete: str = "delete"
    flag: str | None = None
    #: When rows were compared with their stored hashes (:mod:`zuora_sync.hashes`): ``created``,
    #: ``updated``, ``unchanged`` (not staged), ``trusted`` (the hashes described Salesforce), and
    #: ``salesforce_keys``, the staged export of Salesforce's owned keys when they did not.
    hashes: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (XCom, ``manifest.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """The manifest from :meth:`to_dict`'s data; unknown keys (a newer writer's) are ignored."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["counts"] = Counts(**(data.get("counts") or {}))
        return cls(**known)


@dataclass
class RejectedConversion:
    """A row whose values could not be converted for Salesforce (never sent, never dropped silently)."""

    external_id: str
    error_code: str
    message: str
    row: list[Any]


class StagedObject:
    """One object's staging directory: the writer's and the reader's view of the same files.

    :param directory: a ``Path`` or an ``ObjectStoragePath``.
    """

    def __init__(self, directory: Any):
        self.directory = directory

    def path(self, name: str) -> Any:
        """The staged file ``name``."""
        return self.directory / name

    # -- writing (the extract) -------------------------------------------------------------------

    def create(self) -> None:
        """Make the directory (``0700`` on local disk)."""
        make_private_dir(self.directory)

    def open_for_writing(self, name: str) -> Any:
        """A new text file in the directory (``0600`` on local disk)."""
        return open_private(self.directory / name, "w", encoding="utf-8")

    def csv_parts(self, prefix: str, header: list[str], max_bytes: int = MAX_FILE_BYTES, *,
                  chunk_rows: tuple[int, int] | None = None, on_close: Any = None) -> CsvParts:
        """A writer of ``<prefix>-NNNN.csv`` files under ``max_bytes`` each (see :class:`CsvParts`)."""
        return CsvParts(self.directory, prefix, header, max_bytes, chunk_rows=chunk_rows, on_close=on_close)

    def write_selection(self, selection: Any) -> None:
        """Keep the extract task's selection for the load task (which reads the rows)."""
        with self.open_for_writing(SELECTION) as handle:
            handle.write(json.dumps(selection.to_dict()))

    def selection(self) -> Any:
        """The selection :meth:`write_selection` kept."""
        from zuora_sync.queries import Selection

        with self.path(SELECTION).open("r", encoding="utf-8") as handle:
            return Selection.from_dict(json.load(handle))

    def write_manifest(self, manifest: Manifest) -> None:
        with self.open_for_writing(MANIFEST) as handle:
            handle.write(json.dumps(manifest.to_dict(), indent=1))

    # -- reading (the load) ------------------------------------------------------------------------

    def manifest(self) -> Manifest:
        with self.path(MANIFEST).open("r", encoding="utf-8") as handle:
            return Manifest.from_dict(json.load(handle))

    def keep_keys(self) -> Iterator[str]:
        """Every kept external id."""
        return read_keys(self.path(KEEP_KEYS))

    def delete_keys(self) -> Iterator[str]:
        """The external ids to remove."""
        return read_keys(self.path(DELETE_KEYS))

    def rejected_conversions(self) -> list[RejectedConversion]:
        with self.path(REJECTED).open("r", encoding="utf-8") as handle:
            return [RejectedConversion(**json.loads(line)) for line in handle if line.strip()]


def remove_run_directories(dag_directory: Any, *, keep: set[str] = frozenset()) -> list[str]:
    """Remove every run's staging directory under a DAG's (``<staging root>/<dag id>``) but those
    named in ``keep``; the names removed. Nothing there, nothing to do.

    :param dag_directory: a ``Path`` or an ``ObjectStoragePath``.
    """
    if not dag_directory.exists():
        return []
    removed = []
    for run in sorted(dag_directory.iterdir(), key=lambda p: p.name):
        if run.name in keep:
            continue
        if not run.is_dir():
            run.unlink()
        elif isinstance(run, Path):
            shutil.rmtree(run)
        else:
            run.rmdir(recursive=True)  # an ObjectStoragePath: the files under it on any storage
        removed.append(run.name)
    return removed


class CsvParts:
    """CSV parts under a size limit, each with the header, in a staging directory.

    :param chunk_rows: ``(first, most)``: the first part holds at most ``first`` rows, each next
        one twice as many as the one before, up to ``most``; ``None``: parts are cut by size only.
    :param on_close: called with a part's file name once the part is complete and closed (on
        object storage: uploaded), so a reader may start on it while later parts are written.
    """

    def __init__(self, directory: Any, prefix: str, header: list[str], max_bytes: int, *,
                 chunk_rows: tuple[int, int] | None = None, on_close: Any = None):
        self.directory, self.prefix, self.header, self.max_bytes = directory, prefix, header, max_bytes
        self.chunk_rows, self.on_close = chunk_rows, on_close
        self.files: list[str] = []
        self.rows = 0
        self._handle: Any = None
        self._size = 0
        self._part_rows = 0
        self._row_limit = chunk_rows[0] if chunk_rows else None
        # writerow returns what the file's write returns: here the CSV line itself, built by the
        # csv module's C code, with no buffer to reset per row.
        self._writer = csv.writer(_Echo(), lineterminator="\n")

    def _encode(self, cells: list[str]) -> bytes:
        return self._writer.writerow(cells).encode("utf-8")

    def write(self, cells: list[str]) -> None:
        line = self._encode(cells)
        size = len(line)
        if self._handle is None or self._size + size > self.max_bytes or \
                (self._row_limit is not None and self._part_rows >= self._row_limit):
            self._open()
        self._handle.write(line)
        self._size += size
        self._part_rows += 1
        self.rows += 1

    def _open(self) -> None:
        if self._handle is not None and self.chunk_rows:
            self._row_limit = min(self._row_limit * 2, self.chunk_rows[1])
        self.close()
        self._part_rows = 0
        name = f"{self.prefix}-{len(self.files):04d}.csv"
        self._handle = open_private(self.directory / name, "wb")  # UTF-8 bytes, encoded once per row
        header = self._encode(self.header)
        self._handle.write(header)
        self._size = len(header)
        self.files.append(name)

    def close(self) -> None:
        """Close the part being written (it is complete) and tell ``on_close``."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            if self.on_close is not None:
                self.on_close(self.files[-1])


class _Echo:
    """A "file" for :class:`csv.writer` whose ``write`` returns the line it is given."""

    write = staticmethod(str)


def read_keys(path: Any) -> Iterator[str]:
    """The external ids in a staged ``*-keys.txt`` file."""
    with path.open("r", encoding="utf-8") as handle:
        for line in handle:
            key = line.strip()
            if key:
                yield key


@contextlib.contextmanager
def local_copy(path: Any) -> Iterator[Path]:
    """A local file with ``path``'s content: the file itself on local storage, else a temporary copy."""
    if isinstance(path, Path):
        yield path
        return
    if getattr(path, "protocol", "file") in ("file", "local", ""):
        yield Path(path.path)
        return
    with tempfile.TemporaryDirectory(prefix="zuora-sync-") as tmp:
        target = Path(tmp) / path.name
        with path.open("rb") as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        yield target
