"""Bulk API 2.0 on the Salesforce provider's connection: the wire, the login and the retries.

:class:`SalesforceBulkHook` extends the provider's ``SalesforceHook`` (so ``salesforce_default``
stays the provider's connection, unchanged) with what the sync needs below the job level:

* **Counting.** Every request to Salesforce's API (REST, Bulk 2.0; logins excluded, as
  Salesforce does not count them) increments :attr:`~SalesforceBulkHook.api_requests`. The count
  is taken in a transport adapter mounted on the ``requests.Session`` the simple-salesforce client
  uses, so nothing bypasses it; the same adapter reads ``Sforce-Limit-Info: api-usage=used/max``.
* **Re-login.** A ``401 INVALID_SESSION_ID`` means the request was refused before it did anything,
  so :meth:`~SalesforceBulkHook.call` logs in again and repeats it.
* **One login per process.** A hook reuses the session the process's last hook on the same
  connection logged in (kept in memory only, never written or logged): the tasks that run in one
  process (every task of a ``dag.test()`` run) log in once, not once per task. A reused session
  that has expired answers ``INVALID_SESSION_ID`` and is replaced by a new login, as above.
* **Budget.** ``403 REQUEST_LIMIT_EXCEEDED`` raises :class:`ApiBudgetExhausted`, never retried.
* **Transient failures.** ``429``/``5xx`` and dropped connections are retried under the
  :data:`zuora_sync.retry.SALESFORCE` policy, for calls the caller says are safe to repeat.
* **Bulk 2.0 endpoints** through simple-salesforce's public pieces (``Salesforce.bulk2_url``,
  ``.headers``, ``.session`` and ``simple_salesforce.util.call_salesforce``, which raises its
  ``SalesforceError`` types): jobs, the CSV upload streamed from a file, job state, failed results
  and query result pages streamed to files.

What a job means (create → upload → close → poll, restarting a job whose upload is in doubt) is
the loader's business (:mod:`zuora_sync.salesforce_loader`). Credentials and session ids are never
logged.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import requests
from airflow.providers.salesforce.hooks.salesforce import SalesforceHook
from requests.adapters import HTTPAdapter

from zuora_sync.retry import SALESFORCE as SALESFORCE_RETRY
from zuora_sync.retry import RetryAfterTooLong, RetryPolicy, parse_retry_after

if TYPE_CHECKING:  # pragma: no cover
    from simple_salesforce import Salesforce

__all__ = ["ApiBudgetExhausted", "QueryPage", "SalesforceBulkHook", "describe_error", "forget_sessions",
           "is_transient"]

log = logging.getLogger(__name__)

#: Statuses worth another try: Salesforce busy, a proxy in the way, a brief outage.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})

_LIMIT_INFO = re.compile(r"(?:^|[^-])api-usage=(\d+)/(\d+)")
_API_PATHS = ("/services/data/", "/services/async/", "/services/apexrest/")
_JSON = "application/json"
_CSV = "text/csv; charset=UTF-8"

T = TypeVar("T")


class ApiBudgetExhausted(Exception):
    """Salesforce's daily API allowance is used up, or below the configured reserve.

    Raised for ``REQUEST_LIMIT_EXCEEDED`` (HTTP 403) and when the remaining daily requests fall
    below the loader's ``api_reserve`` before a job starts. It is not a failure of the data: a
    session stops cleanly, keeps its watermarks, and the next session resumes
    (``docs/operations.md``, "API budget").

    :param message: what happened, in words.
    :param remaining: remaining daily API requests, when known.
    :param maximum: the daily allowance, when known.
    :param reserve: the reserve the loader was asked to keep.
    """

    def __init__(self, message: str, *, remaining: int | None = None, maximum: int | None = None,
                 reserve: int | None = None):
        super().__init__(message)
        self.remaining = remaining
        self.maximum = maximum
        self.reserve = reserve


@dataclass
class QueryPage:
    """One results page of a Bulk 2.0 query job, streamed to a file.

    :ivar file: the CSV file (header included).
    :ivar count: rows in it (``Sforce-NumberOfRecords``).
    :ivar locator: the next page's locator; empty on the last page.
    """

    file: str
    count: int
    locator: str


#: Sessions this process logged in, per connection (:meth:`SalesforceBulkHook._session_key`):
#: ``(session id, instance URL, API version)``. Memory only.
_SESSIONS: dict[tuple, tuple[str, str, str]] = {}
_SESSIONS_LOCK = threading.Lock()


def forget_sessions() -> None:
    """Drop the Salesforce sessions this process holds: the next hook logs in afresh."""
    with _SESSIONS_LOCK:
        _SESSIONS.clear()


class _CountingAdapter(HTTPAdapter):
    """Counts API requests, reads ``Sforce-Limit-Info`` and puts a timeout on every request.

    Retries are the hook's business, never urllib3's (``max_retries=0``), so that a request is
    never repeated behind the hook's back, an upload least of all.
    """

    def __init__(self, hook: SalesforceBulkHook, timeout: float | tuple[float, float]):
        super().__init__(max_retries=0)
        self._hook = hook
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        if urlsplit(request.url or "").path.startswith(_API_PATHS):
            # Counted when sent: a request whose answer was lost may still have counted at Salesforce.
            self._hook._count_request()
        response = super().send(request, **kwargs)
        self._hook._note_response(response)
        return response


class SalesforceBulkHook(SalesforceHook):
    """The provider's ``SalesforceHook`` with counting, re-login, retries and Bulk 2.0 calls.

    Nothing touches the network until the first call. Thread-safe for counting only: one hook per
    task (several query jobs may be in flight, but calls are made from one thread).

    :param salesforce_conn_id: the Airflow connection (the provider's ``salesforce`` type). Its
        extra ``poll_interval`` (seconds) is read by :attr:`poll_interval_hint`.
    :param retry: the retry policy for transient failures; default :data:`zuora_sync.retry.SALESFORCE`.
    :param request_timeout: ``requests`` timeout (connect, read) for every HTTP request.
    """

    def __init__(
        self,
        salesforce_conn_id: str = SalesforceHook.default_conn_name,
        *,
        retry: RetryPolicy = SALESFORCE_RETRY,
        request_timeout: float | tuple[float, float] = (30.0, 600.0),
    ):
        http = requests.Session()
        adapter = _CountingAdapter(self, request_timeout)
        http.mount("https://", adapter)
        http.mount("http://", adapter)
        super().__init__(salesforce_conn_id=salesforce_conn_id, session=http)
        self.retry = retry
        #: Every HTTP request to Salesforce's API made through this hook (logins excluded).
        self.api_requests = 0
        #: Logins after the first one (``INVALID_SESSION_ID`` recoveries).
        self.relogins = 0
        #: ``(used, max)`` from the last ``Sforce-Limit-Info`` header seen, if any.
        self.api_usage: tuple[int, int] | None = None
        self._count_lock = threading.Lock()
        self._retry_after: float | None = None

    # -- connection ---------------------------------------------------------------------------

    def get_conn(self) -> Salesforce:
        """The logged-in simple-salesforce client (logging in on first use, unless this process
        holds a session of the same connection already; a dropped connection during the login is
        retried under the policy)."""
        if "conn" in self.__dict__:
            return self.__dict__["conn"]  # the provider's cached_property: this hook's client
        reused = self._reuse_session()
        if reused is not None:
            self.__dict__["conn"] = reused
            return reused
        attempt = 0
        while True:
            try:
                conn = super().get_conn()
                self._remember_session(conn)
                return conn
            except requests.RequestException as exc:
                if isinstance(exc, requests.exceptions.SSLError) or not self.retry.allows(attempt):
                    raise
                log.warning("Salesforce login failed (%s); retrying", type(exc).__name__)
                self.sleep_before_retry(attempt)
                attempt += 1

    def relogin(self, what: str) -> None:
        """Log in again (the session expired or was revoked) before repeating ``what``."""
        log.info("Salesforce answered INVALID_SESSION_ID to %s; logging in again", what)
        stale = self.__dict__.pop("conn", None)  # the provider caches the client in a cached_property
        with _SESSIONS_LOCK:
            key = self._session_key()
            if stale is not None and _SESSIONS.get(key, (None,))[0] == getattr(stale, "session_id", None):
                del _SESSIONS[key]
        attempt = 0
        while True:  # a fresh login, never the session that was just refused
            try:
                self._remember_session(super().get_conn())
                break
            except requests.RequestException as exc:
                if isinstance(exc, requests.exceptions.SSLError) or not self.retry.allows(attempt):
                    raise
                self.sleep_before_retry(attempt)
                attempt += 1
        self.relogins += 1

    def _session_key(self) -> tuple:
        """The connection's identity: its id and every field a login depends on."""
        connection = self.get_connection(self.conn_id)
        return (self.conn_id, connection.host, connection.login, connection.password,
                json.dumps(connection.extra_dejson, sort_keys=True, default=str))

    def _reuse_session(self) -> Salesforce | None:
        """A client on the session this process holds for the connection, if any (no request)."""
        with _SESSIONS_LOCK:
            held = _SESSIONS.get(self._session_key())
        if held is None:
            return None
        from simple_salesforce import Salesforce

        session_id, instance_url, version = held
        return Salesforce(session_id=session_id, instance_url=instance_url, version=version, session=self.session)

    def _remember_session(self, conn: Salesforce) -> None:
        """Keep the logged-in session for the process's next hook on this connection."""
        session_id = getattr(conn, "session_id", None)
        if not session_id:
            return
        with _SESSIONS_LOCK:
            _SESSIONS[self._session_key()] = (session_id, f"https://{conn.sf_instance}", conn.sf_version)

    @property
    def poll_interval_hint(self) -> float | None:
        """The connection's extra ``poll_interval``: seconds before a job's first status poll."""
        value = self.get_connection(self.conn_id).extra_dejson.get("poll_interval")
        return float(value) if value not in (None, "") else None

    # -- the call loop ------------------------------------------------------------------------

    def call(self, what: str, fn: Callable[[Salesforce], T], *, safe: bool = True) -> T:
        """Run one request (``fn`` given the current client) under the hook's rules.

        ``401`` → log in again and repeat (twice at most: a fresh session refused again is not an
        expiry); ``403 REQUEST_LIMIT_EXCEEDED`` → :class:`ApiBudgetExhausted`; transient failures
        → wait and repeat, when ``safe`` (only for calls that may be repeated).
        """
        from simple_salesforce.exceptions import SalesforceError

        relogins = 0
        attempt = 0
        while True:
            sf = self.get_conn()
            try:
                return fn(sf)
            except SalesforceError as exc:
                self.raise_if_budget(exc)
                if exc.status == 401 and relogins < 2:
                    relogins += 1
                    self.relogin(what)
                    continue
                if not (safe and is_transient(exc) and self.retry.allows(attempt)):
                    raise
            except requests.RequestException as exc:
                if not (safe and is_transient(exc) and self.retry.allows(attempt)):
                    raise
            log.warning("Salesforce call '%s' failed transiently; retry %d of %d",
                        what, attempt + 1, self.retry.retries)
            self.sleep_before_retry(attempt)
            attempt += 1

    def sleep_before_retry(self, attempt: int) -> None:
        """Wait as the policy says: the last ``Retry-After`` seen, else the backoff. A
        ``Retry-After`` longer than the policy waits out is cut to it (Salesforce sends them only
        for short overloads; its daily limit is a ``403``)."""
        hint, self._retry_after = self._retry_after, None
        try:
            delay = self.retry.wait(attempt, hint)
        except RetryAfterTooLong:
            delay = self.retry.longest_retry_after
        time.sleep(delay)

    def raise_if_budget(self, exc: BaseException) -> None:
        """Raise :class:`ApiBudgetExhausted` for a ``403 REQUEST_LIMIT_EXCEEDED``."""
        if getattr(exc, "status", None) == 403 and error_code(exc) == "REQUEST_LIMIT_EXCEEDED":
            used_max = self.api_usage
            raise ApiBudgetExhausted(
                "Salesforce refused the request with REQUEST_LIMIT_EXCEEDED: the org's daily API "
                "allowance is used up; stopping cleanly, the next session resumes",
                remaining=0, maximum=used_max[1] if used_max else None,
            ) from None

    # -- Bulk API 2.0 -------------------------------------------------------------------------

    def create_ingest_job(self, operation: str, sobject: str, external_id_field: str | None = None) -> str:
        """Create an ingest job (CSV, comma, LF) and return its id; safe to repeat (an empty job
        left open is never processed)."""
        payload = {"operation": operation, "object": sobject, "contentType": "CSV",
                   "columnDelimiter": "COMMA", "lineEnding": "LF"}
        if external_id_field:
            payload["externalIdFieldName"] = external_id_field
        return self.call(f"create {operation} job on {sobject}",
                         lambda sf: self._send(sf, "POST", "ingest", json_body=payload).json())["id"]

    def create_query_job(self, soql: str, operation: str = "query") -> str:
        """Create a query (or ``queryAll``) job and return its id."""
        payload = {"operation": operation, "query": soql, "columnDelimiter": "COMMA", "lineEnding": "LF"}
        return self.call("create query job",
                         lambda sf: self._send(sf, "POST", "query", json_body=payload).json())["id"]

    def upload(self, job_id: str, body: IO[bytes]) -> None:
        """``PUT`` the CSV into an ingest job, once: never retried here (see the loader).

        :raises simple_salesforce.exceptions.SalesforceError: Salesforce refused it.
        :raises requests.RequestException: the connection failed; whether data arrived is unknown.
        """
        self._send(self.get_conn(), "PUT", f"ingest/{job_id}/batches", data=body, content_type=_CSV)

    def close_job(self, job_id: str) -> None:
        """``PATCH state=UploadComplete``: not repeated blindly (the loader checks the state)."""
        self.call(f"close job {job_id}", lambda sf: self._send(
            sf, "PATCH", f"ingest/{job_id}", json_body={"state": "UploadComplete"}), safe=False)

    def abort_job(self, job_id: str, *, is_query: bool = False) -> None:
        """``PATCH state=Aborted``."""
        kind = "query" if is_query else "ingest"
        self.call(f"abort job {job_id}", lambda sf: self._send(
            sf, "PATCH", f"{kind}/{job_id}", json_body={"state": "Aborted"}))

    def get_job(self, job_id: str, *, is_query: bool = False) -> dict:
        """The job's info (``state``, ``numberRecordsProcessed``, ``numberRecordsFailed``, …)."""
        kind = "query" if is_query else "ingest"
        return self.call(f"read job {job_id}", lambda sf: self._send(sf, "GET", f"{kind}/{job_id}").json())

    def download_failed_results(self, job_id: str, path: str | Path) -> None:
        """Stream an ingest job's ``failedResults`` CSV to ``path``."""
        def download(sf: Salesforce) -> None:
            with closing(self._send(sf, "GET", f"ingest/{job_id}/failedResults", accept=_CSV, stream=True)) as answer, \
                    open(path, "wb") as out:
                for chunk in answer.iter_content(chunk_size=1 << 20):
                    out.write(chunk.replace(b"\x00", b""))

        self.call(f"failed results of job {job_id}", download)

    def download_query_page(self, job_id: str, locator: str, max_records: int, path: str | Path) -> QueryPage:
        """Stream one results page of a query job to ``path``."""
        params: dict[str, Any] = {"maxRecords": max_records}
        if locator and locator != "null":
            params["locator"] = locator

        def download(sf: Salesforce) -> QueryPage:
            with closing(self._send(sf, "GET", f"query/{job_id}/results", accept=_CSV, params=params,
                                    stream=True)) as answer, open(path, "wb") as out:
                following = answer.headers.get("Sforce-Locator", "")
                count = int(answer.headers.get("Sforce-NumberOfRecords") or 0)
                for chunk in answer.iter_content(chunk_size=1 << 20):
                    out.write(chunk.replace(b"\x00", b""))
            return QueryPage(str(path), count, "" if following == "null" else following)

        return self.call(f"results of query job {job_id}", download)

    # -- REST ---------------------------------------------------------------------------------

    def limits(self) -> dict:
        """``GET /limits``."""
        return dict(self.call("read limits", lambda sf: sf.limits()))

    def describe_global(self) -> dict:
        """The org's global ``describe``."""
        return dict(self.call("describe global", lambda sf: sf.describe()))

    def describe_sobject(self, sobject: str) -> dict:
        """The REST ``describe`` of ``sobject``."""
        return dict(self.call(f"describe {sobject}", lambda sf: getattr(sf, sobject).describe()))

    def composite_batch(self, paths: list[str]) -> list[dict]:
        """``POST composite/batch``: GET these REST paths (relative to the versioned base, e.g.
        ``query?q=…`` or ``sobjects/X/describe``; at most 25) as one API request.

        :returns: each subrequest's ``{"statusCode", "result"}``, in order.
        """
        def send(sf: Salesforce) -> list[dict]:
            body = {"haltOnError": False,
                    "batchRequests": [{"method": "GET", "url": f"v{sf.sf_version}/{path}"} for path in paths]}
            return list(sf.restful("composite/batch", method="POST", json=body)["results"])

        return self.call(f"composite batch of {len(paths)}", send)

    def count(self, soql_where: str) -> int:
        """``SELECT COUNT() …`` through REST."""
        return int(self.call("count", lambda sf: sf.query(f"SELECT COUNT() {soql_where}"))["totalSize"])

    # -- plumbing -----------------------------------------------------------------------------

    def _send(self, sf: Salesforce, method: str, path: str, *, json_body: Any = None, data: Any = None,
              content_type: str = _JSON, accept: str = _JSON, **kwargs: Any) -> requests.Response:
        from simple_salesforce.util import call_salesforce

        headers = {**sf.headers, "Content-Type": content_type, "Accept": accept}
        if json_body is not None:
            data = json.dumps(json_body, allow_nan=False)
        return call_salesforce(url=sf.bulk2_url + path, method=method, session=sf.session,
                               headers=headers, data=data, **kwargs)

    def _count_request(self) -> None:
        with self._count_lock:
            self.api_requests += 1

    def _note_response(self, response: requests.Response) -> None:
        info = response.headers.get("Sforce-Limit-Info")
        if info:
            match = _LIMIT_INFO.search(info)
            if match:
                self.api_usage = (int(match.group(1)), int(match.group(2)))
        if response.status_code in TRANSIENT_STATUSES:
            self._retry_after = parse_retry_after(response.headers.get("Retry-After"))


def error_code(exc: BaseException) -> str | None:
    """Salesforce's ``errorCode`` in a ``SalesforceError``'s content, if any."""
    content = getattr(exc, "content", None)
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return content[0].get("errorCode")
    if isinstance(content, dict):
        return content.get("errorCode")
    return None


def describe_error(exc: BaseException) -> str:
    """A short description of an error for logs: status and code, never headers or bodies."""
    status = getattr(exc, "status", None)
    if status is not None:
        code = error_code(exc)
        content = getattr(exc, "content", None)
        first = content[0] if isinstance(content, list) and content else content
        message = first.get("message") if isinstance(first, dict) else None
        return f"HTTP {status} {code or ''} {message or ''}".strip()
    return type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    """Whether another try may succeed: a dropped connection, a timeout, a 429 or 5xx."""
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)):
        return True
    return getattr(exc, "status", None) in TRANSIENT_STATUSES
