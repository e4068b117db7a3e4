"""The Zuora hook: the sync's only door to Zuora's REST API.

:class:`ZuoraHook` owns everything between the sync and a Zuora tenant: the Airflow connection
(``zuora_default``: ``host`` = REST base URL, ``login`` = OAuth client id, ``password`` = client
secret, ``extra`` = optional ``entity_id`` and ``timeout``), the OAuth bearer token, the HTTP
session, retries and Zuora's error shapes. On top of that it offers the two read paths the sync
uses: Data Query (``POST /query/jobs``, poll, stream the result file) for extraction, and
ZOQL (``action/query`` + ``queryMore``) for small look-ups.

Why not ``HttpHook``: it adds Basic auth whenever the connection has a ``login``, while Zuora's
``POST /oauth/token`` takes the client credentials as form fields and wants no auth header; and it
sends every unknown connection extra as an HTTP header. A small hook on :class:`requests` is
simpler and says exactly what goes over the wire (reference ``airflow.md`` §8).

Facts it relies on (reference ``zuora.md`` §2): tokens last about an hour and the token endpoint is
rate-limited, so tokens are reused until shortly before they expire; a 401 means an expired token;
429 comes with ``Retry-After`` (concurrency limit) or ``RateLimit-Reset`` (rate limit) and failed
calls count toward the limits, so retries back off exponentially with jitter; a Data Query result
file is a presigned S3 URL that must be fetched *without* the bearer token, and its signature is a
credential, so only its path is ever logged.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import msgspec
import requests
import urllib3
from airflow.sdk import BaseHook
from requests.adapters import HTTPAdapter

from zuora_sync.retry import ZUORA as ZUORA_RETRY
from zuora_sync.retry import RetryAfterTooLong, RetryPolicy, parse_retry_after

__all__ = ["DataQueryFailed", "ZuoraApiError", "ZuoraHook"]

#: Data Query job states after which polling stops.
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})
#: Compressions whose result file can be decompressed while it streams (ZIP needs the whole file).
STREAMABLE_COMPRESSIONS = ("NONE", "GZIP")
#: The longest wait between two polls of a Data Query job whose rows a load is waiting for
#: (:meth:`ZuoraHook.data_query_rows`): a few more requests (SPEC §10 allows two per 10,000
#: records) against seconds of an idle load.
READER_POLL_INTERVAL = 2.0
#: ZOQL pages hold at most this many records.
ZOQL_MAX_BATCH = 2000

log = logging.getLogger(__name__)

_DOWNLOAD_CHUNK = 256 * 1024
_MAX_ERROR_TEXT = 500
_USER_AGENT = "zuora-sync (Apache Airflow ZuoraHook)"


class ZuoraApiError(Exception):
    """Zuora refused a request, or it could not be completed after the allowed retries.

    :param message: Zuora's own message (or what went wrong); never carries a secret or token.
    :param status: HTTP status, ``None`` when no answer came (connection errors).
    :param code: Zuora's error code from whichever of its error shapes the body used.
    :param body: the parsed response body (JSON) or the start of its text, for diagnosis.
    :param method: the HTTP method of the failed request.
    :param path: the URL path of the failed request (never its query string).
    """

    def __init__(self, message: str, *, status: int | None = None, code: Any = None, body: Any = None,
                 method: str | None = None, path: str | None = None) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.body = body
        self.method = method
        self.path = path
        super().__init__(self._describe())

    def __reduce__(self):
        # Keyword-only attributes survive pickling (Airflow may ship an exception across processes).
        return _restore_error, (type(self), dict(self.__dict__))

    def _describe(self) -> str:
        head = "Zuora API error"
        if self.status is not None:
            head += f" {self.status}"
        if self.code not in (None, ""):
            head += f" [{self.code}]"
        where = f" ({self.method} {self.path})" if self.method and self.path else ""
        return f"{head}: {self.message}{where}"


def _restore_error(cls: type[ZuoraApiError], state: dict[str, Any]) -> ZuoraApiError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    Exception.__init__(error, error._describe())
    return error


class DataQueryFailed(ZuoraApiError):
    """A Data Query job ended ``failed`` or ``cancelled``, or its result file was incomplete or corrupt.

    The sync's answer to either is to rerun the extraction (the Airflow task's retries do that), so
    a truncated download is never mistaken for a smaller result.

    :param job_id: the Data Query job's id.
    :param query_status: the job's final ``queryStatus`` (``completed`` for a broken result file).
    """

    def __init__(self, message: str, *, job_id: str | None = None, query_status: str | None = None,
                 **kwargs: Any) -> None:
        self.job_id = job_id
        self.query_status = query_status
        super().__init__(message, **kwargs)

    def _describe(self) -> str:
        job = f"Data Query job {self.job_id}" if self.job_id else "Data Query"
        state = f" {self.query_status}" if self.query_status else ""
        return f"{job}{state}: {self.message}"


class _RedactSignatures(logging.Filter):
    """Blank presigned-URL signatures out of urllib3's debug lines (it logs every URL it fetches)."""

    _PATTERN = re.compile(r"(?i)(X-Amz-Signature|X-Amz-Credential|Signature)=[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "=" in a for a in record.args):
            record.args = tuple(self._PATTERN.sub(r"\1=***", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str) and "=" in record.msg:
            record.msg = self._PATTERN.sub(r"\1=***", record.msg)
        return True


def _install_urllib3_redaction() -> None:
    """Attach :class:`_RedactSignatures` to urllib3's connection-pool logger, once per process."""
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactSignatures) for f in logger.filters):
        logger.addFilter(_RedactSignatures())


class _BrokenFile(Exception):
    """Internal: the result file stream is truncated or corrupt (the message says how)."""


class ZuoraHook(BaseHook):
    """Talk to a Zuora tenant's REST API: OAuth, retries, Data Query and ZOQL.

    Nothing touches the network until the first request: the connection is read and the token
    fetched lazily, so the hook can be built in an operator's ``__init__`` or at DAG parse time.

    Retry rules (one counter per :meth:`request` call, shared by all retryable failures):

    * **401**: the token expired or was revoked; fetch a new one and retry, once per call.
    * **429 and 5xx**: wait the ``Retry-After`` seconds (or ``RateLimit-Reset`` on a 429) when the
      answer gives them, else the retry policy's backoff (:mod:`zuora_sync.retry`); a
      ``Retry-After`` longer than the policy waits out (an hourly or daily limit) raises at once.
    * **Connection errors and timeouts**: retried like a 5xx. (The sync only reads from Zuora, so a
      repeated request is harmless; submitting the same Data Query twice creates a spare job.)
    * **Other 4xx** raise :class:`ZuoraApiError` with Zuora's code and message. So does a 200
      answer with ``{"success": false}``, Zuora's way of refusing some REST calls.

    :param zuora_conn_id: the Airflow connection, of type Zuora (``conn_type`` ``zuora``, registered
        by :mod:`zuora_sync.provider_info`; a connection of another type with the same fields, such
        as the ``http`` ones made before, works too): ``host`` = REST base URL (e.g.
        ``https://rest.apisandbox.zuora.com``), ``login`` = OAuth client id, ``password`` = client
        secret; ``extra`` may hold ``entity_id`` (sent as ``Zuora-Entity-Ids``, for multi-entity
        tenants), ``timeout`` (seconds) and ``poll_interval`` (seconds, see below).
    :param timeout: seconds to wait for a connection or a read; default the connection's extra
        ``timeout``, else 60.
    :param retry: the :class:`~zuora_sync.retry.RetryPolicy`; default :data:`zuora_sync.retry.ZUORA`.
    :param max_retries: retries of a request after a 429, 5xx or connection error (overrides
        ``retry.retries``).
    :param backoff_base: seconds before the first retry when Zuora gives no ``Retry-After``
        (overrides ``retry.base``).
    :param backoff_max: longest computed backoff between retries, in seconds (``retry.cap``).
    :param poll_interval: seconds before the first poll of a Data Query job; the interval doubles.
        Default the connection's extra ``poll_interval``, else 0.5 (a tenant that answers in
        milliseconds, such as the sandbox, may want less).
    :param max_poll_interval: longest wait between two polls, in seconds.
    :param max_retry_after: longest ``Retry-After`` the hook waits out, in seconds
        (``retry.longest_retry_after``).
    """

    conn_name_attr = "zuora_conn_id"
    default_conn_name = "zuora_default"
    conn_type = "zuora"
    hook_name = "Zuora"

    def __init__(
        self,
        zuora_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        retry: RetryPolicy = ZUORA_RETRY,
        max_retries: int | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        poll_interval: float | None = None,
        max_poll_interval: float = 10.0,
        max_retry_after: float | None = None,
    ) -> None:
        super().__init__()
        self.zuora_conn_id = zuora_conn_id
        self.timeout = timeout
        self.retry = retry.with_(retries=max_retries, base=backoff_base, cap=backoff_max,
                                 longest_retry_after=max_retry_after)
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        #: Every HTTP request this hook sent (token, API calls, retries, polls, downloads).
        self.api_requests = 0
        self._session: requests.Session | None = None
        self._config: dict[str, Any] | None = None
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._lock = threading.RLock()
        self._count_lock = threading.Lock()

    # -- connection ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The tenant's REST base URL, from the connection's ``host`` (no trailing slash, no ``/v1``)."""
        return self._connection_config()["base_url"]

    def _connection_config(self) -> dict[str, Any]:
        if self._config is None:
            conn = self.get_connection(self.zuora_conn_id)
            host = (conn.host or "").strip()
            if not host:
                raise ValueError(f"Connection {self.zuora_conn_id!r} needs the Zuora REST base URL as its host")
            if "://" not in host:
                scheme = conn.schema if conn.schema in ("http", "https") else "https"
                host = f"{scheme}://{host}"
            parts = urlsplit(host)
            netloc = parts.netloc
            if conn.port and parts.port is None:
                netloc = f"{netloc}:{conn.port}"
            path = parts.path.rstrip("/")
            path = path.removesuffix("/v1")  # our paths carry /v1; /oauth and /query live at the root
            if not conn.login or not conn.password:
                raise ValueError(f"Connection {self.zuora_conn_id!r} needs the OAuth client id as login "
                                 "and the client secret as password")
            extra = conn.extra_dejson or {}
            timeout = self.timeout if self.timeout is not None else float(extra.get("timeout") or 60)
            if self.poll_interval is None:
                self.poll_interval = min(max(float(extra.get("poll_interval") or 0.5), 0.01), self.max_poll_interval)
            self._config = {
                "base_url": f"{parts.scheme}://{netloc}{path}",
                "client_id": conn.login,
                "client_secret": conn.password,
                "entity_id": extra.get("entity_id") or None,
                "timeout": timeout,
            }
            self._mask(conn.password)
        return self._config

    def get_conn(self) -> requests.Session:
        """The hook's :class:`requests.Session` (connection pooling); :meth:`request` adds the token.

        The session carries no credentials itself, so it can also fetch presigned result files.
        """
        with self._lock:
            if self._session is None:
                self._connection_config()
                _install_urllib3_redaction()
                session = requests.Session()
                session.headers["User-Agent"] = _USER_AGENT
                adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                self._session = session
            return self._session

    def close(self) -> None:
        """Close the HTTP session (pooled connections); the hook opens a new one when used again."""
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    # -- authentication -------------------------------------------------------------------------------

    @staticmethod
    def _mask(value: str | None) -> None:
        """Register a secret with Airflow's log masker, so no task log can print it."""
        if not value:
            return
        try:
            from airflow.sdk.log import mask_secret

            mask_secret(value)
        except Exception:  # noqa: BLE001 - masking is a safety net; the hook never logs secrets itself
            log.debug("Could not register a secret with Airflow's masker")

    def _access_token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._token_renew_at:
                self._fetch_token()
            assert self._token is not None
            return self._token

    def _fetch_token(self) -> None:
        """``POST /oauth/token`` with the client credentials as form fields and no auth header."""
        config = self._connection_config()
        response = self._send(
            "POST", f"{config['base_url']}/oauth/token", authenticated=False, label="/oauth/token",
            data={"client_id": config["client_id"], "client_secret": config["client_secret"],
                  "grant_type": "client_credentials"},
            headers={"Accept": "application/json"},
        )
        try:
            payload = response.json()
            token = payload["access_token"]
        except (ValueError, KeyError, TypeError):
            raise ZuoraApiError("the token endpoint answered without an access_token",
                                status=response.status_code, method="POST", path="/oauth/token") from None
        try:
            lifetime = float(payload.get("expires_in") or 3600)
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._mask(token)
        self._token = token
        # Renew a minute early (half the lifetime for very short-lived tokens) so no call races expiry.
        self._token_renew_at = time.monotonic() + max(lifetime - 60, lifetime / 2)
        self.log.debug("Fetched a Zuora OAuth token (valid %d s)", lifetime)

    def _invalidate_token(self, used: str | None) -> None:
        with self._lock:
            if self._token == used:  # another thread may already have renewed it
                self._token = None

    # -- HTTP -------------------------------------------------------------------------------------------

    def _count(self) -> None:
        with self._count_lock:
            self.api_requests += 1

    def _url(self, path: str) -> tuple[str, bool]:
        """The absolute URL for ``path`` and whether it is on the tenant's API (gets the token)."""
        base = self.base_url
        if path.startswith(("http://", "https://")):
            ours = urlsplit(path)
            mine = urlsplit(base)
            return path, (ours.scheme, ours.netloc) == (mine.scheme, mine.netloc)
        return f"{base}/{path.lstrip('/')}", True

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send an authenticated request to the tenant and return the successful response.

        :param method: HTTP method.
        :param path: a path under the REST base URL (``/v1/action/query``, ``/query/jobs``) or an
            absolute URL; the bearer token and entity header go only to the tenant's own host.
        :param kwargs: passed to :meth:`requests.Session.request` (``json``, ``params``, ``headers``,
            ``stream``, ``timeout``...).
        :raises ZuoraApiError: a 4xx other than a recoverable 401, a 200 with ``success: false``, or
            retries exhausted.
        """
        url, on_tenant = self._url(path)
        label = urlsplit(url).path or "/"
        response = self._send(method, url, authenticated=on_tenant, label=label, **kwargs)
        if not kwargs.get("stream"):
            self._raise_for_refusal(response, method, label)
        return response

    def _send(self, method: str, url: str, *, authenticated: bool, label: str,
              **kwargs: Any) -> requests.Response:
        """One logical request: the retry, backoff and re-authentication loop around the wire."""
        session = self.get_conn()
        config = self._connection_config()
        kwargs.setdefault("timeout", config["timeout"])
        extra_headers = dict(kwargs.pop("headers", None) or {})
        reauthenticated = False
        attempt = 0
        while True:
            headers = dict(extra_headers)
            token = None
            if authenticated:
                token = self._access_token()
                headers.setdefault("Accept", "application/json")
                headers["Authorization"] = f"Bearer {token}"
                if config["entity_id"]:
                    headers.setdefault("Zuora-Entity-Ids", config["entity_id"])
            self._count()
            try:
                response = session.request(method, url, headers=headers, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                what = type(exc).__name__
                if not self.retry.allows(attempt):
                    raise ZuoraApiError(f"no answer after {attempt + 1} attempts ({what})",
                                        method=method, path=label) from None
                delay = self.retry.wait(attempt)
                self.log.warning("Zuora did not answer %s %s (%s); retry %d/%d in %.1f s",
                                 method, label, what, attempt + 1, self.retry.retries, delay)
                time.sleep(delay)
                attempt += 1
                continue

            status = response.status_code
            if status == 401 and authenticated and not reauthenticated:
                response.close()
                self.log.info("Zuora answered 401 to %s %s; fetching a new token and retrying", method, label)
                self._invalidate_token(token)
                reauthenticated = True
                continue
            if status == 429 or status >= 500:
                error = self._error_from(response, method, label)
                if not self.retry.allows(attempt):
                    raise ZuoraApiError(f"{error.message} (gave up after {attempt + 1} attempts)", status=status,
                                        code=error.code, body=error.body, method=method, path=label)
                try:
                    delay = self.retry.wait(attempt, self._retry_after(response))
                except RetryAfterTooLong as too_long:
                    raise ZuoraApiError(f"{error.message} ({too_long})", status=status,
                                        code=error.code, body=error.body, method=method, path=label) from None
                self.log.warning("Zuora answered %d to %s %s (%s); retry %d/%d in %.1f s", status, method, label,
                                 error.code or "no code", attempt + 1, self.retry.retries, delay)
                response.close()
                time.sleep(delay)
                attempt += 1
                continue
            if status >= 400:
                raise self._error_from(response, method, label)
            return response

    @staticmethod
    def _retry_after(response: requests.Response) -> float | None:
        """Seconds Zuora asks us to wait: ``Retry-After``, else ``RateLimit-Reset`` on a 429."""
        value = response.headers.get("Retry-After")
        if value is None and response.status_code == 429:
            value = response.headers.get("RateLimit-Reset")
        return parse_retry_after(value)

    def _redact(self, text: str) -> str:
        """``text`` with the client secret, the token and any URL signature blanked out."""
        secrets = [self._token]
        if self._config:
            secrets.append(self._config.get("client_secret"))
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return _RedactSignatures._PATTERN.sub(r"\1=***", text)

    def _error_from(self, response: requests.Response, method: str, label: str) -> ZuoraApiError:
        """A :class:`ZuoraApiError` from any of Zuora's error shapes."""
        code, message, body = _parse_error(response)
        message = self._redact(message or f"HTTP {response.status_code} {response.reason or ''}".strip())
        if isinstance(body, str):
            body = self._redact(body)
        return ZuoraApiError(message, status=response.status_code, code=code, body=body, method=method, path=label)

    def _raise_for_refusal(self, response: requests.Response, method: str, label: str) -> None:
        """Raise for a 2xx that says ``{"success": false, "reasons": [...]}`` (Zuora's REST refusals)."""
        content = response.content
        if not content or content[:1] != b"{" or len(content) > 65536 or b'"success"' not in content:
            return
        try:
            payload = json.loads(content)
        except ValueError:
            return
        if isinstance(payload, dict) and payload.get("success") is False:
            raise self._error_from(response, method, label)

    # -- Data Query -------------------------------------------------------------------------------------

    def submit_data_query(self, sql: str, *, read_deleted: bool = False, compression: str = "GZIP",
                          **options: Any) -> str:
        """Submit a Data Query job (JSON Lines to S3) and return its id.

        :param sql: the Trino SQL (lower-case table and column names).
        :param read_deleted: ``True`` returns only deleted rows (selecting the ``deleted`` column
            instead returns live and deleted rows together).
        :param compression: ``GZIP`` (default: less to download) or ``NONE``.
        :param options: further fields of Zuora's request body, e.g. ``sourceData``, ``useIndexJoin``.
        """
        compression = compression.upper()
        if compression not in STREAMABLE_COMPRESSIONS:
            raise ValueError(f"compression must be one of {STREAMABLE_COMPRESSIONS} (a ZIP file cannot be streamed)")
        body = {"query": sql, "outputFormat": "JSON", "compression": compression, "readDeleted": bool(read_deleted),
                "output": {"target": "S3"}, **options}
        response = self.request("POST", "/query/jobs", json=body)
        job = _job_of(response)
        job_id = job.get("id")
        if not job_id:
            raise ZuoraApiError("Data Query accepted the job but returned no id", status=response.status_code,
                                method="POST", path="/query/jobs")
        self.log.debug("Submitted Data Query job %s", job_id)
        return job_id

    def get_data_query(self, job_id: str) -> dict[str, Any]:
        """The Data Query job as Zuora shows it now (one ``GET /query/jobs/{id}``)."""
        return _job_of(self.request("GET", f"/query/jobs/{job_id}"))

    def wait_for_data_query(self, job_id: str, *, timeout: float | None = 3 * 3600,
                            poll_first: bool = False, max_interval: float | None = None) -> dict[str, Any]:
        """Poll a Data Query job until it ends and return the completed job.

        The wait between polls starts at ``poll_interval`` and doubles up to ``max_poll_interval``:
        short jobs answer fast, long ones cost few requests.

        :param timeout: seconds to wait before cancelling the job (``None``: no limit; Zuora itself
            stops a query after an hour).
        :param poll_first: ask at once, before the first wait (a job submitted a while ago is
            probably done).
        :param max_interval: the longest wait between polls (default ``max_poll_interval``).
        :raises DataQueryFailed: the job ended ``failed`` or ``cancelled`` (with Zuora's
            ``errorMessage``), or the timeout passed.
        """
        started = time.monotonic()
        self._connection_config()  # the poll interval may come from the connection
        interval = self.poll_interval
        polls = 0
        next_note = started + 60
        while True:
            if not poll_first:
                time.sleep(interval)
            poll_first = False
            job = self.get_data_query(job_id)
            polls += 1
            status = job.get("queryStatus")
            if status == "completed":
                job["_polls"] = polls
                job["_waited_seconds"] = time.monotonic() - started
                return job
            if status in TERMINAL_STATES:
                message = self._redact(str(job.get("errorMessage") or f"the job ended {status}"))
                self.log.error("Data Query job %s %s after %.1f s: %s", job_id, status,
                               time.monotonic() - started, message)
                raise DataQueryFailed(message, job_id=job_id, query_status=status, code=status)
            now = time.monotonic()
            if timeout is not None and now - started > timeout:
                self._cancel_quietly(job_id)
                raise DataQueryFailed(f"still {status} after {timeout:.0f} s; cancelled", job_id=job_id,
                                      query_status=status, code="timeout")
            if now >= next_note:
                self.log.info("Data Query job %s still %s after %.0f s", job_id, status, now - started)
                next_note = now + 300
            interval = min(interval * 2, max_interval or self.max_poll_interval)

    def _cancel_quietly(self, job_id: str) -> None:
        try:
            self.request("DELETE", f"/query/jobs/{job_id}")
        except ZuoraApiError as exc:
            self.log.warning("Could not cancel Data Query job %s: %s", job_id, exc)

    def stream_data_query(self, job: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Stream a completed job's result file, one dict per JSON line, decompressing on the fly.

        The file is fetched from its presigned ``dataFile`` URL without the bearer token and is never
        held whole in memory. When the file has been read, its row count must equal the job's
        ``outputRows``.

        :raises DataQueryFailed: the file was cut short or corrupt (bad gzip, a broken JSON line, a
            row count different from ``outputRows``), or could not be downloaded.
        """
        job_id = job.get("id")
        started = time.monotonic()
        expected = job.get("outputRows")
        rows = 0
        file_path = urlsplit(job.get("dataFile") or "").path
        try:
            response = self._open_result(job)
            file_path = urlsplit(response.url).path
            gz = str(job.get("compression") or "NONE").upper() == "GZIP"
            try:
                for line in _lines(response, gz):
                    try:
                        record = _json_line(line)  # decimals keep every digit
                    except ValueError:
                        raise DataQueryFailed(f"line {rows + 1} of the result file is not JSON; the file is "
                                              "truncated or corrupt", job_id=job_id,
                                              query_status=job.get("queryStatus")) from None
                    if not isinstance(record, dict):
                        raise DataQueryFailed(f"line {rows + 1} of the result file is not a JSON object",
                                              job_id=job_id, query_status=job.get("queryStatus"))
                    rows += 1
                    yield record
            except _BrokenFile as exc:
                raise DataQueryFailed(str(exc), job_id=job_id, query_status=job.get("queryStatus")) from None
            finally:
                response.close()
            if expected is not None and rows != int(expected):
                raise DataQueryFailed(f"the result file held {rows} rows, the job reported {expected}; "
                                      "the file is incomplete", job_id=job_id, query_status=job.get("queryStatus"))
        except DataQueryFailed as exc:
            self.log.error("Data Query job %s: result file %s unusable after %d rows: %s", job_id, file_path,
                           rows, exc.message)
            raise
        except GeneratorExit:
            self.log.info("Data Query job %s: reading %s stopped by the caller after %d rows", job_id, file_path,
                          rows)
            raise
        self.log.info("Data Query job %s completed: %d rows in %.1f s (%d polls, file %s)", job_id, rows,
                      job.get("_waited_seconds", 0.0) + time.monotonic() - started, job.get("_polls", 0), file_path)

    def _open_result(self, job: dict[str, Any]) -> requests.Response:
        """GET the result file (no token); an expired presigned URL is renewed once from the job."""
        for renewed in (False, True):
            url = job.get("dataFile")
            if not url:
                raise DataQueryFailed("the completed job has no dataFile", job_id=job.get("id"),
                                      query_status=job.get("queryStatus"))
            label = urlsplit(url).path
            try:
                response = self._send("GET", url, authenticated=False, label=label, stream=True)
            except ZuoraApiError as exc:
                if exc.status == 403 and not renewed and job.get("id"):
                    self.log.info("The result file URL of Data Query job %s was refused (%s); asking for a "
                                  "fresh one", job["id"], exc.code or exc.status)
                    job = {**job, **self.get_data_query(job["id"])}
                    continue
                raise DataQueryFailed(f"could not download the result file: {exc.message}", job_id=job.get("id"),
                                      query_status=job.get("queryStatus"), status=exc.status,
                                      code=exc.code) from None
            return response
        raise AssertionError("unreachable")

    def data_query(self, sql: str, *, read_deleted: bool = False, compression: str = "GZIP") -> Iterator[dict]:
        """Run a Data Query and yield its rows, streamed: submit, poll, download.

        Costs one submit, a few polls (the interval grows), one download and, when none is cached,
        one token request. Logs one line per job: id, final status, rows and seconds.

        :param sql: the Trino SQL.
        :param read_deleted: ``True`` returns only deleted rows.
        :param compression: ``GZIP`` or ``NONE``.
        :raises DataQueryFailed: the job failed or was cancelled, or its result file was incomplete.
            Rows already yielded are then not the whole result: rerun the extraction.
        """
        job_id = self.submit_data_query(sql, read_deleted=read_deleted, compression=compression)
        job = self.wait_for_data_query(job_id)
        yield from self.stream_data_query(job)

    def data_query_rows(self, job_id: str) -> Iterator[dict]:
        """The rows of a Data Query job submitted before (:meth:`submit_data_query`), streamed once
        it completes: the second half of :meth:`data_query`, for a job submitted ahead of time
        (so its first poll is at once). A load waits on this job with Salesforce idle, so the wait
        between polls grows to :data:`READER_POLL_INTERVAL` at most: a job that ends just after a
        poll costs seconds, not ``max_poll_interval``.

        :raises DataQueryFailed: as :meth:`data_query`.
        """
        job = self.wait_for_data_query(job_id, poll_first=True, max_interval=READER_POLL_INTERVAL)
        yield from self.stream_data_query(job)

    # -- ZOQL -----------------------------------------------------------------------------------------

    def zoql(self, query: str, batch_size: int = ZOQL_MAX_BATCH) -> Iterator[dict[str, Any]]:
        """Run a ZOQL query (``action/query`` then ``queryMore``) and yield its records.

        For small look-ups; bulk extraction goes through :meth:`data_query`. Null fields are absent
        from Zuora's records.

        :param query: ZOQL, e.g. ``select Id, Name from Account where Status = 'Active'``.
        :param batch_size: records per page, 1 to 2,000.
        """
        if not 1 <= int(batch_size) <= ZOQL_MAX_BATCH:
            raise ValueError(f"batch_size must be from 1 to {ZOQL_MAX_BATCH}")
        conf = {"batchSize": int(batch_size)}
        page = self.request("POST", "/v1/action/query", json={"queryString": query, "conf": conf}).json()
        while True:
            yield from page.get("records") or []
            locator = page.get("queryLocator")
            if page.get("done", True) or not locator:
                return
            page = self.request("POST", "/v1/action/queryMore", json={"queryLocator": locator, "conf": conf}).json()

    # -- connection test ------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Fetch a token and list one Data Query job: proves the URL, the credentials and API access.

        What the connection form's Test button (and ``POST /api/v2/connections/test``) runs. The
        message names the tenant and Zuora's own refusal; the secret and the token never appear in it.
        """
        try:
            with self._lock:
                self._token = None
            self.request("GET", "/query/jobs", params={"pageSize": 1})
        except (ZuoraApiError, ValueError) as exc:
            return False, self._redact(f"{self._where()}{exc}")
        except Exception as exc:  # noqa: BLE001 - e.g. the connection id does not exist
            return False, self._redact(f"{self._where()}{type(exc).__name__}: {exc}")
        return True, f"Connected to Zuora at {self.base_url}"

    def _where(self) -> str:
        """"Zuora at <base URL>: " once the connection has been read, for messages."""
        return f"Zuora at {self._config['base_url']}: " if self._config else ""


# -- helpers --------------------------------------------------------------------------------------------


def _job_of(response: requests.Response) -> dict[str, Any]:
    """The job object of a Data Query answer (``{"data": job}``)."""
    try:
        payload = response.json()
    except ValueError:
        raise ZuoraApiError("Data Query answered with something other than JSON", status=response.status_code,
                            path=urlsplit(response.url).path) from None
    job = payload.get("data", payload) if isinstance(payload, dict) else None
    if not isinstance(job, dict):
        raise ZuoraApiError("Data Query answered without a job object", status=response.status_code,
                            path=urlsplit(response.url).path)
    return job


def _parse_error(response: requests.Response) -> tuple[Any, str | None, Any]:
    """``(code, message, body)`` from Zuora's error shapes, or from S3's XML error."""
    text = response.text or ""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        reasons = body.get("reasons")
        if isinstance(reasons, list) and reasons and isinstance(reasons[0], dict):
            # {"success": false, "reasons": [{"code", "message"}]}: REST v1 and the limits
            codes = [r.get("code") for r in reasons if r.get("code") is not None]
            messages = [str(r.get("message")) for r in reasons if r.get("message")]
            return (codes[0] if codes else None), "; ".join(messages) or None, body
        if "FaultCode" in body or "FaultMessage" in body:  # ZOQL and the SOAP-style actions
            return body.get("FaultCode"), body.get("FaultMessage"), body
        errors = body.get("Errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):  # actions' per-record shape
            return errors[0].get("Code"), "; ".join(str(e.get("Message")) for e in errors if e.get("Message")), body
        if "error" in body and isinstance(body.get("error"), str):  # OAuth: {"error", "error_description"}
            return body["error"], body.get("error_description") or body["error"], body
        if "message" in body or "code" in body:  # {"message"} (401) and Data Query's {"code", "message"}
            return body.get("code"), (str(body["message"]) if body.get("message") is not None else None), body
        return None, None, body
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return _parse_error_list(body)
    if text.lstrip().startswith("<"):  # S3's XML error for a result file
        code = re.search(r"<Code>([^<]*)</Code>", text)
        message = re.search(r"<Message>([^<]*)</Message>", text)
        return (code.group(1) if code else None), (message.group(1) if message else None), text[:_MAX_ERROR_TEXT]
    snippet = text.strip()[:_MAX_ERROR_TEXT]
    return None, snippet or None, snippet


def _parse_error_list(body: list) -> tuple[Any, str | None, Any]:
    first = body[0]
    code = first.get("code") or first.get("errorCode")
    message = first.get("message")
    return code, (str(message) if message else None), body


#: A result file's JSON decoders, made once (``json.loads(line, parse_float=Decimal)`` builds a new
#: decoder and scanner for every line). msgspec's reads a line in about half the time, with the same
#: exact decimals (its ``float_hook`` gets each number's text); where it finds fault (things
#: ``json`` takes and it does not: NaN, a UTF-8 BOM, an escaped lone surrogate), ``json`` decides.
_DECODER = json.JSONDecoder(parse_float=Decimal)
_FAST_DECODE = msgspec.json.Decoder(float_hook=Decimal).decode


def _json_line(line: bytes) -> Any:
    """``json.loads(line, parse_float=Decimal)`` for one line's bytes: the same value or the same error."""
    try:
        return _FAST_DECODE(line)
    except msgspec.DecodeError:
        return _DECODER.decode(line.decode(json.detect_encoding(line), "surrogatepass"))


def _lines(response: requests.Response, gz: bool) -> Iterator[bytes]:
    """Complete, non-empty lines of a (possibly gzip'd) response body, read in chunks.

    Any sign of a broken file (a gzip stream that stops early or is corrupt, a dropped connection)
    raises :class:`_BrokenFile`; the caller turns it into :class:`DataQueryFailed` with the job's id.
    """
    # GZIP: take the bytes as sent and inflate them here (also when S3 labels them Content-Encoding:
    # gzip). NONE: let urllib3 undo any transfer compression.
    chunks = response.raw.stream(_DOWNLOAD_CHUNK, decode_content=not gz)
    inflater = zlib.decompressobj(wbits=31) if gz else None
    carry = b""
    try:
        for chunk in chunks:
            if inflater is not None:
                data = inflater.decompress(chunk)
                while inflater.eof and inflater.unused_data:  # a multi-member gzip file
                    rest = inflater.unused_data
                    inflater = zlib.decompressobj(wbits=31)
                    data += inflater.decompress(rest)
            else:
                data = chunk
            if not data:
                continue
            data = carry + data
            parts = data.split(b"\n")
            carry = parts.pop()
            for part in parts:
                if part.strip():
                    yield part
        if inflater is not None:
            tail = inflater.flush()
            if not inflater.eof:
                raise _BrokenFile("the gzip result file ends before its end-of-stream marker; it is truncated")
            carry += tail
    except zlib.error as exc:
        raise _BrokenFile(f"the gzip result file is corrupt ({exc})") from None
    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
        raise _BrokenFile(f"the download of the result file broke off ({type(exc).__name__})") from None
    if carry.strip():
        yield carry
