"""A background thread that runs a feature's queued jobs one after another (AQuA, the export object).

Jobs never run inside the request that submits them, as on Zuora: the answer says ``submitted`` or
``Pending`` and the client polls. The thread takes job ids from a queue; at start-up it is given the
jobs a previous run left unfinished, so a restarted sandbox finishes them.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Iterable

log = logging.getLogger(__name__)


class Stopping(Exception):
    """The sandbox is stopping: leave the job as it is, to be run again at the next start."""


class JobWorker:
    """One thread, one queue of job ids, one ``run`` callable."""

    def __init__(self, name: str, run: Callable[[str], None], fail: Callable[[str, str], None]):
        self.name = name
        self._run = run
        self._fail = fail
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def start(self, unfinished: Iterable[str]) -> None:
        self.stopping.clear()
        self._queue = queue.Queue()
        for job_id in unfinished:
            self._queue.put(job_id)
        self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def check(self) -> None:
        """Raise :class:`Stopping` when the sandbox is stopping (called between steps of a job)."""
        if self.stopping.is_set():
            raise Stopping

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None or self.stopping.is_set():
                return
            try:
                self._run(job_id)
            except Stopping:
                pass
            except Exception as exc:  # a bug must fail the job visibly, not kill the thread
                log.exception("%s job %s failed", self.name, job_id)
                self._fail(job_id, f"Internal error: {exc}")
