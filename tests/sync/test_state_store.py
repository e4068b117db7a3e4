"""The state store against real databases — SQLite files and a real PostgreSQL server (every test
that takes ``url`` or ``store`` runs on both): migrations, locks across threads and processes,
watermarks, session status rules, rejected records, events, retention, Airflow connection lookup."""

from __future__ import annotations

import datetime as dt
import io
import json
import multiprocessing
import sqlite3
import threading
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from zuora_sync.state import (
    FAILURE,
    FINISHED,
    FINISHED_WITH_ERRORS,
    RUNNING,
    SESSION_STATUSES,
    SESSION_TYPES,
    STOPPED,
    LockLost,
    StateStore,
    alembic_config,
)
from zuora_sync.state.models import Base

UTC = dt.UTC
T0 = dt.datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
TABLES = {"zuora_sync_watermark", "zuora_sync_scope_reset", "zuora_sync_session", "zuora_sync_session_object",
          "zuora_sync_rejected", "zuora_sync_event", "zuora_sync_lock", "zuora_sync_alembic_version",
          "zuora_sync_record_hash", "zuora_sync_sf_fingerprint"}


class Clock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(url: str, clock: Clock) -> StateStore:
    return StateStore(url, clock=clock)


def _session(store: StateStore, session_type: str = "Incremental", scope: str = "accounts", **kwargs) -> int:
    values = {"session_type": session_type, "scope": scope, "trigger": "manual", "dag_id": "zuora_incremental_sync",
              "run_id": f"manual__{session_type}", "window_start": None, "window_end": None}
    values.update(kwargs)
    return store.start_session(**values)


# ------------------------------------------------------------------------------ migrations


def test_migrations_create_the_schema_lazily_and_are_idempotent(tmp_path: Path, url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    store = StateStore(url)
    assert not (tmp_path / "state.db").exists(), "no I/O before first use"
    assert store.get_watermark("accounts", "Account") is None          # first use migrates
    assert set(inspect(create_engine(url)).get_table_names()) == TABLES
    assert store.schema_revision() == "0003"

    store.migrate()
    StateStore(url).migrate()                                          # again, from another instance
    assert store.schema_revision() == "0003"

    # The models and the migrations describe the same schema.
    with create_engine(url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "version_table": "zuora_sync_alembic_version"})
        assert compare_metadata(context, Base.metadata) == []


def test_the_migrations_render_for_postgresql_too() -> None:
    """Offline mode: the DDL the migrations emit on PostgreSQL (no server needed)."""
    from alembic import command

    out = io.StringIO()
    with redirect_stdout(out):
        command.upgrade(alembic_config("postgresql://user@db.example/zuora_sync"), "head", sql=True)
    ddl = out.getvalue()
    assert "CREATE TABLE zuora_sync_session" in ddl
    assert "TIMESTAMP WITH TIME ZONE" in ddl
    assert "BIGSERIAL" in ddl and "SERIAL" in ddl
    assert "CREATE TABLE zuora_sync_alembic_version" in ddl


# ------------------------------------------------------------------------------ locks


def _race_worker(url: str, holder: str, barrier, results) -> None:
    try:
        store = StateStore(url)          # a fresh database: every process also races to migrate it
        barrier.wait(timeout=60)
        acquired, other = store.try_lock(["accounts"], holder)
        results.put((holder, acquired, other, None))
    except Exception as exc:  # noqa: BLE001 - reported to the test, not lost in the child
        results.put((holder, None, None, repr(exc)))


def test_processes_race_for_a_lock_on_a_fresh_database_and_exactly_one_wins(url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    processes = [ctx.Process(target=_race_worker, args=(url, f"proc-{i}", barrier, results)) for i in range(4)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=90) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert [o for o in outcomes if o[3]] == []
    winners = [holder for holder, acquired, _, _ in outcomes if acquired]
    assert len(winners) == 1
    assert {other for _, acquired, other, _ in outcomes if not acquired} == {winners[0]}
    assert StateStore(url).lock_holders() == {"accounts": winners[0]}


def test_two_store_instances_race_for_a_lock_and_exactly_one_wins(url: str) -> None:
    StateStore(url).migrate()
    stores = [StateStore(url), StateStore(url)]
    barrier = threading.Barrier(len(stores) * 4)
    outcomes: list[tuple[str, bool]] = []

    def take(store: StateStore, holder: str) -> None:
        barrier.wait()
        outcomes.append((holder, store.try_lock(["accounts", "catalog"], holder)[0]))

    threads = [threading.Thread(target=take, args=(stores[i % 2], f"t{i}")) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [holder for holder, acquired in outcomes if acquired]
    assert len(winners) == 1
    assert stores[0].lock_holders() == {"accounts": winners[0], "catalog": winners[0]}


def test_an_expired_lease_is_taken_over(store: StateStore, clock: Clock) -> None:
    assert store.try_lock(["accounts"], "dag/run-1", lease_seconds=60) == (True, None)
    assert store.try_lock(["accounts"], "dag/run-2") == (False, "dag/run-1")
    clock.advance(seconds=30)
    store.renew_lock("dag/run-1", lease_seconds=60)                    # now good until +90 s
    clock.advance(seconds=59)
    assert store.try_lock(["accounts"], "dag/run-2") == (False, "dag/run-1")
    clock.advance(seconds=2)
    assert store.lock_holders() == {}
    assert store.try_lock(["accounts"], "dag/run-2") == (True, None)
    assert store.lock_holders() == {"accounts": "dag/run-2"}
    with pytest.raises(LockLost):
        store.renew_lock("dag/run-1")
    store.release_lock("dag/run-1")                                    # not its lock any more: no effect
    assert store.lock_holders() == {"accounts": "dag/run-2"}


def test_an_abandoned_lock_is_released_and_its_session_recorded_as_a_failure(store: StateStore) -> None:
    stranded = _session(store, run_id="manual__1")
    other = _session(store, run_id="manual__2")
    assert store.try_lock(["accounts"], "zuora_incremental_sync/manual__1")[0]
    assert store.abandon_lock("zuora_incremental_sync/manual__1", "its DAG run ended (failed)") is True
    assert store.lock_holders() == {}
    session = store.get_session(stranded)
    assert session["status"] == "Failure" and session["ended_at"] is not None
    assert session["error"] == "interrupted: its DAG run ended (failed); the next session syncs its changes"
    assert store.get_session(other)["status"] == "Running"  # another run's session is not touched
    assert store.abandon_lock("zuora_incremental_sync/manual__1", "again") is False  # holds nothing now
    assert store.get_session(stranded)["error"].startswith("interrupted: its DAG run ended (failed)")


def test_cleanup_excludes_every_scope_and_locks_are_all_or_none(store: StateStore) -> None:
    assert store.try_lock(["accounts"], "incremental") == (True, None)
    assert store.try_lock(["accounts"], "incremental") == (True, None)  # re-entrant (a retried task)
    assert store.try_lock(["catalog"], "catalog-sync") == (True, None)  # other objects: no conflict
    assert store.try_lock(["catalog", "accounts"], "full") == (False, "incremental")
    assert store.lock_holders() == {"accounts": "incremental", "catalog": "catalog-sync"}
    assert store.try_lock(["cleanup"], "cleanup") == (False, "incremental")
    store.release_lock("catalog-sync")
    assert store.try_lock(["cleanup"], "cleanup") == (False, "incremental")
    assert store.lock_holders() == {"accounts": "incremental"}         # nothing half-taken
    store.release_lock("incremental")
    assert store.try_lock(["cleanup"], "cleanup") == (True, None)
    assert store.try_lock(["catalog"], "catalog-sync") == (False, "cleanup")
    assert store.try_lock(["accounts"], "incremental") == (False, "cleanup")
    assert store.try_lock(["cleanup", "accounts"], "cleanup") == (True, None)
    store.release_lock("cleanup")
    assert store.lock_holders() == {}
    assert store.try_lock(["catalog", "accounts"], "full") == (True, None)
    with pytest.raises(ValueError):
        store.try_lock([], "nobody")


# ------------------------------------------------------------------------------ watermarks


def test_watermarks_never_move_backwards_unless_forced(store: StateStore) -> None:
    assert store.get_watermark("accounts", "Account") is None
    store.set_watermark("accounts", "Account", T0)
    store.set_watermark("accounts", "Account", T0 - dt.timedelta(hours=1))
    assert store.get_watermark("accounts", "Account") == T0
    later = (T0 + dt.timedelta(minutes=5, microseconds=7)).astimezone(dt.timezone(dt.timedelta(hours=-8)))
    store.set_watermark("accounts", "Account", later)                  # any offset in, UTC out
    value = store.get_watermark("accounts", "Account")
    assert value == later and value.tzinfo == UTC and value.microsecond == 7
    store.set_watermark("accounts", "Account", T0, force=True)
    assert store.get_watermark("accounts", "Account") == T0
    store.set_watermark("accounts", "Invoice", T0 + dt.timedelta(days=1))
    store.set_watermark("catalog", "Product", T0)
    assert store.watermarks("accounts") == {"Account": T0, "Invoice": T0 + dt.timedelta(days=1)}
    with pytest.raises(ValueError, match="naive"):
        store.set_watermark("accounts", "Account", dt.datetime(2030, 1, 1))

    store.reset_watermarks("accounts")
    assert store.watermarks("accounts") == {}
    assert store.watermarks("catalog") == {"Product": T0}


def test_last_full_sync_counts_finished_real_full_syncs_since_the_last_reset(store: StateStore, clock: Clock) -> None:
    assert store.last_full_sync("accounts") is None
    store.finish_session(_session(store, "Full", dry_run=True))                 # a dry run writes nothing
    store.finish_session(_session(store, "Full"), error="Salesforce unreachable")
    store.finish_session(_session(store, "Incremental"))
    assert store.last_full_sync("accounts") is None
    full = _session(store, "Full")
    clock.advance(minutes=10)
    store.add_rejected(full, "Account", [("A1", "INVALID_CROSS_REFERENCE_KEY", "bad CRM id", {})])
    assert store.finish_session(full) == FINISHED_WITH_ERRORS
    assert store.last_full_sync("accounts") == T0 + dt.timedelta(minutes=10)
    assert store.last_full_sync("catalog") is None
    store.finish_session(_session(store, "Product Catalog", scope="catalog"))
    assert store.last_full_sync("catalog") == T0 + dt.timedelta(minutes=10)

    clock.advance(minutes=1)
    store.reset_watermarks("accounts")                                 # a cleanup: next sync is full
    assert store.last_full_sync("accounts") is None
    assert store.last_full_sync("catalog") is not None
    clock.advance(minutes=1)
    store.finish_session(_session(store, "Full"))
    assert store.last_full_sync("accounts") == T0 + dt.timedelta(minutes=12)


# ------------------------------------------------------------------------------ sessions


def test_session_status_is_derived_from_what_happened(store: StateStore) -> None:
    assert SESSION_STATUSES == (RUNNING, FINISHED, FINISHED_WITH_ERRORS, FAILURE, STOPPED)
    assert "Sync Clean-up" in SESSION_TYPES

    clean = _session(store)
    assert store.get_session(clean)["status"] == RUNNING
    store.record_counts(clean, "Account", extracted=3)
    store.record_counts(clean, "Account", upserted=3)
    assert store.finish_session(clean) == FINISHED

    rejected = _session(store)
    store.record_counts(rejected, "Invoice", extracted=2, upserted=1)
    store.add_rejected(rejected, "Invoice", [("I1", "FIELD_CUSTOM_VALIDATION_EXCEPTION", "no", {"Id": "I1"})])
    assert store.finish_session(rejected) == FINISHED_WITH_ERRORS

    counted = _session(store)
    store.record_counts(counted, "Payment", failed=1)
    assert store.finish_session(counted) == FINISHED_WITH_ERRORS

    failed = _session(store)
    store.add_rejected(failed, "Invoice", [("I2", "X", "no", {})])
    assert store.finish_session(failed, error="tasks did not finish: load_Invoice") == FAILURE
    assert store.get_session(failed)["error"] == "tasks did not finish: load_Invoice"

    stopped = _session(store)
    assert store.finish_session(stopped, stopped=True, error="API budget below the reserve") == STOPPED
    assert store.get_session(stopped)["error"] == "API budget below the reserve"
    assert store.finish_session(_session(store), stopped=True) == STOPPED

    with pytest.raises(KeyError):
        store.finish_session(10_000)
    with pytest.raises(ValueError, match="allowed"):
        _session(store, "Weekly")


def test_sessions_keep_counts_api_calls_and_are_listed(store: StateStore, clock: Clock) -> None:
    window = (T0 - dt.timedelta(hours=2), T0)
    sid = _session(store, "Incremental", window_start=window[0], window_end=window[1], dry_run=True)
    store.record_counts(sid, "Account", extracted=10)
    store.record_counts(sid, "Account", upserted=9, failed=1)
    store.record_counts(sid, "Subscription", extracted=4, upserted=4, deleted=2)
    store.add_api_calls(sid, zuora=3)
    store.add_api_calls(sid, zuora=1, salesforce=5)
    clock.advance(minutes=3)
    store.finish_session(sid)
    got = store.get_session(sid)
    zero = {"created": 0, "updated": 0, "unchanged": 0, "removed": 0}
    assert got["objects"] == {"Account": {"extracted": 10, "upserted": 9, "deleted": 0, "failed": 1, **zero},
                              "Subscription": {"extracted": 4, "upserted": 4, "deleted": 2, "failed": 0, **zero}}
    assert got["totals"] == {"extracted": 14, "upserted": 13, "deleted": 2, "failed": 1, **zero}
    assert got["api_calls"] == {"zuora": 4, "salesforce": 5}
    assert (got["window_start"], got["window_end"]) == window
    assert got["dry_run"] is True and got["session_type"] == "Incremental"
    assert (got["started_at"], got["ended_at"]) == (T0, T0 + dt.timedelta(minutes=3))

    catalog = _session(store, "Product Catalog", scope="catalog")
    store.finish_session(catalog)
    realtime = _session(store, "Real-time")
    listed = store.list_sessions()
    assert [s["id"] for s in listed] == [realtime, catalog, sid]
    assert listed[2]["objects"]["Subscription"]["deleted"] == 2
    assert [s["id"] for s in store.list_sessions(limit=1, offset=1)] == [catalog]
    assert [s["id"] for s in store.list_sessions(session_type="Product Catalog")] == [catalog]
    assert [s["id"] for s in store.list_sessions(status=RUNNING)] == [realtime]
    assert [s["id"] for s in store.list_sessions(since=T0 + dt.timedelta(minutes=1))] == [realtime, catalog]
    assert store.last_session("accounts")["id"] == realtime
    assert store.last_session("accounts", ended=True)["id"] == sid
    assert store.last_session("catalog")["id"] == catalog
    assert store.last_session("nothing") is None
    with pytest.raises(KeyError):
        store.get_session(12345)


# ------------------------------------------------------------------------------ rejected records


def test_rejected_records_are_kept_listed_and_resolved(store: StateStore) -> None:
    first = _session(store)
    row = {"Zuora__External_Id__c": "A1", "Name": "Acme", "Zuora__Account__c": "001BAD"}
    assert store.add_rejected(first, "Account", [
        ("A1", "INVALID_CROSS_REFERENCE_KEY", "invalid CRM Id 001BAD", row),
        ("A2", "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access", {"Zuora__External_Id__c": "A2"}),
        (None, "INVALID_FIELD", "no external id in the row", {}),
    ]) == 3
    store.add_rejected(first, "Invoice", [("I1", "X", "m", {})])
    assert store.open_rejected_ids("accounts", "Account") == ["A1", "A2"]
    assert store.open_rejected_ids("catalog", "Account") == []
    stored = list(store.rejected_for_session(first))
    assert [(r["object"], r["external_id"], r["error_code"]) for r in stored] == [
        ("Account", "A1", "INVALID_CROSS_REFERENCE_KEY"), ("Account", "A2", "UNABLE_TO_LOCK_ROW"),
        ("Account", None, "INVALID_FIELD"), ("Invoice", "I1", "X")]
    assert stored[0]["message"] == "invalid CRM Id 001BAD" and stored[0]["row"] == row
    assert stored[0]["created_at"].tzinfo == UTC and stored[0]["resolved_at"] is None
    assert store.finish_session(first) == FINISHED_WITH_ERRORS

    second = _session(store)                                            # retries A1 and A2: A1 fails again
    store.add_rejected(second, "Account", [("A1", "INVALID_CROSS_REFERENCE_KEY", "still bad", row)])
    assert store.resolve_rejected("Account", ["A2"], second) == 1
    assert store.open_rejected_ids("accounts", "Account") == ["A1"]
    assert store.finish_session(second) == FINISHED_WITH_ERRORS

    third = _session(store)                                             # the CRM Id was fixed
    assert store.resolve_rejected("Account", ["A1", "A1", "unknown"], third) == 2   # both open rejections
    assert store.open_rejected_ids("accounts", "Account") == []
    assert store.finish_session(third) == FINISHED
    resolved = {r["external_id"]: r for r in store.rejected_for_session(first)}
    assert resolved["A1"]["resolved_session_id"] == third and resolved["A2"]["resolved_session_id"] == second
    assert store.get_session(first)["rejected"] == 4


def test_rejected_records_are_read_in_pages(store: StateStore) -> None:
    sid = _session(store)
    rows = ((f"K{i:05d}", "E", f"message {i}", {"n": i, "amount": "12.30"}) for i in range(2345))
    assert store.add_rejected(sid, "RatePlanCharge", rows) == 2345
    read = list(store.rejected_for_session(sid))
    assert len(read) == 2345 and len({r["id"] for r in read}) == 2345
    assert read[-1]["external_id"] == "K02344" and read[-1]["row"] == {"n": 2344, "amount": "12.30"}
    assert len(store.open_rejected_ids("accounts", "RatePlanCharge")) == 2345


# ------------------------------------------------------------------------------ events


def test_events_are_idempotent_on_the_notification_id(store: StateStore, clock: Clock) -> None:
    assert store.last_event_id() is None
    assert store.add_event("n-1", "AccountUpdated", {"AccountId": "A1"}) is True
    assert store.add_event("n-1", "AccountUpdated", {"AccountId": "A1"}) is False   # Zuora's retry
    clock.advance(minutes=10)
    assert store.add_event("n-2", "InvoicePosted", {"InvoiceId": "I1"}) is True
    assert store.pending_event_count() == 2
    assert store.pending_event_count(since=T0 + dt.timedelta(minutes=5)) == 1

    up_to = store.last_event_id()
    session = _session(store, "Real-time")
    assert store.add_event("n-3", "PaymentProcessed", {}, received=T0 + dt.timedelta(minutes=11)) is True
    assert store.mark_events_consumed(up_to, session) == 2
    assert store.pending_event_count() == 1                                        # arrived during the session
    assert store.mark_events_consumed(up_to, session) == 0
    assert store.add_event("n-1", "AccountUpdated", {}) is False                   # still remembered


def test_concurrent_duplicate_events_are_stored_once(url: str) -> None:
    StateStore(url).migrate()
    barrier = threading.Barrier(8)
    accepted: list[bool] = []

    def send(worker: int) -> None:
        store = StateStore(url)
        barrier.wait()
        for i in range(50):
            accepted.append(store.add_event(f"n-{(worker * 50 + i) % 200}", "AccountUpdated", {"i": i}))

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert accepted.count(True) == 200 and accepted.count(False) == 200
    assert StateStore(url).pending_event_count() == 200


# ------------------------------------------------------------------------------ retention


def test_purge_removes_history_older_than_the_retention(store: StateStore, clock: Clock) -> None:
    old_full = _session(store, "Full")
    store.record_counts(old_full, "Account", extracted=1, upserted=1)
    store.finish_session(old_full)
    old_incremental = _session(store)
    store.record_counts(old_incremental, "Account", extracted=1, upserted=1)
    store.add_rejected(old_incremental, "Account", [("A1", "E", "m", {}), ("A2", "E", "m", {})])
    store.resolve_rejected("Account", ["A1", "A2"], old_incremental)
    store.finish_session(old_incremental)
    old_open = _session(store)
    store.add_rejected(old_open, "Invoice", [("I1", "E", "m", {})])               # still to retry
    store.finish_session(old_open)
    store.add_event("old-event", "AccountUpdated", {})
    old_catalog = _session(store, "Product Catalog", scope="catalog")             # the scope's latest
    store.finish_session(old_catalog)

    clock.advance(days=100)
    recent = _session(store)
    store.finish_session(recent)
    store.add_event("new-event", "AccountUpdated", {})

    assert store.purge(older_than_days=90) == {"sessions": 1, "session_objects": 1, "rejected": 2, "events": 1}
    remaining = {s["id"] for s in store.list_sessions()}
    assert remaining == {old_full, old_open, old_catalog, recent}
    assert store.last_full_sync("accounts") == T0                      # the last full sync is kept
    assert store.open_rejected_ids("accounts", "Invoice") == ["I1"]
    assert store.pending_event_count() == 1
    assert store.add_event("new-event", "AccountUpdated", {}) is False
    assert store.purge(older_than_days=90) == {"sessions": 0, "session_objects": 0, "rejected": 0, "events": 0}
    clock.advance(days=1)
    assert store.purge(older_than_days=0)["events"] == 1


# ------------------------------------------------------------------------------ Airflow connection


def test_from_airflow_without_a_connection_uses_airflow_home(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "airflow-home"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    monkeypatch.delenv("AIRFLOW_CONN_ZUORA_SYNC_STATE", raising=False)
    store = StateStore.from_airflow()
    assert store.url == f"sqlite:///{home.resolve() / 'zuora_sync' / 'state.db'}"
    store.set_watermark("accounts", "Account", T0)
    assert (home / "zuora_sync" / "state.db").is_file()
    assert StateStore.from_airflow("zuora_sync_state").get_watermark("accounts", "Account") == T0


def test_from_airflow_uses_the_connection(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "elsewhere" / "file.db"
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "unused-home"))
    monkeypatch.setenv("AIRFLOW_CONN_ZUORA_SYNC_STATE", json.dumps({"conn_type": "sqlite", "host": str(path)}))
    store = StateStore.from_airflow()
    assert store.url == f"sqlite:///{path}"
    store.set_watermark("accounts", "Account", T0)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT object FROM zuora_sync_watermark").fetchall() == [("Account",)]
    assert not (tmp_path / "unused-home").exists()

    other = tmp_path / "by-url.db"
    monkeypatch.setenv("AIRFLOW_CONN_ZUORA_SYNC_STATE", json.dumps(
        {"conn_type": "generic", "extra": {"sqlalchemy_url": f"sqlite:///{other}"}}))
    assert StateStore.from_airflow().url == f"sqlite:///{other}"

    monkeypatch.setenv("AIRFLOW_CONN_ZUORA_SYNC_STATE", json.dumps(
        {"conn_type": "postgres", "host": "db", "port": 5432, "login": "zs", "password": "p@ss/word",
         "schema": "zuora_sync", "extra": {"sslmode": "require"}}))
    pg = StateStore.from_airflow()                                     # no I/O yet: nothing to connect to
    assert pg.url == "postgresql+psycopg2://zs:p%40ss%2Fword@db:5432/zuora_sync?sslmode=require"
    assert "p%40ss" not in repr(pg)


def test_migration_0002_upgrades_a_0001_database_and_keeps_its_rows(tmp_path):
    """A store created by the first release gains the ``details`` column without losing sessions."""
    import datetime as dt

    from alembic import command

    from zuora_sync.state import StateStore
    from zuora_sync.state.store import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0001")
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO zuora_sync_session (session_type, scope, trigger, dag_id, run_id, status, dry_run, "
            "started_at, zuora_api_calls, salesforce_api_calls) VALUES ('Full', 'accounts', 'manual', 'd', 'r', "
            "'Finished', 0, :now, 1, 2)"), {"now": dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)})
    engine.dispose()
    store = StateStore(url)
    session = store.list_sessions(limit=1)[0]
    assert session["details"] == {} and session["api_calls"] == {"zuora": 1, "salesforce": 2}
    store.add_details(session["id"], lookups_at_risk=[{"object": "X__c", "field": "Sub__c", "records": 3}])
    store.add_details(session["id"], note="kept")
    assert store.get_session(session["id"])["details"] == {
        "lookups_at_risk": [{"object": "X__c", "field": "Sub__c", "records": 3}], "note": "kept"}


def test_a_postgres_connection_reaches_a_real_server(postgres_server, monkeypatch) -> None:
    """An Airflow ``postgres`` connection (no ``sqlalchemy_url``) is enough: the sync names the driver."""
    url = postgres_server.new_database()
    database = url.rsplit("/", 1)[1]
    monkeypatch.setenv("AIRFLOW_CONN_ZUORA_SYNC_STATE", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": postgres_server.port, "login": "postgres",
         "schema": database}))
    store = StateStore.from_airflow()
    assert store.dialect == "postgresql"
    assert store.try_lock(["accounts"], "dag/run") == (True, None)
    assert store.schema_revision() == "0003"
    assert StateStore(url).lock_holders() == {"accounts": "dag/run"}


# ------------------------------------------------------------------------------ record hashes


def test_record_hashes_are_stored_read_in_key_order_forgotten_and_cleared(store: StateStore) -> None:
    assert store.hash_count("accounts", "Account") == 0
    store.put_hashes("accounts", "Account", [(f"k{i:03}", f"h{i}") for i in range(1200)])
    store.put_hashes("accounts", "Account", [("k005", "changed")])          # replaced, not added
    store.put_hashes("accounts", "Invoice", [("k001", "x")])
    assert store.hash_count("accounts", "Account") == 1200
    assert store.stored_hashes("accounts", "Account", from_key="k004", limit=3) == [
        ("k004", "h4"), ("k005", "changed"), ("k006", "h6")]
    assert list(store.hashed_keys("accounts", "Account", page=500)) == sorted(f"k{i:03}" for i in range(1200))
    assert store.forget_hashes("accounts", "Account", ["k001", "k002", "nope"]) == 2
    assert store.hash_count("accounts", "Account") == 1198

    store.set_fingerprint("accounts", "Account", record_count=1198, last_modified="2026-12-05T10:00:00.000+0000",
                          hashed_count=1198)
    assert store.get_fingerprint("accounts", "Account")["record_count"] == 1198
    assert store.clear_hashes("accounts", ["Account"]) == 1198
    assert store.get_fingerprint("accounts", "Account") is None
    assert store.hash_count("accounts", "Invoice") == 1
    store.clear_hashes("accounts")
    assert store.hash_count("accounts", "Invoice") == 0


def test_the_four_hash_counts_add_up_per_object(store: StateStore) -> None:
    sid = _session(store)
    store.record_counts(sid, "Account", created=2, unchanged=5)
    store.record_counts(sid, "Account", updated=1, removed=3)
    session = store.get_session(sid)
    assert {k: session["objects"]["Account"][k] for k in ("created", "updated", "unchanged", "removed")} == {
        "created": 2, "updated": 1, "unchanged": 5, "removed": 3}
    assert session["totals"]["unchanged"] == 5
