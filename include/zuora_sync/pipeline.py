"""An object's extract run beside its load: staged chunks handed over through a bounded queue.

The load task of a pipelined sync (``docs/architecture.md``, "A sync session") reads the object
from Zuora itself: :class:`ChunkStream` runs :func:`zuora_sync.extract.extract_object` (download →
keep rule → convert → staged files) in a producer thread, and hands the load each upsert file as
soon as the extract has closed it, while the extract goes on with the next one. So Salesforce
works on the first chunk while Zuora's rows for the later ones are still being read and converted.

Memory stays flat: the queue holds only the *names* of closed files (the rows are on the staging
storage), and at most ``depth`` of them: an extract that runs ahead of the uploads waits.

Failure: an error in the producer (a failed Data Query job, a truncated result file) is raised in
the load's thread from :meth:`ChunkStream.files`, after the chunks closed before it; the load then
fails without recording the object's results (:func:`zuora_sync.writing.upsert_object`), and its
retry reads the object again. An error in the load stops the producer (:meth:`ChunkStream.close`).

:class:`StagedFiles` is the same interface over an object staged before (its :class:`Manifest`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from zuora_sync.staging import Manifest

__all__ = ["QUEUE_DEPTH", "ChunkStream", "StagedFiles"]

log = logging.getLogger(__name__)

#: Closed upsert chunks waiting for the load, at most.
QUEUE_DEPTH = 4

_WAKE = 0.2  # seconds between a blocked producer's checks for cancellation
_JOIN_SECONDS = 60


class _Cancelled(Exception):
    """Internal: the load stopped reading; the producer unwinds (closing its Data Query stream)."""


class _Done:
    def __init__(self, manifest: Manifest):
        self.manifest = manifest


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class StagedFiles:
    """The chunks of an object staged before, as a :class:`ChunkStream` hands them (no thread)."""

    def __init__(self, manifest: Manifest):
        self._manifest = manifest

    def files(self) -> Iterator[str]:
        """The manifest's upsert files."""
        yield from self._manifest.upsert_files

    def manifest(self) -> Manifest:
        return self._manifest

    def close(self) -> None:
        """Nothing to stop."""


class ChunkStream:
    """Run an extract in a producer thread; yield its upsert files as they are closed.

    :param produce: runs the extract, calling its argument with each closed upsert file's name,
        and returns the object's :class:`Manifest` (e.g. ``extract_object(..., on_upsert_file=f)``).
    :param depth: closed files the queue holds at most; a producer that is that far ahead waits.

    Use as a context manager: leaving it stops the producer (if it still runs) and joins it.
    """

    def __init__(self, produce: Callable[[Callable[[str], None]], Manifest], *, depth: int = QUEUE_DEPTH,
                 name: str = "extract"):
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._produce = produce
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"zuora-sync-{name}", daemon=True)
        self._manifest: Manifest | None = None
        self._started = False
        #: The most closed files that waited in the queue at once (never more than ``depth``).
        self.peak_depth = 0
        self.depth = depth

    # -- the producer's side --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            outcome: Any = _Done(self._produce(self._put))
        except _Cancelled:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the load's thread, which raises it
            outcome = _Failed(exc)
        try:
            self._offer(outcome)
        except _Cancelled:
            pass

    def _put(self, name: str) -> None:
        self._offer(name)
        self.peak_depth = max(self.peak_depth, self._queue.qsize())

    def _offer(self, item: Any) -> None:
        """Put ``item`` in the queue, waiting while it is full, unless the load stopped reading."""
        while True:
            if self._cancelled.is_set():
                raise _Cancelled()
            try:
                self._queue.put(item, timeout=_WAKE)
                return
            except queue.Full:
                continue

    # -- the load's side ------------------------------------------------------------------------

    def __enter__(self) -> ChunkStream:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        """Start the producer (once)."""
        if not self._started:
            self._started = True
            self._thread.start()

    def files(self) -> Iterator[str]:
        """Each upsert file's name as soon as it is closed; then the manifest is known.

        :raises Exception: whatever the extract raised, after the files closed before it.
        """
        self.start()
        while True:
            item = self._queue.get()
            if isinstance(item, str):
                yield item
            elif isinstance(item, _Done):
                self._manifest = item.manifest
                return
            else:
                raise item.error

    def manifest(self) -> Manifest:
        """The extract's manifest; only after :meth:`files` has been read to its end."""
        if self._manifest is None:
            raise RuntimeError("the extract has not finished: read files() to the end first")
        return self._manifest

    def close(self) -> None:
        """Stop the producer if it still runs, and wait for its thread."""
        self._cancelled.set()
        if self._started:
            self._thread.join(_JOIN_SECONDS)
            if self._thread.is_alive():  # e.g. still waiting on a Data Query job; it stops at its next chunk
                log.warning("The extract thread has not stopped after %d s; leaving it (a daemon)", _JOIN_SECONDS)
