"""The sync's state store: watermarks, sync history, rejected records, scope locks, change events.

Airflow tasks may not touch Airflow's metadata database (Airflow 3's task isolation), so the sync keeps its state in
a database of its own, reached through the Airflow connection ``zuora_sync_state`` (any SQLAlchemy
URL; PostgreSQL in production) or, when that connection does not exist, an SQLite file
``$AIRFLOW_HOME/zuora_sync/state.db``.

The schema is owned by the alembic migrations next to this module; a :class:`StateStore` runs
``alembic upgrade head`` on first use (once per process and database), serialized across processes
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock), so any number of
workers may start at once.

All times are timezone-aware UTC ``datetime`` values, in and out; a naive datetime is refused.

Concurrency: every write is one short transaction. On SQLite, writes take the database's write
lock up front (``BEGIN IMMEDIATE``) and wait for it (busy timeout), the file runs in WAL mode so
readers never block writers; on PostgreSQL, read-modify-write steps are single ``INSERT ... ON
CONFLICT`` statements or run under an advisory lock (scope locks).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import (
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

from zuora_sync.private_files import make_private_dir, make_private_file
from zuora_sync.state.models import (
    ChangeEvent,
    RecordHash,
    RejectedRecord,
    SalesforceFingerprint,
    ScopeLock,
    ScopeReset,
    SessionObject,
    SyncSession,
    Watermark,
    as_utc,
)
from zuora_sync.vocabulary import SessionStatus, SessionType

log = logging.getLogger(__name__)

UTC = dt.UTC

SESSION_STATUSES = tuple(status.value for status in SessionStatus)
RUNNING, FINISHED, FINISHED_WITH_ERRORS, FAILURE, STOPPED = SESSION_STATUSES
SESSION_TYPES = tuple(kind.value for kind in SessionType)
#: Session types that read everything of their scope (a catalog sync is always full).
FULL_SESSION_TYPES = (SessionType.FULL, SessionType.CATALOG)
#: A holder of this scope excludes every other scope, and is excluded by any of them.
CLEANUP_SCOPE = "cleanup"
COUNT_FIELDS = ("extracted", "upserted", "deleted", "failed", "created", "updated", "unchanged", "removed")

DEFAULT_CONN_ID = "zuora_sync_state"
DEFAULT_LEASE_SECONDS = 6 * 3600
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# PostgreSQL advisory lock keys (any constant bigint; "zs" + a number).
_PG_MIGRATE_KEY = 0x7A73_0001
_PG_LOCKS_KEY = 0x7A73_0002

_BATCH = 500   # rows per INSERT / ids per IN list

_sessions = SyncSession.__table__
_objects = SessionObject.__table__
_rejected = RejectedRecord.__table__
_events = ChangeEvent.__table__
_locks = ScopeLock.__table__
_watermarks = Watermark.__table__
_resets = ScopeReset.__table__
_hashes = RecordHash.__table__
_fingerprints = SalesforceFingerprint.__table__


class LockLost(RuntimeError):
    """``renew_lock`` found no lock held by the holder (released, or its lease expired and was taken)."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# Connection resolution


def default_url() -> str:
    """``sqlite:///$AIRFLOW_HOME/zuora_sync/state.db`` (``~/airflow`` when AIRFLOW_HOME is unset)."""
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return f"sqlite:///{Path(home).expanduser().resolve() / 'zuora_sync' / 'state.db'}"


def url_from_connection(conn: Any) -> str:
    """The SQLAlchemy URL of an Airflow connection.

    ``extra.sqlalchemy_url`` wins. An ``sqlite`` connection names its file in ``host`` (Airflow's
    ``get_uri()`` would percent-encode the path into the host part, which SQLAlchemy cannot
    read); ``postgres`` becomes SQLAlchemy's ``postgresql+psycopg2``; anything else is ``get_uri()``.
    """
    extra = conn.extra_dejson or {}
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        path = conn.host or conn.schema
        if not path:
            return default_url()
        if path == ":memory:":
            return "sqlite://"
        return f"sqlite:///{Path(path).expanduser()}"
    if conn_type in ("postgres", "postgresql"):
        query = {k: str(v) for k, v in extra.items() if isinstance(v, (str, int)) and not isinstance(v, bool)}
        # Name the driver: a bare "postgresql" means psycopg 3 under SQLAlchemy 2.1, while Airflow's
        # PostgreSQL provider (and its image) ships psycopg2.
        return URL.create("postgresql+psycopg2", username=conn.login or None, password=conn.password or None,
                          host=conn.host or None, port=conn.port or None, database=conn.schema or None,
                          query=query).render_as_string(hide_password=False)
    uri = conn.get_uri()
    if uri.startswith("postgres://"):
        uri = "postgresql+psycopg2://" + uri[len("postgres://"):]
    return uri


def alembic_config(url: str | URL):
    """An alembic ``Config`` for the store's migrations (no ini file).

    For developers adding a migration::

        from alembic import command
        command.revision(alembic_config("sqlite:////tmp/dev.db"), "add a column", autogenerate=True)
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    rendered = url.render_as_string(hide_password=False) if isinstance(url, URL) else str(url)
    cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


# --------------------------------------------------------------------------------------------
# Engines: one per process and database, shared by every StateStore of that database.

_engines: dict[tuple[int, str], Engine] = {}
_migrated: set[tuple[int, str]] = set()
_registry_lock = threading.Lock()
_migrate_lock = threading.Lock()


def _json_dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


def _sqlite_engine(url: URL) -> Engine:
    memory = url.database in (None, "", ":memory:") or "mode=memory" in str(url)
    kwargs: dict[str, Any] = {"json_serializer": _json_dumps,
                              "connect_args": {"timeout": 60, "check_same_thread": False}}
    if memory:
        kwargs["poolclass"] = StaticPool
    elif not url.query.get("uri"):
        # Sessions, rejected rows and events are customer data: the file is its owner's only
        # (new -wal and -shm files take its mode; older ones are tightened), in a directory created 0700.
        database = Path(url.database).expanduser()
        make_private_dir(database.parent)
        make_private_file(database)
        for suffix in ("-wal", "-shm"):
            if database.with_name(database.name + suffix).exists():
                make_private_file(database.with_name(database.name + suffix))
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN itself (below); the sqlite3 module's own transaction handling
        # would otherwise run DDL and SELECTs outside transactions.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout = 60000")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front, so two writers queue (busy timeout) instead of one
        # failing at once with "database is locked" when it upgrades a read lock.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("zuora_sync_read") else "BEGIN IMMEDIATE")

    return engine


def _engine_for(url: str) -> Engine:
    key = (os.getpid(), url)
    with _registry_lock:
        engine = _engines.get(key)
        if engine is None:
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite":
                engine = _sqlite_engine(parsed)
            else:
                engine = create_engine(parsed, json_serializer=_json_dumps, pool_pre_ping=True)
            _engines[key] = engine
        return engine


# --------------------------------------------------------------------------------------------


def _fail_open_session(conn: Connection, holder: str, now: dt.datetime, why: str) -> None:
    """The holder's session, if it never ended, is a Failure: interrupted, ``why``."""
    dag_id, _, run_id = holder.partition("/")
    s = _sessions.c
    conn.execute(update(_sessions).where(s.dag_id == dag_id, s.run_id == run_id, s.ended_at.is_(None)).values(
        status=FAILURE, ended_at=now, error=f"interrupted: {why}; the next session syncs its changes"))


def _session_dict(row: Any, objects: dict[str, dict[str, int]], rejected: int) -> dict[str, Any]:
    totals = {f: sum(c[f] for c in objects.values()) for f in COUNT_FIELDS}
    return {
        "id": row.id,
        "session_type": row.session_type,
        "scope": row.scope,
        "trigger": row.trigger,
        "dag_id": row.dag_id,
        "run_id": row.run_id,
        "status": row.status,
        "dry_run": bool(row.dry_run),
        "window_start": row.window_start,
        "window_end": row.window_end,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "error": row.error,
        "details": dict(row.details or {}),
        "api_calls": {"zuora": int(row.zuora_api_calls), "salesforce": int(row.salesforce_api_calls)},
        "objects": objects,
        "totals": totals,
        "rejected": rejected,
    }


def _chunks(values: list[Any], size: int = _BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


class StateStore:
    """The sync's state in a database of its own. Cheap to create: no I/O until first use.

    :param url: a SQLAlchemy URL (``sqlite:////abs/path.db``, ``postgresql://...``).
    :param clock: returns "now" (aware UTC); for tests.
    """

    def __init__(self, url: str | URL, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.url = url.render_as_string(hide_password=False) if isinstance(url, URL) else str(url)
        self._clock = clock or _utcnow
        self._engine: Engine | None = None

    def __repr__(self) -> str:
        return f"StateStore({make_url(self.url).render_as_string(hide_password=True)!r})"

    @classmethod
    def from_airflow(cls, conn_id: str = DEFAULT_CONN_ID) -> StateStore:
        """The store of the Airflow connection ``conn_id``; an SQLite file under AIRFLOW_HOME without it."""
        from airflow.sdk import BaseHook

        not_found: tuple[type[BaseException], ...]
        try:
            from airflow.sdk.exceptions import AirflowNotFoundException as SdkNotFound

            not_found = (SdkNotFound,)
        except ImportError:  # pragma: no cover - older SDKs
            not_found = ()
        try:
            from airflow.exceptions import AirflowNotFoundException as CoreNotFound

            not_found += (CoreNotFound,)
        except ImportError:  # pragma: no cover
            pass
        try:
            conn = BaseHook.get_connection(conn_id)
        except not_found:
            url = default_url()
            log.debug("No Airflow connection %r: the state store is %s", conn_id, url)
            return cls(url)
        return cls(url_from_connection(conn))

    # ---------------------------------------------------------------- plumbing

    @property
    def dialect(self) -> str:
        return make_url(self.url).get_backend_name()

    def _now(self) -> dt.datetime:
        return as_utc(self._clock())

    def _get_engine(self) -> Engine:
        if self._engine is None:
            engine = _engine_for(self.url)
            key = (os.getpid(), self.url)
            if key not in _migrated:
                with _migrate_lock:
                    if key not in _migrated:
                        self._upgrade(engine)
                        _migrated.add(key)
            self._engine = engine
        return self._engine

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._get_engine().begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._get_engine().connect() as conn:
            conn.execution_options(zuora_sync_read=True)
            with conn.begin():
                yield conn

    def _insert(self, table: Any):
        """A dialect ``insert`` with ``ON CONFLICT`` support, or None on other databases."""
        name = self.dialect
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        elif name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            return None
        return dialect_insert(table)

    # ---------------------------------------------------------------- migrations

    def migrate(self) -> None:
        """Bring the schema to the newest migration (``alembic upgrade head``); idempotent."""
        engine = _engine_for(self.url)
        with _migrate_lock:
            self._upgrade(engine)
            _migrated.add((os.getpid(), self.url))
        self._engine = engine

    def schema_revision(self) -> str | None:
        """The schema's current alembic revision (None before the first migration)."""
        from alembic.runtime.migration import MigrationContext

        with _engine_for(self.url).connect() as conn:
            conn.execution_options(zuora_sync_read=True)
            with conn.begin():
                return MigrationContext.configure(
                    conn, opts={"version_table": "zuora_sync_alembic_version"}).get_current_revision()

    def _upgrade(self, engine: Engine) -> None:
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        cfg = alembic_config(self.url)
        head = ScriptDirectory.from_config(cfg).get_current_head()
        # Cheap check first, without the write lock: usually the schema is current.
        with engine.connect() as conn:
            conn.execution_options(zuora_sync_read=True)
            with conn.begin():
                current = MigrationContext.configure(
                    conn, opts={"version_table": "zuora_sync_alembic_version"}).get_current_revision()
        if current == head:
            return
        # One transaction for the whole upgrade: SQLite's BEGIN IMMEDIATE (or PostgreSQL's
        # advisory lock) makes a second process wait, then find the schema current.
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATE_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        log.info("State store schema migrated to %s (%s)", head, self)

    # ---------------------------------------------------------------- watermarks

    def get_watermark(self, scope: str, obj: str) -> dt.datetime | None:
        with self._read() as conn:
            return conn.execute(select(_watermarks.c.value).where(
                _watermarks.c.scope == scope, _watermarks.c.object == obj)).scalar_one_or_none()

    def set_watermark(self, scope: str, obj: str, value: dt.datetime, *, force: bool = False) -> None:
        """Move an object's watermark forward (never back, unless ``force``: e.g. after a full sync)."""
        value = as_utc(value)
        now = self._now()
        c = _watermarks.c
        stmt = self._insert(_watermarks)
        with self._write() as conn:
            if stmt is not None:
                stmt = stmt.values(scope=scope, object=obj, value=value, updated_at=now)
                where = None if force else c.value < stmt.excluded.value
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=[c.scope, c.object],
                    set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at}, where=where))
                return
            current = conn.execute(select(c.value).where(c.scope == scope, c.object == obj)).scalar_one_or_none()
            if current is None:
                conn.execute(insert(_watermarks).values(scope=scope, object=obj, value=value, updated_at=now))
            elif force or current < value:
                conn.execute(update(_watermarks).where(c.scope == scope, c.object == obj)
                             .values(value=value, updated_at=now))

    def watermarks(self, scope: str) -> dict[str, dt.datetime]:
        with self._read() as conn:
            rows = conn.execute(select(_watermarks.c.object, _watermarks.c.value).where(_watermarks.c.scope == scope))
            return {row.object: row.value for row in rows}

    def reset_watermarks(self, scope: str) -> None:
        """Forget the scope's watermarks (after a cleanup): its next sync is a full sync."""
        now = self._now()
        with self._write() as conn:
            conn.execute(delete(_watermarks).where(_watermarks.c.scope == scope))
            if conn.execute(update(_resets).where(_resets.c.scope == scope).values(reset_at=now)).rowcount == 0:
                conn.execute(insert(_resets).values(scope=scope, reset_at=now))
        log.info("Watermarks of %s reset: the next sync is a full sync", scope)

    def last_full_sync(self, scope: str) -> dt.datetime | None:
        """When the scope's last full sync ended (Finished or Finished with Errors, not a dry run,
        started after the scope's last reset); None: the next sync must be full."""
        s = _sessions.c
        with self._read() as conn:
            reset_at = conn.execute(select(_resets.c.reset_at).where(_resets.c.scope == scope)).scalar_one_or_none()
            query = select(func.max(s.ended_at)).where(
                s.scope == scope, s.session_type.in_(FULL_SESSION_TYPES),
                s.status.in_((FINISHED, FINISHED_WITH_ERRORS)), s.dry_run.is_(False))
            if reset_at is not None:
                query = query.where(s.started_at > reset_at)
            value = conn.execute(query).scalar_one_or_none()
        # func.max() loses the column type on some backends: normalize.
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)

    # ---------------------------------------------------------------- sessions

    def start_session(self, *, session_type: str, scope: str, trigger: str, dag_id: str, run_id: str,
                      window_start: dt.datetime | None, window_end: dt.datetime | None,
                      dry_run: bool = False) -> int:
        """Record a new session (status Running); returns its id."""
        if session_type not in SESSION_TYPES:
            raise ValueError(f"session_type {session_type!r}: allowed are {', '.join(SESSION_TYPES)}")
        with self._write() as conn:
            result = conn.execute(insert(_sessions).values(
                session_type=session_type, scope=scope, trigger=trigger, dag_id=dag_id, run_id=run_id,
                status=RUNNING, dry_run=bool(dry_run),
                window_start=None if window_start is None else as_utc(window_start),
                window_end=None if window_end is None else as_utc(window_end),
                started_at=self._now(), ended_at=None, error=None, zuora_api_calls=0, salesforce_api_calls=0))
            return int(result.inserted_primary_key[0])

    def record_counts(self, session_id: int, obj: str, *, extracted: int = 0, upserted: int = 0,
                      deleted: int = 0, failed: int = 0, created: int = 0, updated: int = 0,
                      unchanged: int = 0, removed: int = 0) -> None:
        """Add to a session's counts for an object (tasks may call this several times).

        ``created``, ``updated``, ``unchanged`` and ``removed`` are the rows compared with their
        stored hashes (``docs/operations.md``, "Send only what changed"); a dry run records what
        would be.
        """
        added = {"extracted": int(extracted), "upserted": int(upserted), "deleted": int(deleted), "failed": int(failed),
                 "created": int(created), "updated": int(updated), "unchanged": int(unchanged),
                 "removed": int(removed)}
        c = _objects.c
        stmt = self._insert(_objects)
        with self._write() as conn:
            if stmt is not None:
                stmt = stmt.values(session_id=session_id, object=obj, **added)
                conn.execute(stmt.on_conflict_do_update(
                    index_elements=[c.session_id, c.object],
                    set_={f: c[f] + stmt.excluded[f] for f in COUNT_FIELDS}))
                return
            changed = conn.execute(update(_objects).where(c.session_id == session_id, c.object == obj)
                                   .values({f: c[f] + v for f, v in added.items()})).rowcount
            if not changed:
                conn.execute(insert(_objects).values(session_id=session_id, object=obj, **added))

    def add_api_calls(self, session_id: int, *, zuora: int = 0, salesforce: int = 0) -> None:
        """Add API requests to a session's totals."""
        if not zuora and not salesforce:
            return
        s = _sessions.c
        with self._write() as conn:
            conn.execute(update(_sessions).where(s.id == session_id).values(
                zuora_api_calls=s.zuora_api_calls + int(zuora),
                salesforce_api_calls=s.salesforce_api_calls + int(salesforce)))

    def finish_session(self, session_id: int, *, error: str | None = None, stopped: bool = False) -> str:
        """End a session and return its status (``docs/operations.md``, "The task graph").

        ``stopped`` (the Salesforce API budget ran out; the next session resumes) → Stopped, with
        ``error`` kept as the reason; otherwise ``error`` → Failure; any rejected record of this
        session (or a failed count) → Finished with Errors; else Finished.
        """
        s = _sessions.c
        with self._write() as conn:
            if conn.execute(select(s.id).where(s.id == session_id)).scalar_one_or_none() is None:
                raise KeyError(f"no sync session {session_id}")
            if stopped:
                status = STOPPED
            elif error:
                status = FAILURE
            else:
                rejected = conn.execute(select(func.count()).select_from(_rejected)
                                        .where(_rejected.c.session_id == session_id)).scalar_one()
                failed = conn.execute(select(func.coalesce(func.sum(_objects.c.failed), 0))
                                      .where(_objects.c.session_id == session_id)).scalar_one()
                status = FINISHED_WITH_ERRORS if rejected or failed else FINISHED
            conn.execute(update(_sessions).where(s.id == session_id).values(
                status=status, ended_at=self._now(), error=error or None))
        return status

    def _load_sessions(self, conn: Connection, rows: list[Any]) -> list[dict[str, Any]]:
        ids = [row.id for row in rows]
        objects: dict[int, dict[str, dict[str, int]]] = {i: {} for i in ids}
        rejected: dict[int, int] = {}
        for chunk in _chunks(ids):
            for o in conn.execute(select(_objects).where(_objects.c.session_id.in_(chunk))
                                  .order_by(_objects.c.session_id, _objects.c.object)):
                objects[o.session_id][o.object] = {f: int(getattr(o, f)) for f in COUNT_FIELDS}
            for sid, count in conn.execute(select(_rejected.c.session_id, func.count())
                                           .where(_rejected.c.session_id.in_(chunk))
                                           .group_by(_rejected.c.session_id)):
                rejected[sid] = int(count)
        return [_session_dict(row, objects[row.id], rejected.get(row.id, 0)) for row in rows]

    def add_details(self, session_id: int, **details: Any) -> None:
        """Record more about a session (JSON values), merged into its ``details``."""
        s = _sessions.c
        with self._write() as conn:
            current = conn.execute(select(s.details).where(s.id == session_id)).scalar_one_or_none()
            conn.execute(update(_sessions).where(s.id == session_id).values(details={**(current or {}), **details}))

    def get_session(self, session_id: int) -> dict[str, Any]:
        """A session with its counts per object (``objects``), ``totals``, ``api_calls`` and ``rejected``."""
        with self._read() as conn:
            row = conn.execute(select(_sessions).where(_sessions.c.id == session_id)).first()
            if row is None:
                raise KeyError(f"no sync session {session_id}")
            return self._load_sessions(conn, [row])[0]

    def list_sessions(self, *, limit: int = 50, offset: int = 0, session_type: str | None = None,
                      status: str | None = None, since: dt.datetime | None = None,
                      scope: str | None = None) -> list[dict[str, Any]]:
        """Sessions, newest first (``since``: started at or after)."""
        s = _sessions.c
        query = select(_sessions).order_by(s.started_at.desc(), s.id.desc()).limit(limit).offset(offset)
        if session_type is not None:
            query = query.where(s.session_type == session_type)
        if status is not None:
            query = query.where(s.status == status)
        if scope is not None:
            query = query.where(s.scope == scope)
        if since is not None:
            query = query.where(s.started_at >= as_utc(since))
        with self._read() as conn:
            return self._load_sessions(conn, list(conn.execute(query)))

    def search_sessions(self, *, limit: int = 50, offset: int = 0, session_types: Iterable[str] | None = None,
                        statuses: Iterable[str] | None = None, since: dt.datetime | None = None,
                        until: dt.datetime | None = None, scope: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """A page of sessions, newest first, and how many match in all (for the sync page).

        ``session_types`` / ``statuses``: any of these (``None``: all); ``since`` / ``until``:
        started at or after / before. Both queries run in one read transaction, so page and total agree.
        """
        s = _sessions.c
        conditions = []
        if session_types is not None:
            conditions.append(s.session_type.in_(list(session_types)))
        if statuses is not None:
            conditions.append(s.status.in_(list(statuses)))
        if scope is not None:
            conditions.append(s.scope == scope)
        if since is not None:
            conditions.append(s.started_at >= as_utc(since))
        if until is not None:
            conditions.append(s.started_at < as_utc(until))
        page = (select(_sessions).where(*conditions).order_by(s.started_at.desc(), s.id.desc())
                .limit(max(int(limit), 0)).offset(max(int(offset), 0)))
        with self._read() as conn:
            total = int(conn.execute(select(func.count()).select_from(_sessions).where(*conditions)).scalar_one())
            return self._load_sessions(conn, list(conn.execute(page))), total

    def session_api_calls(self, since: dt.datetime) -> list[dict[str, Any]]:
        """Every session started at or after ``since``, oldest first: id, type, start, API requests.

        What a chart of API requests per day adds up (in the viewer's time zone, so not in SQL).
        """
        s = _sessions.c
        query = (select(s.id, s.session_type, s.started_at, s.zuora_api_calls, s.salesforce_api_calls)
                 .where(s.started_at >= as_utc(since)).order_by(s.started_at, s.id))
        with self._read() as conn:
            return [{"id": row.id, "session_type": row.session_type, "started_at": row.started_at,
                     "zuora": int(row.zuora_api_calls), "salesforce": int(row.salesforce_api_calls)}
                    for row in conn.execute(query)]

    def last_session(self, scope: str, *, ended: bool = False, session_type: str | None = None) -> dict[str, Any] | None:
        """The scope's most recent session (``ended``: the most recently ended one)."""
        s = _sessions.c
        query = select(_sessions).where(s.scope == scope)
        if session_type is not None:
            query = query.where(s.session_type == session_type)
        if ended:
            query = query.where(s.ended_at.is_not(None)).order_by(s.ended_at.desc(), s.id.desc())
        else:
            query = query.order_by(s.started_at.desc(), s.id.desc())
        with self._read() as conn:
            row = conn.execute(query.limit(1)).first()
            return None if row is None else self._load_sessions(conn, [row])[0]

    def running_run_ids(self, dag_id: str) -> set[str]:
        """The run ids of ``dag_id``'s sessions that have not ended."""
        s = _sessions.c
        with self._read() as conn:
            return set(conn.execute(select(s.run_id).where(s.dag_id == dag_id, s.ended_at.is_(None))).scalars())

    # ---------------------------------------------------------------- rejected records

    def add_rejected(self, session_id: int, obj: str,
                     rows: Iterable[tuple[str | None, str, str, dict[str, Any]]]) -> int:
        """Store rejected rows ``(external_id, error_code, message, row)``; returns how many."""
        now = self._now()
        count = 0
        with self._write() as conn:
            scope = conn.execute(select(_sessions.c.scope).where(_sessions.c.id == session_id)).scalar_one_or_none()
            if scope is None:
                raise KeyError(f"no sync session {session_id}")
            batch: list[dict[str, Any]] = []
            for external_id, error_code, message, row in rows:
                batch.append({"session_id": session_id, "scope": scope, "object": obj,
                              "external_id": (str(external_id) if external_id not in (None, "") else None),
                              "error_code": str(error_code or "UNKNOWN"), "message": str(message or ""),
                              "row": dict(row or {}), "created_at": now})
                if len(batch) >= _BATCH:
                    conn.execute(insert(_rejected), batch)
                    count += len(batch)
                    batch = []
            if batch:
                conn.execute(insert(_rejected), batch)
                count += len(batch)
        return count

    def open_rejected_ids(self, scope: str, obj: str, *, resolved_since: dt.datetime | None = None) -> list[str]:
        """External ids of the object's rejected records not yet synced since (sorted, distinct).

        :param resolved_since: also those synced (resolved) at or after this moment.
        """
        r = _rejected.c
        unresolved = r.resolved_at.is_(None)
        if resolved_since is not None:
            unresolved = or_(unresolved, r.resolved_at >= as_utc(resolved_since))
        with self._read() as conn:
            return list(conn.execute(
                select(r.external_id).distinct()
                .where(r.scope == scope, r.object == obj, unresolved, r.external_id.is_not(None))
                .order_by(r.external_id)).scalars())

    def open_refusals(self, scope: str, obj: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
        """The object's open rejections, the newest per record: external id → ``(code, message, row)``."""
        r = _rejected.c
        found: dict[str, tuple[str, str, dict[str, Any]]] = {}
        with self._read() as conn:
            for row in conn.execute(select(r.external_id, r.error_code, r.message, r.row)
                                    .where(r.scope == scope, r.object == obj, r.resolved_at.is_(None),
                                           r.external_id.is_not(None)).order_by(r.id)):
                found[row.external_id] = (row.error_code, row.message, dict(row.row or {}))
        return found

    def resolve_rejected(self, obj: str, external_ids: Iterable[str], session_id: int) -> int:
        """Mark the object's open rejections of these records resolved by ``session_id``; returns how many."""
        ids = sorted({str(i) for i in external_ids if i not in (None, "")})
        now = self._now()
        r = _rejected.c
        count = 0
        with self._write() as conn:
            for chunk in _chunks(ids):
                count += conn.execute(
                    update(_rejected).where(r.object == obj, r.external_id.in_(chunk), r.resolved_at.is_(None))
                    .values(resolved_at=now, resolved_session_id=session_id)).rowcount
        return count

    def rejected_for_session(self, session_id: int) -> Iterator[dict[str, Any]]:
        """The session's rejected records in order, read in pages (no long-held transaction)."""
        r = _rejected.c
        after = 0
        while True:
            with self._read() as conn:
                page = list(conn.execute(select(_rejected).where(r.session_id == session_id, r.id > after)
                                         .order_by(r.id).limit(1000)))
            for row in page:
                yield {"id": row.id, "session_id": row.session_id, "scope": row.scope, "object": row.object,
                       "external_id": row.external_id, "error_code": row.error_code, "message": row.message,
                       "row": row.row, "created_at": row.created_at, "resolved_at": row.resolved_at,
                       "resolved_session_id": row.resolved_session_id}
            if len(page) < 1000:
                return
            after = page[-1].id

    def rejected_page(self, session_id: int, *, limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """A page of the session's rejected records (in the order they were stored) and their total."""
        r = _rejected.c
        query = (select(_rejected).where(r.session_id == session_id).order_by(r.id)
                 .limit(max(int(limit), 0)).offset(max(int(offset), 0)))
        with self._read() as conn:
            total = int(conn.execute(select(func.count()).select_from(_rejected)
                                     .where(r.session_id == session_id)).scalar_one())
            rows = [{"id": row.id, "session_id": row.session_id, "scope": row.scope, "object": row.object,
                     "external_id": row.external_id, "error_code": row.error_code, "message": row.message,
                     "row": row.row, "created_at": row.created_at, "resolved_at": row.resolved_at,
                     "resolved_session_id": row.resolved_session_id} for row in conn.execute(query)]
        return rows, total

    # ---------------------------------------------------------------- scope locks

    def try_lock(self, scopes: Iterable[str], holder: str, *,
                 lease_seconds: int = DEFAULT_LEASE_SECONDS) -> tuple[bool, str | None]:
        """Take every scope or none, atomically; returns ``(acquired, holder in the way)``.

        Re-entrant for the same holder (it renews the lease). A lease that expired is taken over,
        and a session its holder left unended (a killed worker, a crash) is recorded as a Failure.
        ``cleanup`` needs no other lock held by someone else, and any scope needs no ``cleanup``
        held by someone else.
        """
        wanted = sorted(set(scopes))
        if not wanted:
            raise ValueError("try_lock needs at least one scope")
        if not holder:
            raise ValueError("try_lock needs a holder name")
        now = self._now()
        expires = now + dt.timedelta(seconds=lease_seconds)
        c = _locks.c
        with self._write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCKS_KEY})
            rows = list(conn.execute(select(_locks).order_by(c.scope)))
            live = {row.scope: row.holder for row in rows if row.expires_at > now}
            others = {scope: h for scope, h in live.items() if h != holder}
            blocker = None
            for scope in wanted:
                if scope in others:
                    blocker = others[scope]
                    break
            if blocker is None and CLEANUP_SCOPE in wanted and others:
                blocker = others[min(others)]
            if blocker is None and CLEANUP_SCOPE not in wanted and CLEANUP_SCOPE in others:
                blocker = others[CLEANUP_SCOPE]
            if blocker is not None:
                return False, blocker
            for row in rows:
                if row.expires_at <= now and row.holder != holder:
                    log.warning("Lock %s of %s expired at %s: taken over", row.scope, row.holder,
                                row.expires_at.isoformat())
                    _fail_open_session(conn, row.holder, now, f"its lock expired at {row.expires_at.isoformat()} "
                                                              "without the session ending (a killed worker or a crash)")
            conn.execute(delete(_locks).where(or_(c.expires_at <= now, c.scope.in_(wanted))))
            conn.execute(insert(_locks), [{"scope": scope, "holder": holder, "acquired_at": now,
                                           "expires_at": expires} for scope in wanted])
        return True, None

    def abandon_lock(self, holder: str, why: str) -> bool:
        """Release a lock whose holder will never end its session (its DAG run has ended without
        it), and record that session as a Failure, ``why``; whether it held a lock."""
        now = self._now()
        with self._write() as conn:
            released = conn.execute(delete(_locks).where(_locks.c.holder == holder)).rowcount
            if released:
                _fail_open_session(conn, holder, now, why)
        return bool(released)

    def renew_lock(self, holder: str, lease_seconds: int = DEFAULT_LEASE_SECONDS) -> None:
        """Extend the lease of every scope the holder holds; :class:`LockLost` if it holds none."""
        now = self._now()
        c = _locks.c
        with self._write() as conn:
            renewed = conn.execute(update(_locks).where(c.holder == holder, c.expires_at > now)
                                   .values(expires_at=now + dt.timedelta(seconds=lease_seconds))).rowcount
        if not renewed:
            raise LockLost(f"{holder} holds no lock (released, or its lease expired)")

    def release_lock(self, holder: str) -> None:
        """Release every scope the holder holds (nothing if it holds none)."""
        with self._write() as conn:
            conn.execute(delete(_locks).where(_locks.c.holder == holder))

    def lock_holders(self) -> dict[str, str]:
        """Scope → holder of the locks held now (expired leases left out)."""
        now = self._now()
        with self._read() as conn:
            return {row.scope: row.holder for row in conn.execute(
                select(_locks.c.scope, _locks.c.holder).where(_locks.c.expires_at > now).order_by(_locks.c.scope))}

    # ---------------------------------------------------------------- change events

    def add_event(self, notification_id: str, event_type: str, payload: dict[str, Any],
                  received: dt.datetime | None = None) -> bool:
        """Store a callout event; False when its notification id was seen before (Zuora retries)."""
        if not notification_id:
            raise ValueError("an event needs a notification id")
        values = {"notification_id": str(notification_id), "event_type": str(event_type),
                  "payload": payload if payload is not None else {},
                  "received_at": as_utc(received) if received is not None else self._now()}
        stmt = self._insert(_events)
        if stmt is not None:
            with self._write() as conn:
                result = conn.execute(stmt.values(**values).on_conflict_do_nothing(
                    index_elements=[_events.c.notification_id]))
                return result.rowcount == 1
        try:
            with self._write() as conn:
                conn.execute(insert(_events).values(**values))
            return True
        except IntegrityError:
            return False

    def pending_event_count(self, since: dt.datetime | None = None) -> int:
        """Events not consumed by a session yet (``since``: received at or after)."""
        e = _events.c
        query = select(func.count()).select_from(_events).where(e.consumed_at.is_(None))
        if since is not None:
            query = query.where(e.received_at >= as_utc(since))
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def pending_events(self, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """Events not consumed by a session yet, newest first (received time, then id)."""
        e = _events.c
        query = (select(_events).where(e.consumed_at.is_(None)).order_by(e.received_at.desc(), e.id.desc())
                 .limit(max(int(limit), 0)).offset(max(int(offset), 0)))
        with self._read() as conn:
            return [{"id": row.id, "notification_id": row.notification_id, "event_type": row.event_type,
                     "payload": dict(row.payload or {}), "received_at": row.received_at}
                    for row in conn.execute(query)]

    def last_event_id(self) -> int | None:
        """The newest event's id: a session consumes the events up to it (``mark_events_consumed``)."""
        with self._read() as conn:
            value = conn.execute(select(func.max(_events.c.id))).scalar_one_or_none()
            return None if value is None else int(value)

    def mark_events_consumed(self, up_to_id: int, session_id: int) -> int:
        """Mark the pending events with id ≤ ``up_to_id`` consumed by the session; returns how many."""
        e = _events.c
        with self._write() as conn:
            return conn.execute(update(_events).where(e.id <= up_to_id, e.consumed_at.is_(None))
                                .values(consumed_at=self._now(), consumed_session_id=session_id)).rowcount

    # ---------------------------------------------------------------- record hashes

    def stored_hashes(self, scope: str, obj: str, *, from_key: str, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` stored ``(external id, hash)`` pairs of the object, keys ``>= from_key``, in key order."""
        h = _hashes.c
        with self._read() as conn:
            return [(row.external_id, row.hash) for row in conn.execute(
                select(h.external_id, h.hash).where(h.scope == scope, h.object == obj, h.external_id >= from_key)
                .order_by(h.external_id).limit(limit))]

    def hashed_keys(self, scope: str, obj: str, *, page: int = 10_000) -> Iterator[str]:
        """Every external id of the object with a stored hash, in key order, read in pages."""
        after = ""
        h = _hashes.c
        while True:
            with self._read() as conn:
                keys = list(conn.execute(select(h.external_id).where(h.scope == scope, h.object == obj,
                                                                      h.external_id > after)
                                         .order_by(h.external_id).limit(page)).scalars())
            yield from keys
            if len(keys) < page:
                return
            after = keys[-1]

    def hash_count(self, scope: str, obj: str) -> int:
        """How many records of the object have a stored hash."""
        h = _hashes.c
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(_hashes)
                                    .where(h.scope == scope, h.object == obj)).scalar_one())

    def put_hashes(self, scope: str, obj: str, items: Iterable[tuple[str, str]]) -> int:
        """Store (or replace) the hashes of these records, in one transaction; returns how many.

        Where the database has ``ON CONFLICT`` (SQLite, PostgreSQL), an upsert: a commit per batch
        and a delete before each insert made this a fifth of a second per 20,000 records, paid at
        the end of every object's load (``docs/benchmarks.md``).
        """
        h = _hashes.c
        rows = [{"scope": scope, "object": obj, "external_id": key, "hash": value}
                for key, value in dict(items).items()]
        stmt = self._insert(_hashes)
        with self._write() as conn:
            if stmt is not None:
                stmt = stmt.on_conflict_do_update(index_elements=[h.scope, h.object, h.external_id],
                                                  set_={"hash": stmt.excluded.hash})
                for chunk in _chunks(rows):
                    conn.execute(stmt, chunk)
            else:
                for chunk in _chunks(rows):
                    conn.execute(delete(_hashes).where(h.scope == scope, h.object == obj,
                                                       h.external_id.in_([row["external_id"] for row in chunk])))
                    conn.execute(insert(_hashes), chunk)
        return len(rows)

    def forget_hashes(self, scope: str, obj: str, keys: Iterable[str]) -> int:
        """Drop the hashes of these records (they are sent again next time); returns how many were dropped."""
        h = _hashes.c
        count = 0
        for chunk in _chunks(sorted({str(k) for k in keys if k})):
            with self._write() as conn:
                count += conn.execute(delete(_hashes).where(h.scope == scope, h.object == obj,
                                                            h.external_id.in_(chunk))).rowcount
        return count

    def mark_hashes(self, scope: str, obj: str, keys: Iterable[str], value: str) -> int:
        """Replace the stored hashes of these records (those that have one) by ``value``; returns how many."""
        h = _hashes.c
        count = 0
        for chunk in _chunks(sorted({str(k) for k in keys if k})):
            with self._write() as conn:
                count += conn.execute(update(_hashes).where(h.scope == scope, h.object == obj, h.external_id.in_(chunk))
                                      .values(hash=value)).rowcount
        return count

    def clear_hashes(self, scope: str, objects: Iterable[str] | None = None) -> int:
        """Drop the scope's hashes and Salesforce fingerprints (all objects, or these); returns the hashes dropped."""
        h, f = _hashes.c, _fingerprints.c
        with self._write() as conn:
            where_h, where_f = [h.scope == scope], [f.scope == scope]
            if objects is not None:
                names = list(objects)
                where_h.append(h.object.in_(names))
                where_f.append(f.object.in_(names))
            count = conn.execute(delete(_hashes).where(*where_h)).rowcount
            conn.execute(delete(_fingerprints).where(*where_f))
        return count

    def get_fingerprint(self, scope: str, obj: str) -> dict[str, Any] | None:
        """The object's Salesforce fingerprint after the last writing session, or None."""
        f = _fingerprints.c
        with self._read() as conn:
            row = conn.execute(select(_fingerprints).where(f.scope == scope, f.object == obj)).first()
        if row is None or row.record_count is None:
            return None
        return {"record_count": int(row.record_count), "last_modified": row.last_modified,
                "hashed_count": int(row.hashed_count or 0), "measured_at": row.measured_at}

    def forget_fingerprints(self, scope: str, objects: Iterable[str]) -> None:
        """Forget what Salesforce held of these objects: their next session reads Salesforce's keys."""
        f = _fingerprints.c
        with self._write() as conn:
            conn.execute(delete(_fingerprints).where(f.scope == scope, f.object.in_(list(objects))))

    def set_fingerprint(self, scope: str, obj: str, *, record_count: int, last_modified: str | None,
                        hashed_count: int) -> None:
        """Remember what Salesforce held of the object, and how many hashes the store had, just now."""
        f = _fingerprints.c
        with self._write() as conn:
            conn.execute(delete(_fingerprints).where(f.scope == scope, f.object == obj))
            conn.execute(insert(_fingerprints).values(scope=scope, object=obj, record_count=int(record_count),
                                                      last_modified=last_modified, hashed_count=int(hashed_count),
                                                      measured_at=self._now()))

    # ---------------------------------------------------------------- retention

    def purge(self, older_than_days: int = 90) -> dict[str, int]:
        """Delete history older than the retention period; returns rows deleted per kind.

        Sessions that ended (or, never ended, started) before the cut-off go with their counts and
        rejected records, except what the sync still needs: a session with open rejected records
        (they retry next session), each scope's latest session and latest full sync. Rejected
        records resolved before the cut-off and events received before it go too. Watermarks and
        locks are state, not history: never purged.
        """
        if older_than_days < 0:
            raise ValueError("older_than_days must not be negative")
        cutoff = self._now() - dt.timedelta(days=older_than_days)
        s, r, o, e = _sessions.c, _rejected.c, _objects.c, _events.c
        with self._write() as conn:
            keep: set[int] = set(conn.execute(select(r.session_id).distinct().where(r.resolved_at.is_(None))).scalars())
            for scope in conn.execute(select(s.scope).distinct()).scalars():
                latest = conn.execute(select(s.id).where(s.scope == scope)
                                      .order_by(s.started_at.desc(), s.id.desc()).limit(1)).scalar_one_or_none()
                full = conn.execute(select(s.id).where(
                    s.scope == scope, s.session_type.in_(FULL_SESSION_TYPES),
                    s.status.in_((FINISHED, FINISHED_WITH_ERRORS)), s.dry_run.is_(False))
                    .order_by(s.ended_at.desc(), s.id.desc()).limit(1)).scalar_one_or_none()
                keep.update(i for i in (latest, full) if i is not None)
            old = or_(s.ended_at < cutoff, and_(s.ended_at.is_(None), s.started_at < cutoff))
            doomed = [i for i in conn.execute(select(s.id).where(old)).scalars() if i not in keep]
            counts = {"sessions": 0, "session_objects": 0, "rejected": 0, "events": 0}
            for chunk in _chunks(doomed):
                counts["session_objects"] += conn.execute(delete(_objects).where(o.session_id.in_(chunk))).rowcount
                counts["rejected"] += conn.execute(delete(_rejected).where(r.session_id.in_(chunk))).rowcount
                counts["sessions"] += conn.execute(delete(_sessions).where(s.id.in_(chunk))).rowcount
            counts["rejected"] += conn.execute(delete(_rejected).where(r.resolved_at < cutoff)).rowcount
            counts["events"] += conn.execute(delete(_events).where(e.received_at < cutoff)).rowcount
        log.info("State store purge (older than %d days): %s", older_than_days, counts)
        return counts
