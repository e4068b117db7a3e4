"""The org's Bulk worker: one background thread that runs Bulk API 2.0 jobs and Bulk API 1.0 batches.

Salesforce never processes Bulk work inside the request that submits it: a Bulk 2.0 job is queued
by ``UploadComplete`` and a Bulk 1.0 batch is ``Queued`` when posted, and both are picked up later
by the platform's asynchronous processing. The sandbox does the same with one worker for both APIs,
so they wait in one line and go through the DML engine at the same speed (ten thousand rows to a
transaction); a client that polls pays what it pays against a real org.

Work items are ``(kind, id)`` pairs in submission order. Each kind registers how to run one item
and which items a previous run of the sandbox left unfinished, so a restart picks them up again.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable

log = logging.getLogger(__name__)


@dataclass
class _Kind:
    run: Callable[[str], None]
    unfinished: Callable[[], Iterable[str]]
    fail: Callable[[str, str], None]


class BulkWorker:
    """One thread that runs queued Bulk work items, in order, for every registered kind."""

    def __init__(self) -> None:
        self._kinds: dict[str, _Kind] = {}
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def register(self, kind: str, run: Callable[[str], None], unfinished: Callable[[], Iterable[str]],
                 fail: Callable[[str, str], None]) -> None:
        """Say how to ``run`` an item of ``kind``, which are ``unfinished`` at start-up, and how to
        ``fail`` one (with a message) when running it raised: a bug must fail the item visibly, not
        kill the worker."""
        self._kinds[kind] = _Kind(run, unfinished, fail)

    def submit(self, kind: str, item_id: str) -> None:
        """Queue ``item_id`` of ``kind``; it runs after everything queued before it."""
        self._queue.put((kind, item_id))

    def start(self) -> None:
        """Start the thread and queue what a previous run of the sandbox left unfinished."""
        self._queue = queue.Queue()  # no stop sentinel left over from an earlier run
        self._thread = threading.Thread(target=self._work, name="bulk-worker", daemon=True)
        self._thread.start()
        for kind, spec in self._kinds.items():
            for item_id in spec.unfinished():
                self.submit(kind, item_id)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            kind, item_id = item
            spec = self._kinds[kind]
            try:
                spec.run(item_id)
            except Exception as exc:
                log.exception("Bulk %s %s failed", kind, item_id)
                spec.fail(item_id, f"UNKNOWN_EXCEPTION : {exc}")
