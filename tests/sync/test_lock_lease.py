"""The lock lease heartbeat (``zuora_sync.lock_lease``): against a real SQLite state store, a live
holder keeps its lock past the lease, a holder that lost it stops at once with a message that says
why, and leaving the ``with`` block stops the heartbeat; and end to end, a real sync session
slower than its lease keeps its lock while a second session waits for it."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, update

from sync_harness import compare_scope, run_dag, running_stack, spawn_dag_run
from zuora_sync.lock_lease import LockLease, LockLostError
from zuora_sync.mapping import load_mapping
from zuora_sync.state import StateStore
from zuora_sync.state.models import ScopeLock

LEASE = 3  # seconds: renewed every second


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


def expire(store: StateStore, holder: str) -> None:
    """What a frozen process would see: its lease ran out (without waiting for it)."""
    engine = create_engine(store.url)
    with engine.begin() as conn:
        conn.execute(update(ScopeLock.__table__).where(ScopeLock.__table__.c.holder == holder)
                     .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    engine.dispose()


def lease_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lock lease of ")]


def test_a_live_holder_keeps_its_lock_past_the_lease(store):
    assert store.try_lock(["accounts"], "sync/run-1", lease_seconds=LEASE) == (True, None)
    with LockLease(store, "sync/run-1", LEASE):
        deadline = time.monotonic() + 2.5 * LEASE
        while time.monotonic() < deadline:
            assert store.try_lock(["accounts"], "sync/run-2", lease_seconds=LEASE) == (False, "sync/run-1")
            time.sleep(0.25)
    assert not lease_threads()  # the heartbeat stopped with the block
    assert store.lock_holders() == {"accounts": "sync/run-1"}  # the lock stays until the session ends


def test_a_holder_that_lost_its_lock_stops_at_once_and_says_why(store):
    assert store.try_lock(["accounts"], "sync/run-1", lease_seconds=LEASE)[0]
    writes: list[float] = []
    taken: dict[str, float] = {}

    def take_over() -> None:
        time.sleep(0.3)
        expire(store, "sync/run-1")
        assert store.try_lock(["accounts"], "sync/run-2", lease_seconds=LEASE)[0]
        taken["at"] = time.monotonic()

    intruder = threading.Thread(target=take_over)
    intruder.start()
    until = time.monotonic() + 3 * LEASE
    with pytest.raises(LockLostError) as caught:
        with LockLease(store, "sync/run-1", LEASE):
            while time.monotonic() < until:  # a long Bulk job, one request at a time
                writes.append(time.monotonic())
                time.sleep(0.01)
    intruder.join()
    message = str(caught.value)
    assert "sync/run-1 lost its lock" in message and "accounts: sync/run-2" in message
    assert "stopped without writing more" in message
    # The next renewal (a third of the lease) found it gone: nothing was written after that.
    assert writes[-1] - taken["at"] < LEASE / 3 + 0.5
    assert not lease_threads()
    assert store.lock_holders() == {"accounts": "sync/run-2"}


def test_a_task_that_starts_without_the_lock_does_nothing(store):
    assert store.try_lock(["cleanup"], "cleanup/run-1", lease_seconds=LEASE)[0]
    store.release_lock("cleanup/run-1")
    ran = []
    with pytest.raises(LockLostError, match="cleanup/run-1 lost its lock"):
        with LockLease(store, "cleanup/run-1", LEASE):
            ran.append(True)
    assert not ran and not lease_threads()


def test_release_ends_the_heartbeat_and_the_lock(store):
    assert store.try_lock(["catalog"], "catalog/run-1", lease_seconds=LEASE)[0]
    with LockLease(store, "catalog/run-1", LEASE) as lease:
        lease.release()
        time.sleep(LEASE / 3 + 0.5)  # a heartbeat still running would find the lock gone and interrupt
    assert store.lock_holders() == {} and not lease_threads()


# -- a real session slower than its lease -------------------------------------------------------------

ACCOUNTS = 5
SEED = 44
SHORT_LEASE = 9  # seconds: renewed every 3 s; longer than the gaps between two tasks of a dag.test() run


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("lease"), accounts=ACCOUNTS, seed=SEED,
                       settings={"lock_lease_seconds": SHORT_LEASE}) as value:
        yield value


def test_a_session_slower_than_its_lease_keeps_its_lock_and_the_next_one_waits(stack, tmp_path):
    """The first sync's first Bulk upload alone takes longer than the whole lease; a second session
    started meanwhile must wait for it (deferred) instead of taking its lock over."""
    store = StateStore.from_airflow()
    stack["salesforce"].admin("POST", "faults", {"kind": "slow", "delay_seconds": SHORT_LEASE + 4, "count": 1,
                                                 "method": "PUT", "path": "/jobs/ingest/[^/]+/batches$"})
    log_path = tmp_path / "slow-session.log"
    child = spawn_dag_run("zuora_full_sync", log_path)
    try:
        deadline = time.monotonic() + 120
        while "accounts" not in store.lock_holders():
            assert child.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.1)
        assert run_dag("zuora_incremental_sync") == "success"  # waits (deferred) for the slow one, then runs
        assert child.wait(timeout=300) == 0
        assert stack["salesforce"].admin("GET", "faults")["request_faults"] == []  # the slow upload happened
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        stack["salesforce"].admin("DELETE", "faults")
    assert "RESULT success" in log_path.read_text(), log_path.read_text()[-3000:]
    second, first = store.list_sessions(limit=2)
    assert first["session_type"] == "Full" and first["error"] is None, first
    assert first["status"] in ("Finished", "Finished with Errors")  # the tenant's invalid CRM Ids
    assert (first["ended_at"] - first["started_at"]).total_seconds() > SHORT_LEASE
    assert second["started_at"] >= first["ended_at"], "the second session took the lock of a live one"
    assert second["session_type"] == "Incremental" and second["status"] in ("Finished", "Finished with Errors")
    assert store.lock_holders() == {}
    rejected = {o.name: set(store.open_rejected_ids("accounts", o.name)) for o in load_mapping().scope_objects("accounts")}
    problems = compare_scope(stack["zuora"].data_dir, stack["salesforce"].login(), "accounts", rejected,
                             ZoneInfo("America/Los_Angeles"), stack["base"])
    assert not problems, "\n".join(problems[:30])
