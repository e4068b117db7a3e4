"""SalesforceBulkLoader against the Salesforce sandbox over real HTTPS (no mocks of our code).

Each test writes its CSVs in ``tmp_path`` with its own external-id prefix (``unique``), goes
through the provider's ``SalesforceHook`` via ``AIRFLOW_CONN_SALESFORCE_DEFAULT``, and checks the
result in the org with a separate simple-salesforce client (``sf``). Faults and the API allowance
are reset after each test by the ``sf_sandbox`` fixture.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from pathlib import Path
from typing import Self

import pytest
from zuora_sync.salesforce_loader import (
    MAX_JOB_BYTES,
    ApiBudgetExhausted,
    BulkJobFailed,
    JobOutcome,
    SalesforceBulkLoader,
    parse_sf_error,
)

CA = "Zuora__CustomerAccount__c"
SUB = "Zuora__Subscription__c"
EXT = "Zuora__External_Id__c"


@pytest.fixture
def connection(sf_sandbox, monkeypatch):
    """Point the provider's ``salesforce_default`` connection at the sandbox."""
    monkeypatch.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", sf_sandbox.env["AIRFLOW_CONN_SALESFORCE_DEFAULT"])
    return sf_sandbox


@pytest.fixture
def loader(connection) -> SalesforceBulkLoader:
    from zuora_sync.hooks.salesforce_bulk import forget_sessions

    forget_sessions()  # each test counts its own logins (a session another test expired is not reused)
    return SalesforceBulkLoader()


@pytest.fixture
def account_ids(sf) -> list[str]:
    """Seeded standard Accounts: the master of every customer account."""
    ids = [r["Id"] for r in sf.query("SELECT Id FROM Account LIMIT 5")["records"]]
    assert ids, "the sandbox should be seeded with Accounts"
    return ids


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def customer_accounts(path: Path, prefix: str, count: int, account_id: str, name: str = "Acme") -> Path:
    rows = [[f"{prefix}-{i:05d}", f"{name} {i}", account_id] for i in range(count)]
    return write_csv(path, [EXT, "Name", "Zuora__Account__c"], rows)


def count_live(sf, prefix: str, sobject: str = CA) -> int:
    return sf.query(f"SELECT COUNT() FROM {sobject} WHERE {EXT} LIKE '{prefix}-%'")["totalSize"]


# -- upsert ------------------------------------------------------------------------------------


class Collect(logging.Handler):
    """Log records of one logger (Airflow's logging setup may replace the root's handlers)."""

    def __init__(self, name: str):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> Self:
        self.previous = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.previous)

    @property
    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)


def test_upsert_creates_then_updates_with_few_requests(loader, sf, unique, account_ids, tmp_path):
    path = customer_accounts(tmp_path / "ca.csv", unique, 1000, account_ids[0])

    with Collect("zuora_sync.salesforce_loader") as logs:
        created = loader.upsert_csv(CA, EXT, path)
    assert (created.processed, created.failed, created.rejected) == (1000, 0, [])
    assert created.operation == "upsert" and created.sobject == CA and created.job_id
    first_job_requests = loader.api_requests
    assert 4 <= first_job_requests <= 8, first_job_requests  # create, PUT, PATCH, a few polls
    assert count_live(sf, unique) == 1000

    customer_accounts(path, unique, 1000, account_ids[0], name="Renamed")
    updated = loader.upsert_csv(CA, EXT, path)
    assert (updated.processed, updated.failed) == (1000, 0)
    assert loader.api_requests - first_job_requests <= 8
    assert count_live(sf, unique) == 1000  # updated in place, nothing duplicated
    names = {r["Name"] for r in sf.query_all(f"SELECT Name FROM {CA} WHERE {EXT} LIKE '{unique}-%'")["records"]}
    assert names == {f"Renamed {i}" for i in range(1000)}

    lines = [r.getMessage() for r in logs.records if created.job_id in r.getMessage()]
    assert len(lines) == 1
    assert "upsert" in lines[0] and CA in lines[0] and "1000 processed, 0 failed" in lines[0]
    assert loader.hook.get_conn().session_id not in logs.text


def test_request_count_matches_salesforces_own(loader, connection, unique, account_ids, tmp_path):
    """What the loader reports per session is what the org charged (logins are free in both)."""
    path = customer_accounts(tmp_path / "ca.csv", unique, 100, account_ids[0])
    connection.admin("POST", "limits", {"daily_api_requests": 100_000, "used": 0})
    loader.upsert_csv(CA, EXT, path)
    loader.ids_for_external_ids(CA, EXT, [f"{unique}-00001"])
    loader.describe(CA)
    loader.check_budget()
    charged = connection.admin("GET", "limits")["used"]
    assert loader.api_requests == charged
    assert loader.api_usage == (charged, 100_000)


def test_small_job_does_not_wait_five_seconds(loader, unique, account_ids, tmp_path):
    path = customer_accounts(tmp_path / "ca.csv", unique, 10, account_ids[0])
    loader.describe(CA)  # log in first: the login is not what is measured
    started = time.monotonic()
    outcome = loader.upsert_csv(CA, EXT, path)
    assert outcome.processed == 10
    assert time.monotonic() - started < 2.0


def test_header_only_file_creates_no_job(loader, tmp_path):
    path = write_csv(tmp_path / "empty.csv", [EXT, "Name"], [])
    outcome = loader.upsert_csv(CA, EXT, path)
    assert outcome == JobOutcome("", "upsert", CA, 0, 0, [])
    assert loader.api_requests == 0


def test_rejected_rows_carry_code_message_and_external_id(loader, sf, unique, account_ids, tmp_path):
    path = write_csv(tmp_path / "ca.csv", [EXT, "Name", "Zuora__Account__c"], [
        [f"{unique}-ok", "Fine", account_ids[0]],
        [f"{unique}-noname", "", account_ids[0]],
        [f"{unique}-dup", "Twice A", account_ids[0]],
        [f"{unique}-dup", "Twice B", account_ids[0]],
    ])
    outcome = loader.upsert_csv(CA, EXT, path)
    assert outcome.processed == 4
    assert outcome.failed == len(outcome.rejected) == 3
    by_code = {}
    for row in outcome.rejected:
        by_code.setdefault(row.error_code, []).append(row)
    assert [r.external_id for r in by_code["REQUIRED_FIELD_MISSING"]] == [f"{unique}-noname"]
    assert "Name" in by_code["REQUIRED_FIELD_MISSING"][0].message
    assert {r.external_id for r in by_code["DUPLICATE_VALUE"]} == {f"{unique}-dup"}
    assert all(r.row["Zuora__Account__c"] == account_ids[0] for r in outcome.rejected)
    assert all(r.sf_id is None for r in outcome.rejected)  # failed creates have no Id
    assert count_live(sf, unique) == 1

    # A child whose parent (by relationship column) does not exist.
    parent = f"{unique}-ok"
    subs = write_csv(tmp_path / "sub.csv", [EXT, "Name", "Zuora__CustomerAccount__r.Zuora__External_Id__c"], [
        [f"{unique}-s1", "Good", parent],
        [f"{unique}-s2", "Orphan", f"{unique}-missing"],
    ])
    outcome = loader.upsert_csv(SUB, EXT, subs)
    assert (outcome.processed, outcome.failed) == (2, 1)
    [orphan] = outcome.rejected
    assert orphan.error_code == "INVALID_FIELD"
    assert orphan.external_id == f"{unique}-s2"
    assert f"{unique}-missing" in orphan.message
    assert orphan.row["Zuora__CustomerAccount__r.Zuora__External_Id__c"] == f"{unique}-missing"
    record = sf.query(f"SELECT Zuora__CustomerAccount__r.Zuora__External_Id__c FROM {SUB} WHERE {EXT} = '{unique}-s1'")
    assert record["records"][0]["Zuora__CustomerAccount__r"][EXT] == parent


def test_external_id_column_can_differ_from_the_key(loader, unique, account_ids, tmp_path):
    path = write_csv(tmp_path / "ca.csv", [EXT, "Zuora__AccountNumber__c", "Name", "Zuora__Account__c"], [
        [f"{unique}-x", "A-0001", "", account_ids[0]],
    ])
    outcome = loader.upsert_csv(CA, EXT, path, external_id_column="Zuora__AccountNumber__c")
    assert [r.external_id for r in outcome.rejected] == ["A-0001"]


def test_lock_row_is_a_rejected_row_not_an_error(loader, connection, sf, unique, account_ids, tmp_path):
    path = customer_accounts(tmp_path / "ca.csv", unique, 5, account_ids[0])
    connection.admin("POST", "faults", {"kind": "lock_row", "object": CA, "field": EXT, "value": f"{unique}-00003"})
    outcome = loader.upsert_csv(CA, EXT, path)
    assert (outcome.processed, outcome.failed) == (5, 1)
    [locked] = outcome.rejected
    assert (locked.error_code, locked.external_id) == ("UNABLE_TO_LOCK_ROW", f"{unique}-00003")
    # The next session retries the row and it goes through.
    assert loader.upsert_csv(CA, EXT, path).failed == 0
    assert count_live(sf, unique) == 5


def test_unknown_column_fails_the_job(loader, unique, account_ids, tmp_path):
    path = write_csv(tmp_path / "ca.csv", [EXT, "Name", "Zuora__Account__c", "Foo__c"],
                     [[f"{unique}-1", "A", account_ids[0], "x"]])
    with pytest.raises(BulkJobFailed) as failure:
        loader.upsert_csv(CA, EXT, path)
    assert failure.value.state == "Failed"
    assert "Foo__c" in failure.value.message and failure.value.job_id


def test_file_above_100_mb_is_refused_before_any_request(connection, tmp_path):
    path = tmp_path / "big.csv"
    with open(path, "wb") as handle:
        handle.write(f"{EXT},Name\n".encode())
        handle.truncate(MAX_JOB_BYTES + 1)  # sparse: no 100 MB written
    loader = SalesforceBulkLoader("no_such_connection")  # no network in __init__, nor here
    with pytest.raises(ValueError, match="100 MB"):
        loader.upsert_csv(CA, EXT, path)
    assert loader.api_requests == 0


def test_insert_and_update(loader, sf, unique, account_ids, tmp_path):
    path = customer_accounts(tmp_path / "ca.csv", unique, 3, account_ids[0])
    inserted = loader.insert_csv(CA, path, external_id_column=EXT)
    assert (inserted.operation, inserted.processed, inserted.failed) == ("insert", 3, 0)
    ids = loader.ids_for_external_ids(CA, EXT, [f"{unique}-{i:05d}" for i in range(3)])
    update = write_csv(tmp_path / "up.csv", ["Id", "Zuora__Status__c"], [[i, "Active"] for i in ids.values()])
    updated = loader.update_csv(CA, update)
    assert (updated.operation, updated.processed, updated.failed) == ("update", 3, 0)
    rows = sf.query(f"SELECT Zuora__Status__c FROM {CA} WHERE {EXT} LIKE '{unique}-%'")["records"]
    assert [r["Zuora__Status__c"] for r in rows] == ["Active"] * 3


# -- sessions, budget, transient faults ---------------------------------------------------------


def test_session_expired_mid_job_relogs_in_and_finishes(loader, connection, sf, unique, account_ids, tmp_path):
    path = customer_accounts(tmp_path / "ca.csv", unique, 50, account_ids[0])
    connection.admin("POST", "faults", {"kind": "bulk_delay", "seconds": 1.2})
    timer = threading.Timer(0.6, connection.admin, ("POST", "sessions/expire"))
    timer.start()
    try:
        outcome = loader.upsert_csv(CA, EXT, path)
    finally:
        timer.join()
    assert (outcome.processed, outcome.failed) == (50, 0)
    assert loader.relogins == 1  # the poll after the expiry got INVALID_SESSION_ID
    assert count_live(sf, unique) == 50

    # Expired between jobs: the next job's creation logs in again too.
    connection.admin("POST", "sessions/expire")
    assert loader.upsert_csv(CA, EXT, path).failed == 0
    assert loader.relogins == 2


@pytest.mark.parametrize("closely", [False, True])
def test_a_job_waited_on_closely_is_polled_at_shorter_growing_waits(loader, connection, unique, account_ids,
                                                                    tmp_path, monkeypatch, closely):
    """An object's last job holds up the next object: its polls' waits grow by a quarter up to 1 s
    (its end is noticed within a quarter of the time waited), not doubling up to 5 s."""
    import zuora_sync.salesforce_loader as module

    waits: list[float] = []
    real_sleep = time.sleep
    this_thread = threading.get_ident()

    def sleep(seconds: float) -> None:
        if threading.get_ident() == this_thread:  # time.sleep is process-wide: not another thread's
            waits.append(round(seconds, 4))
        real_sleep(seconds)

    monkeypatch.setattr(module.time, "sleep", sleep)
    loader.poll_interval = 0.2
    connection.admin("POST", "faults", {"kind": "bulk_delay", "seconds": 2.5})
    job = loader.start_upsert(CA, EXT, customer_accounts(tmp_path / "ca.csv", unique, 20, account_ids[0]))
    outcome = loader.finish(job, closely=closely)
    assert (outcome.processed, outcome.failed) == (20, 0)
    later = waits[1:]  # the first wait is what is left of the first interval since the job was closed
    assert len(later) >= 2 and sum(waits) >= 2.5
    growth, cap = (1.25, 1.0) if closely else (2.0, loader.max_poll_interval)
    assert later == [min(round(0.2 * growth ** (i + 1), 4), cap) for i in range(len(later))], later


def test_loaders_in_one_process_share_one_login_and_replace_an_expired_one(loader, connection, sf, unique,
                                                                             account_ids, tmp_path):
    """Every task of a dag.test() run is in one process: the second loader logs in no more."""
    path = customer_accounts(tmp_path / "ca.csv", unique, 10, account_ids[0])
    assert loader.upsert_csv(CA, EXT, path).failed == 0
    second = SalesforceBulkLoader()
    assert second.hook.get_conn().session_id == loader.hook.get_conn().session_id
    assert (second.upsert_csv(CA, EXT, path).failed, second.relogins) == (0, 0)

    # The session held expires: the next loader's first request is refused, it logs in again.
    connection.admin("POST", "sessions/expire")
    third = SalesforceBulkLoader()
    assert third.upsert_csv(CA, EXT, path).failed == 0
    assert third.relogins == 1 and third.hook.get_conn().session_id != loader.hook.get_conn().session_id
    # ... and that new session is the one the process holds now.
    assert SalesforceBulkLoader().hook.get_conn().session_id == third.hook.get_conn().session_id
    assert count_live(sf, unique) == 10


@pytest.mark.parametrize("where", [
    {"method": "POST", "path": r"/jobs/ingest$"},               # job creation
    {"method": "PUT", "path": r"/jobs/ingest/[^/]+/batches$"},  # the upload: a new job is started
    {"method": "PATCH", "path": r"/jobs/ingest/[^/]+$"},        # close
    {"method": "GET", "path": r"/jobs/ingest/[^/]+$"},          # poll
])
def test_invalid_session_fault_relogs_in_and_job_succeeds(loader, connection, sf, unique, account_ids,
                                                          tmp_path, where):
    path = customer_accounts(tmp_path / "ca.csv", unique, 20, account_ids[0])
    connection.admin("POST", "faults", {"kind": "invalid_session", "count": 1, **where})
    outcome = loader.upsert_csv(CA, EXT, path)
    assert (outcome.processed, outcome.failed) == (20, 0)
    assert loader.relogins == 1
    assert count_live(sf, unique) == 20


def test_dropped_upload_restarts_the_job_without_duplicates(loader, connection, sf, unique, account_ids, tmp_path):
    # insert is the operation where a repeated upload would duplicate records.
    path = customer_accounts(tmp_path / "ca.csv", unique, 30, account_ids[0])
    connection.admin("POST", "faults", {"kind": "drop", "method": "PUT", "path": r"/batches$", "count": 1})
    outcome = loader.insert_csv(CA, path, external_id_column=EXT)
    assert (outcome.processed, outcome.failed) == (30, 0)
    assert count_live(sf, unique) == 30
    jobs = sf.restful("jobs/ingest")["records"]
    aborted = [j for j in jobs if j["state"] == "Aborted" and j["object"] == CA and j["operation"] == "insert"]
    assert aborted, "the job whose upload was in doubt is aborted"


def test_transient_faults_on_polls_and_close_are_retried(loader, connection, unique, account_ids, tmp_path):
    path = customer_accounts(tmp_path / "ca.csv", unique, 10, account_ids[0])
    connection.admin("POST", "faults", {"kind": "status", "status": 503, "method": "GET",
                                        "path": r"/jobs/ingest/[^/]+$", "count": 2})
    connection.admin("POST", "faults", {"kind": "drop", "method": "PATCH", "path": r"/jobs/ingest/[^/]+$", "count": 1})
    outcome = loader.upsert_csv(CA, EXT, path)
    assert (outcome.processed, outcome.failed) == (10, 0)
    assert connection.admin("GET", "faults")["request_faults"] == []  # every fault was met


def test_persistent_503_gives_up(connection, unique, account_ids, tmp_path):
    loader = SalesforceBulkLoader(max_retries=1)
    path = customer_accounts(tmp_path / "ca.csv", unique, 1, account_ids[0])
    connection.admin("POST", "faults", {"kind": "status", "status": 503, "method": "GET",
                                        "path": r"/jobs/ingest/[^/]+$", "count": None})
    from simple_salesforce.exceptions import SalesforceGeneralError

    with pytest.raises(SalesforceGeneralError):
        loader.upsert_csv(CA, EXT, path)


def test_request_limit_exceeded_stops_cleanly(loader, connection, unique, account_ids, tmp_path):
    path = customer_accounts(tmp_path / "ca.csv", unique, 3, account_ids[0])
    connection.admin("POST", "limits", {"daily_api_requests": 1000, "used": 1000})
    with pytest.raises(ApiBudgetExhausted, match="REQUEST_LIMIT_EXCEEDED"):
        loader.upsert_csv(CA, EXT, path)
    with pytest.raises(ApiBudgetExhausted):
        loader.check_budget()


def test_reserve_checked_with_limits_and_with_limit_info(connection, unique, account_ids, tmp_path):
    path = customer_accounts(tmp_path / "ca.csv", unique, 3, account_ids[0])
    connection.admin("POST", "limits", {"daily_api_requests": 10_000, "used": 9_950})

    loader = SalesforceBulkLoader(api_reserve=100)
    with pytest.raises(ApiBudgetExhausted) as exhausted:
        loader.check_budget()
    assert exhausted.value.maximum == 10_000 and exhausted.value.remaining < 100
    assert loader.api_requests == 1

    # Sforce-Limit-Info on any response is enough: no /limits request, no job created.
    loader = SalesforceBulkLoader(api_reserve=100)
    loader.describe(CA)
    with pytest.raises(ApiBudgetExhausted):
        loader.upsert_csv(CA, EXT, path)
    assert loader.api_requests == 1

    # With room to spare the same loader writes.
    connection.admin("POST", "limits", {"daily_api_requests": 10_000, "used": 0})
    loader = SalesforceBulkLoader(api_reserve=100)
    remaining, maximum = loader.check_budget()
    assert maximum == 10_000 and remaining >= 9_990
    assert loader.upsert_csv(CA, EXT, path).processed == 3


# -- delete ------------------------------------------------------------------------------------


def test_delete_and_hard_delete(loader, sf, unique, account_ids, tmp_path):
    path = customer_accounts(tmp_path / "ca.csv", unique, 20, account_ids[0])
    loader.upsert_csv(CA, EXT, path)
    ids = loader.ids_for_external_ids(CA, EXT, [f"{unique}-{i:05d}" for i in range(20)])
    soft, hard = [ids[f"{unique}-{i:05d}"] for i in range(10)], [ids[f"{unique}-{i:05d}"] for i in range(10, 20)]

    deleted = loader.delete_ids(CA, soft + soft[:2])  # a repeated id is sent once
    assert (deleted.operation, deleted.processed, deleted.failed) == ("delete", 10, 0)
    bin_rows = sf.query_all(f"SELECT Id, IsDeleted FROM {CA} WHERE {EXT} LIKE '{unique}-%'",
                            include_deleted=True)["records"]
    assert {r["Id"] for r in bin_rows if r["IsDeleted"]} == set(soft)
    assert count_live(sf, unique) == 10

    again = loader.delete_ids(CA, soft)  # ENTITY_IS_DELETED: already gone, not rejected
    assert (again.processed, again.failed, again.rejected) == (10, 0, [])

    purged = loader.delete_ids(CA, iter(hard), hard=True)
    assert (purged.operation, purged.failed) == ("hardDelete", 0)
    bin_rows = sf.query_all(f"SELECT Id FROM {CA} WHERE {EXT} LIKE '{unique}-%'", include_deleted=True)["records"]
    assert {r["Id"] for r in bin_rows} == set(soft)  # the hard-deleted ones skipped the recycle bin

    purged_again = loader.delete_ids(CA, hard[:3], hard=True)
    assert (purged_again.failed, purged_again.rejected) == (0, [])

    # An Id of another object is a real rejection.
    wrong = loader.delete_ids(CA, [account_ids[0]])
    [row] = wrong.rejected
    assert row.sf_id == account_ids[0] and row.external_id is None and row.row == {"Id": account_ids[0]}
    assert sf.query(f"SELECT COUNT() FROM Account WHERE Id = '{account_ids[0]}'")["totalSize"] == 1

    assert loader.delete_ids(CA, []) == JobOutcome("", "delete", CA, 0, 0, [])


# -- queries -----------------------------------------------------------------------------------


def test_query_to_csv_pages_into_one_file(loader, unique, account_ids, tmp_path):
    loader.upsert_csv(CA, EXT, customer_accounts(tmp_path / "ca.csv", unique, 1200, account_ids[0]))
    out = tmp_path / "out.csv"
    soql = f"SELECT Id, {EXT}, Name FROM {CA} WHERE {EXT} LIKE '{unique}-%'"
    before = loader.api_requests
    rows = loader.query_to_csv(soql, out, page_size=500)
    assert rows == 1200
    assert loader.api_requests - before <= 8  # create, a few polls, three pages
    with open(out, newline="", encoding="utf-8") as handle:
        records = list(csv.reader(handle))
    assert records[0] == ["Id", EXT, "Name"]
    assert len(records) == 1201 and ["Id", EXT, "Name"] not in records[1:]
    assert sorted(r[1] for r in records[1:]) == [f"{unique}-{i:05d}" for i in range(1200)]

    ids = [r[0] for r in records[1:201]]
    loader.delete_ids(CA, ids)
    soql = f"SELECT Id, IsDeleted FROM {CA} WHERE {EXT} LIKE '{unique}-%'"
    assert loader.query_to_csv(soql, out) == 1000
    assert loader.query_to_csv(soql, out, include_deleted=True) == 1200
    with open(out, newline="", encoding="utf-8") as handle:
        deleted = {r["Id"] for r in csv.DictReader(handle) if r["IsDeleted"] == "true"}
    assert deleted == set(ids)


def test_ids_for_5000_external_ids(loader, sf, unique, account_ids, tmp_path):
    loader.upsert_csv(CA, EXT, customer_accounts(tmp_path / "ca.csv", unique, 5000, account_ids[0]))
    wanted = [f"{unique}-{i:05d}" for i in range(5000)]
    before = loader.api_requests
    found = loader.ids_for_external_ids(CA, EXT, wanted + [f"{unique}-nope-{i}" for i in range(3)])
    assert set(found) == set(wanted)
    assert loader.api_requests - before <= 12  # two query jobs
    sample = sf.query(f"SELECT Id, {EXT} FROM {CA} WHERE {EXT} IN ('{wanted[7]}', '{wanted[4321]}')")["records"]
    assert {r[EXT]: r["Id"] for r in sample} == {wanted[7]: found[wanted[7]], wanted[4321]: found[wanted[4321]]}
    # Keys are the values given, even where Salesforce matched them case-insensitively.
    assert loader.ids_for_external_ids(CA, EXT, [wanted[0].upper()]) == {wanted[0].upper(): found[wanted[0]]}
    assert loader.ids_for_external_ids(CA, EXT, []) == {}


def test_describe(loader):
    described = loader.describe(CA)
    fields = {f["name"]: f for f in described["fields"]}
    assert fields[EXT]["externalId"] is True
    assert described["name"] == CA
    assert loader.api_requests == 1


def test_parse_sf_error():
    assert parse_sf_error("INVALID_FIELD:Foreign key external ID: x not found for field F in entity O:F --") == (
        "INVALID_FIELD", "Foreign key external ID: x not found for field F in entity O")
    assert parse_sf_error("DUPLICATE_VALUE:Duplicate external id specified: x") == (
        "DUPLICATE_VALUE", "Duplicate external id specified: x")
    assert parse_sf_error("") == ("UNKNOWN_ERROR", "")


def test_upload_that_keeps_failing_gives_up_without_writing(connection, sf, unique, account_ids, tmp_path):
    import requests

    loader = SalesforceBulkLoader(max_retries=1)
    path = customer_accounts(tmp_path / "ca.csv", unique, 5, account_ids[0])
    connection.admin("POST", "faults", {"kind": "drop", "method": "PUT", "path": r"/batches$", "count": None})
    with pytest.raises(requests.ConnectionError):
        loader.insert_csv(CA, path)
    assert count_live(sf, unique) == 0


def test_object_storage_paths(loader, unique, account_ids, tmp_path):
    """Files handed between tasks live on ``ObjectStoragePath`` (SPEC §12); local here."""
    from airflow.sdk import ObjectStoragePath

    source = ObjectStoragePath(f"file://{customer_accounts(tmp_path / 'ca.csv', unique, 7, account_ids[0])}")
    assert loader.upsert_csv(CA, EXT, source).processed == 7
    target = ObjectStoragePath(f"file://{tmp_path / 'out.csv'}")
    assert loader.query_to_csv(f"SELECT {EXT} FROM {CA} WHERE {EXT} LIKE '{unique}-%'", target) == 7
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as handle:
        assert sorted(r[EXT] for r in csv.DictReader(handle)) == [f"{unique}-{i:05d}" for i in range(7)]
