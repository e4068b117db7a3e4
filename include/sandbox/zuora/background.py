"""Jobs that run in the background, one after another (AQuA, the export object).

Jobs never run inside the request that submits them, as on Zuora: the answer says ``submitted`` or
``Pending`` and the client polls. :class:`JobWorker` is the thread, taking job ids from a queue;
:class:`BackgroundJobs` keeps a feature's jobs in the store's ``_jobs`` table and, at start-up,
hands the thread the jobs a previous run left unfinished, so a restarted sandbox finishes them.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any, Callable, Iterable

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


class BackgroundJobs:
    """A feature's jobs: kept in ``_jobs`` under ``kind`` (a JSON record each), run by one worker.

    A subclass says which key holds a job's id and status, which statuses are unfinished, and
    implements ``_run(job_id)`` and ``_fail(job_id, message)``.
    """

    kind = ""
    id_key = "id"
    status_key = "status"
    unfinished: tuple[str, ...] = ()

    def __init__(self, tenant: Any):
        self.tenant = tenant
        self.store = tenant.store
        self._lock = threading.RLock()  # the worker changes jobs while requests read them
        self.worker = JobWorker(f"{self.kind}-worker", self._run, self._fail)
        self.jobs: dict[str, dict[str, Any]] = {
            job_id: json.loads(info)
            for job_id, info in self.store.conn().execute(
                "SELECT id, info FROM _jobs WHERE kind = ? ORDER BY created", (self.kind,))
        }

    def start(self) -> None:
        self.worker.start([i for i, job in self.jobs.items() if job[self.status_key] in self.unfinished])

    def stop(self) -> None:
        self.worker.stop()

    def _save(self, job: dict[str, Any]) -> None:
        with self.store.write() as conn:
            conn.execute("INSERT OR REPLACE INTO _jobs(id, kind, created, info) VALUES (?, ?, ?, ?)",
                         (job[self.id_key], self.kind, job["_created"], json.dumps(job)))

    def _run(self, job_id: str) -> None:  # pragma: no cover - subclasses run their jobs
        raise NotImplementedError

    def _fail(self, job_id: str, message: str) -> None:  # pragma: no cover
        raise NotImplementedError
