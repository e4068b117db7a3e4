"""SPEC §11's fault matrix, end to end: the real sync DAGs against both sandboxes, one fault at a time.

A module-scoped stack (a small tenant of its own) is fully synced once. Then each test changes a
few records in Zuora through its REST API (renames; for some faults a new subscription version or
a deletion), so that the session has real work, injects one fault through a sandbox's admin API,
runs ``zuora_incremental_sync`` with ``dag.test()`` and checks what the state store recorded:
the session's status (SPEC §4: Failure, Stopped, Finished with Errors), its rejected records, and
that no watermark moved past a change that did not reach Salesforce. Then the fault is cleared and
the next session must finish — Finished with Errors only for the tenant's deliberately invalid CRM
Ids — with Salesforce equal to Zuora record by record (:func:`compare_scope`) and no external id
held by two records.

Faults the clients are designed to retry through (Zuora 429/5xx/401, Salesforce
``INVALID_SESSION_ID``, dropped connections) must let the very session they hit finish: that
session is the one that must complete with Salesforce equal to Zuora, and it leaves the lock free
and every watermark moved on. Task retries are off (``run_dag``), so every other fault shows its
first failure, and the session after it must repair it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable
from zoneinfo import ZoneInfo

import pytest

from zuora_sync.planning import run_dir_name

from sync_harness import (
    compare_scope,
    duplicate_external_ids,
    run_dag,
    running_stack,
    spawn_dag_run,
    tenant_rows,
    zuora_call,
)

ACCOUNTS = 25
SEED = 33
TZ = ZoneInfo("America/Los_Angeles")
SCOPE = "accounts"
#: How Salesforce rejects the records of the tenant's accounts with a deliberately invalid CRM Id
#: (the account itself: a bad Account Id; its children: their parent customer account is missing).
CRM_ID_CODES = {"INVALID_CROSS_REFERENCE_KEY", "MALFORMED_ID", "INVALID_FIELD"}
CA, SUB = "Zuora__CustomerAccount__c", "Zuora__Subscription__c"


# -- the stack ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Both sandboxes with a 25-account tenant, fully synced once; ``baseline``: the open rejects then."""
    with running_stack(tmp_path_factory.mktemp("faults"), accounts=ACCOUNTS, seed=SEED) as value:
        assert run_dag("zuora_full_sync") == "success"
        session = last_session()
        assert (session["session_type"], session["status"]) == ("Full", "Finished with Errors")
        assert staged_runs(value, "zuora_full_sync") == []  # the session ended: its staged files went with it
        value["baseline"] = open_rejected()
        rejected = session_rejects(session["id"])
        assert rejected and {r["error_code"] for r in rejected} <= CRM_ID_CODES
        check(value)
        yield value


@pytest.fixture(autouse=True)
def no_faults_left(stack):
    """Whatever a test injected is gone afterwards, even when it failed half-way."""
    yield
    stack["salesforce"].admin("DELETE", "faults")
    stack["salesforce"].admin("POST", "limits", {"daily_api_requests": 100_000, "used": 0})
    stack["zuora"].admin("DELETE", "faults")
    stack["zuora"].admin("DELETE", "dataquery")


# -- the state store and the two sides ------------------------------------------------------------


def store():
    from zuora_sync.state import StateStore

    return StateStore.from_airflow()


def last_session() -> dict:
    s = store()
    return s.get_session(s.list_sessions(limit=1)[0]["id"])


def open_rejected() -> dict[str, set[str]]:
    from zuora_sync.mapping import load_mapping

    s = store()
    return {o.name: set(s.open_rejected_ids(SCOPE, o.name)) for o in load_mapping().scope_objects(SCOPE)}


def session_rejects(session_id: int) -> list[dict]:
    return list(store().rejected_for_session(session_id))


def check(stack) -> None:
    """Salesforce equals Zuora record by record (or the record is recorded as rejected); no duplicates."""
    sandbox = stack["salesforce"]
    with ThreadPoolExecutor(1) as pool:  # the two reads of Salesforce at once: they take seconds each
        duplicates = pool.submit(duplicate_external_ids, sandbox.login(), SCOPE)
        problems = compare_scope(stack["zuora"].data_dir, sandbox.login(), SCOPE, open_rejected(), TZ, stack["base"])
        problems += duplicates.result()
    assert not problems, "\n".join(problems[:40]) + (f"\n... {len(problems)} problems" if len(problems) > 40 else "")


def sf_count(stack, soql: str) -> int:
    return stack["salesforce"].login().query(soql)["totalSize"]


def tenant(stack, sql: str) -> list[dict]:
    return tenant_rows(stack["zuora"].data_dir, sql)


def ingest_jobs(sf) -> list[dict]:
    return sf.restful("jobs/ingest")["records"]


# -- changes in Zuora ----------------------------------------------------------------------------------

_turn = itertools.count()


def synced_accounts(stack) -> list[dict]:
    """Live accounts with a valid CRM Id and an Active (latest) subscription, one row each."""
    from sandbox.crm_accounts import crm_account_id

    valid = {crm_account_id(SEED, i) for i in range(ACCOUNTS)}
    rows = tenant(stack, "SELECT a.id, a.crmid, s.id AS sub, s.autorenew FROM account a JOIN subscription s "
                         "ON s.accountid = a.id WHERE a.status = 'Active' AND s.status = 'Active' AND NOT a.deleted "
                         "AND NOT s.deleted ORDER BY a.accountnumber, s.name")
    by_account: dict[str, dict] = {}
    for row in rows:
        if row["crmid"] in valid:
            by_account.setdefault(row["id"], row)
    return list(by_account.values())


def change_zuora(stack, tag: str, *, version: bool = False, delete: bool = False) -> dict[str, Any]:
    """Rename two synced accounts; optionally amend one's subscription (a new version) and delete a
    payment application (InvoicePayment) of a synced account. Returns what changed."""
    candidates = synced_accounts(stack)
    turn = next(_turn)
    first, second = candidates[(2 * turn) % len(candidates)], candidates[(2 * turn + 1) % len(candidates)]
    names = {first["id"]: f"{tag} one", second["id"]: f"{tag} two"}
    answer = zuora_call(stack["zuora"], "POST", "/v1/action/update", {
        "type": "Account", "objects": [{"Id": key, "Name": name} for key, name in names.items()]})
    assert all(r["Success"] for r in answer), answer
    changed: dict[str, Any] = {"names": names, "accounts": [first["id"], second["id"]]}
    if version:
        answer = zuora_call(stack["zuora"], "POST", "/v1/action/update", {
            "type": "Subscription", "objects": [{"Id": first["sub"], "AutoRenew": not first["autorenew"]}]})
        assert answer[0]["Success"], answer
        changed["old_subscription"], changed["new_subscription"] = first["sub"], answer[0]["Id"]
        assert changed["new_subscription"] != first["sub"]
    if delete:
        valid = ", ".join(f"'{c['id']}'" for c in candidates)
        doomed = tenant(stack, f"SELECT ip.id FROM invoicepayment ip JOIN invoice i ON i.id = ip.invoiceid "
                               f"WHERE i.accountid IN ({valid}) AND i.status = 'Posted' AND NOT ip.deleted "
                               f"ORDER BY ip.id")
        assert doomed, "no payment application left to delete"
        target = doomed[turn % len(doomed)]["id"]
        assert sf_count(stack, f"SELECT COUNT() FROM Zuora__PaymentInvoice__c WHERE Zuora__External_Id__c = "
                               f"'{target}'") == 1
        answer = zuora_call(stack["zuora"], "POST", "/v1/action/delete", {"type": "InvoicePayment", "ids": [target]})
        assert answer[0]["success"], answer
        changed["deleted_invoice_payment"] = target
    return changed


def assert_in_salesforce(stack, changed: dict[str, Any], *, skip: set[str] = frozenset()) -> None:
    """The changes (those not in ``skip``: rejected ones) are in Salesforce, once."""
    for key, name in changed["names"].items():
        if key not in skip:
            assert sf_count(stack, f"SELECT COUNT() FROM {CA} WHERE Zuora__External_Id__c = '{key}' "
                                   f"AND Name = '{name}'") == 1, name
    if "new_subscription" in changed:
        if changed["new_subscription"] not in skip:
            assert sf_count(stack, f"SELECT COUNT() FROM {SUB} WHERE Zuora__External_Id__c = "
                                   f"'{changed['new_subscription']}'") == 1
        assert sf_count(stack, f"SELECT COUNT() FROM {SUB} WHERE Zuora__External_Id__c = "
                               f"'{changed['old_subscription']}'") == 0
    if "deleted_invoice_payment" in changed:
        assert sf_count(stack, f"SELECT COUNT() FROM Zuora__PaymentInvoice__c WHERE Zuora__External_Id__c = "
                               f"'{changed['deleted_invoice_payment']}'") == 0


def assert_renames_not_in_salesforce(stack, changed: dict[str, Any]) -> None:
    """None of the renames reached Salesforce."""
    for name in changed["names"].values():
        assert sf_count(stack, f"SELECT COUNT() FROM {CA} WHERE Name = '{name}'") == 0, name


# -- sessions -------------------------------------------------------------------------------------------


def assert_only_crm_id_rejects(stack, session: dict) -> None:
    """The session finished; whatever it rejected is one of the tenant's invalid-CRM-Id records."""
    assert session["status"] in ("Finished", "Finished with Errors"), session
    baseline = stack["baseline"]
    for reject in session_rejects(session["id"]):
        assert reject["external_id"] in baseline[reject["object"]], reject
        assert reject["error_code"] in CRM_ID_CODES, reject
    assert open_rejected() == baseline


def staged_runs(stack, dag_id: str = "zuora_incremental_sync") -> list[str]:
    """The run directories left under a DAG's staging directory."""
    directory = stack["base"] / "staging" / dag_id
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def next_session_recovers(stack, changed: dict[str, Any]) -> dict:
    """The fault is gone: the next session finishes and Salesforce equals Zuora, nothing lost or doubled;
    its staged files are gone, and so are those a failed session before it kept."""
    assert run_dag("zuora_incremental_sync") == "success"
    session = last_session()
    assert session["session_type"] == "Incremental"
    assert staged_runs(stack) == []
    assert_only_crm_id_rejects(stack, session)
    assert_in_salesforce(stack, changed)
    check(stack)
    return session


def moved_past(before: dict[str, dt.datetime], after: dict[str, dt.datetime]) -> list[str]:
    return [obj for obj, mark in after.items() if mark != before.get(obj)]


class JobWatcher(threading.Thread):
    """Watches the Salesforce sandbox's Bulk API 2.0 ingest jobs while a session runs.

    ``act(job)`` runs once, for the first job created after the watcher started that ``match``
    accepts; ``done`` is set then. What ``act`` returns is kept in ``result``.
    """

    def __init__(self, stack, match: Callable[[dict], bool], act: Callable[[dict], Any]):
        super().__init__(daemon=True)
        self.sf = stack["salesforce"].login()
        self.known = {job["id"] for job in ingest_jobs(self.sf)}
        self.match, self.act = match, act
        self.done = threading.Event()
        self.stop = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for job in ingest_jobs(self.sf):
                    if job["id"] not in self.known and self.match(job):
                        self.result = self.act(job)
                        self.done.set()
                        return
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    def finish(self) -> Any:
        self.stop.set()
        self.join(timeout=60)
        if self.error is not None:
            raise self.error
        assert self.done.is_set(), "the watched Bulk job never appeared"
        return self.result


def job_state(sf, job_id: str) -> str:
    return sf.restful(f"jobs/ingest/{job_id}")["state"]


def wait_for_state(sf, job_id: str, states: tuple[str, ...], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = job_state(sf, job_id)
        if state in states:
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {states}")


# -- 1. faults the clients retry through: the same session finishes ---------------------------------------

RETRIED = {
    "zuora-429-retry-after": ("zuora", [
        {"kind": "rate_limit", "path": "^/query/jobs$", "count": 2, "retry_after": 1},
        {"kind": "concurrency_limit", "path": "^/query/jobs/", "count": 1, "retry_after": 1},
    ]),
    "zuora-5xx": ("zuora", [
        {"kind": "status", "status": 503, "path": "^/query/jobs$", "count": 2},
        {"kind": "status", "status": 500, "path": "^/query/jobs/", "count": 1},
        {"kind": "status", "status": 502, "path": "^/files/dataquery/", "count": 1},
    ]),
    "zuora-token-expiry": ("zuora", [
        {"kind": "token_expiry", "path": "^/query/jobs$", "count": 1},
        {"kind": "token_expiry", "path": "^/query/jobs/", "count": 1},
    ]),
    "salesforce-invalid-session": ("salesforce", [
        {"kind": "invalid_session", "count": 1, "method": "POST", "path": r"/jobs/ingest$"},
        {"kind": "invalid_session", "count": 1, "method": "PUT", "path": r"/jobs/ingest/[^/]+/batches$"},
        {"kind": "invalid_session", "count": 1, "method": "GET", "path": r"/jobs/ingest/[^/]+$"},
        {"kind": "invalid_session", "count": 1, "method": "POST", "path": r"/jobs/query$"},
    ]),
    "salesforce-dropped-connection": ("salesforce", [
        {"kind": "drop", "count": 2, "method": "PUT", "path": r"/jobs/ingest/[^/]+/batches$"},
        {"kind": "drop", "count": 1, "method": "GET", "path": r"/jobs/ingest/[^/]+$"},
        {"kind": "drop", "count": 1, "method": "PATCH", "path": r"/jobs/ingest/[^/]+$"},
    ]),
}


def remaining_faults(stack, side: str) -> list:
    described = stack[side].admin("GET", "faults")
    return described["request_faults"] if side == "salesforce" else described


@pytest.mark.parametrize("fault", list(RETRIED))
def test_a_fault_the_clients_retry_through_lets_the_same_session_finish(stack, fault):
    side, specs = RETRIED[fault]
    changed = change_zuora(stack, f"Retried {fault}", version=True, delete=True)
    before = store().watermarks(SCOPE)
    jobs_before = {j["id"] for j in ingest_jobs(stack["salesforce"].login())}
    stack[side].admin("POST", "faults", specs)

    assert run_dag("zuora_incremental_sync") == "success"
    session = last_session()
    assert remaining_faults(stack, side) == [], "the session did not meet every injected fault"
    assert_only_crm_id_rejects(stack, session)
    assert set(moved_past(before, store().watermarks(SCOPE))) == set(before)
    assert_in_salesforce(stack, changed)
    check(stack)
    assert store().lock_holders() == {}
    if fault == "salesforce-dropped-connection":
        # The jobs whose upload was in doubt were aborted and their rows sent in new jobs.
        new_jobs = [j for j in ingest_jobs(stack["salesforce"].login()) if j["id"] not in jobs_before]
        assert sum(j["state"] == "Aborted" for j in new_jobs) == 2, new_jobs


# -- 2. faults that end the session: Failure or Stopped, no watermark moves, the next session resumes ----------


def fail_next_data_query(stack) -> Callable[[dict], None]:
    """Zuora fails the session's first Data Query job (``queryStatus`` failed, with its message)."""
    message = "Query exceeded the maximum time allowed"
    stack["zuora"].admin("POST", "dataquery", {"fail_next": message})

    def verify(changed):
        assert stack["zuora"].admin("GET", "dataquery")["fail_next"] is None  # the session met it
        failed = zuora_call(stack["zuora"], "GET", "/query/jobs?queryStatus=failed", None)["data"]
        assert any(message in (job.get("errorMessage") or "") for job in failed), failed
    return verify


def truncate_next_result_file(stack) -> Callable[[dict], None]:
    """The session's first Data Query result file arrives cut short (a broken download)."""
    stack["zuora"].admin("POST", "dataquery", {"truncate_next": True})

    def verify(changed):
        assert stack["zuora"].admin("GET", "dataquery")["truncate_next"] is False  # the session met it
    return verify


def hold_bulk_jobs(stack, seconds: float) -> None:
    """Every Bulk job that starts from now on waits ``seconds`` ``InProgress`` (0: no more waiting)."""
    stack["salesforce"].admin("POST", "faults", {"kind": "bulk_delay", "seconds": seconds})


def _watch(stack, sobject: str, states: tuple[str, ...], act: Callable[[Any, dict], Any],
           delay: float = 1.0) -> Callable[[], Any]:
    """Hold Bulk jobs ``InProgress`` for ``delay`` s and run ``act`` on the first new ``sobject`` job;
    later jobs run without the wait."""
    hold_bulk_jobs(stack, delay)

    def acted(job: dict) -> Any:
        try:
            return act(watcher.sf, job)
        finally:
            hold_bulk_jobs(stack, 0)

    watcher = JobWatcher(stack, lambda job: job["object"] == sobject and job["state"] in states, acted)
    watcher.start()
    return watcher.finish


def fail_a_bulk_job(stack) -> Callable[[dict], None]:
    """Salesforce fails the subscriptions' upsert job as a whole.

    While the job waits ``InProgress``, the customer account's external id stops being an
    external id (an admin's schema change in the middle of a session): the job's relationship
    column ``Zuora__CustomerAccount__r.Zuora__External_Id__c`` is then invalid, and Salesforce
    fails the whole job (``InvalidBatch``), before any row. The schema is restored once it has.
    """
    from sandbox.salesforce.schema import builtin_schema_document

    original = builtin_schema_document()["objects"][CA]["fields"]["Zuora__External_Id__c"]
    crippled = {**original, "externalId": False, "idLookup": False, "unique": False}

    def act(sf, job):
        stack["salesforce"].admin("POST", "schema", {"objects": {CA: {"fields": {"Zuora__External_Id__c": crippled}}}})
        try:
            state = wait_for_state(sf, job["id"], ("JobComplete", "Failed", "Aborted"))
            return state, sf.restful(f"jobs/ingest/{job['id']}").get("errorMessage")
        finally:
            stack["salesforce"].admin("POST", "schema", {"objects": {CA: {"fields": {"Zuora__External_Id__c": original}}}})

    finish = _watch(stack, SUB, ("UploadComplete", "InProgress"), act)

    def verify(changed):
        state, message = finish()
        assert state == "Failed" and "InvalidBatch" in message, (state, message)
        assert sf_count(stack, f"SELECT COUNT() FROM {SUB} WHERE Zuora__External_Id__c = "
                               f"'{changed['new_subscription']}'") == 0  # no row of the failed job was applied
    return verify


def abort_a_bulk_job(stack) -> Callable[[dict], None]:
    """Someone aborts the customer accounts' upsert job in Salesforce while it is ``InProgress``."""
    def act(sf, job):
        sf.restful(f"jobs/ingest/{job['id']}", method="PATCH", data=json.dumps({"state": "Aborted"}))
        return wait_for_state(sf, job["id"], ("JobComplete", "Failed", "Aborted"))

    finish = _watch(stack, CA, ("UploadComplete", "InProgress"), act)

    def verify(changed):
        assert finish() == "Aborted"
        assert_renames_not_in_salesforce(stack, changed)  # no row of the aborted job was applied
    return verify


def exhaust_the_api_allowance(stack, monkeypatch) -> Callable[[dict], None]:
    """The org's daily API allowance runs out mid-session: Salesforce answers REQUEST_LIMIT_EXCEEDED.

    The reserve is off for this session, so the loader meets Salesforce's own 403 rather than
    stopping early on its reserve (that path is in test_sync_end_to_end.py).
    """
    settings = json.loads(os.environ["AIRFLOW_VAR_ZUORA_SYNC_SETTINGS"])
    monkeypatch.setenv("AIRFLOW_VAR_ZUORA_SYNC_SETTINGS", json.dumps({**settings, "salesforce_api_reserve": 0}))

    def act(sf, job):
        return stack["salesforce"].admin("POST", "limits", {"daily_api_requests": 100_000, "used": 100_000})

    finish = _watch(stack, CA, ("UploadComplete", "InProgress"), act)

    def verify(changed):
        assert finish()["remaining"] == 0
    return verify


ENDING = {
    # fault: (inject, the session's status, words its record must hold)
    "zuora-failed-data-query-job": (fail_next_data_query, "Failure", "did not finish"),
    "zuora-truncated-result-file": (truncate_next_result_file, "Failure", "did not finish"),
    "salesforce-failed-bulk-job": (fail_a_bulk_job, "Failure", "did not finish"),
    "salesforce-aborted-bulk-job": (abort_a_bulk_job, "Failure", "did not finish"),
    "salesforce-request-limit-exceeded": (exhaust_the_api_allowance, "Stopped", "REQUEST_LIMIT_EXCEEDED"),
}


@pytest.mark.parametrize("fault", list(ENDING))
def test_a_fault_that_ends_the_session_loses_nothing(stack, fault, monkeypatch):
    inject, status, words = ENDING[fault]
    changed = change_zuora(stack, f"Ended {fault}", version=True, delete=True)
    before = store().watermarks(SCOPE)
    verify = inject(stack, monkeypatch) if fault == "salesforce-request-limit-exceeded" else inject(stack)

    state = run_dag("zuora_incremental_sync")
    verify(changed)
    session = last_session()
    assert session["session_type"] == "Incremental"
    assert (state, session["status"]) == ("success" if status == "Stopped" else "failed", status)
    assert words in (session["error"] or ""), session["error"]
    # A Failure keeps its staged files (a cleared task can run again); a Stopped session removes them.
    own = run_dir_name(session["run_id"])
    if status == "Failure":
        assert own in staged_runs(stack)
        assert list((stack["base"] / "staging" / "zuora_incremental_sync" / own).rglob("selection.json"))
    else:
        assert staged_runs(stack) == []
    # Only an object whose rows were all unchanged (nothing to send or remove) may move its watermark.
    settled = {name for name, c in session["objects"].items()
               if not any(c.get(k) for k in ("created", "updated", "removed", "failed", "upserted", "deleted"))}
    assert set(moved_past(before, store().watermarks(SCOPE))) <= settled, \
        "a watermark moved past changes not in Salesforce"

    stack["salesforce"].admin("DELETE", "faults")
    stack["salesforce"].admin("POST", "limits", {"daily_api_requests": 100_000, "used": 0})
    monkeypatch.undo()
    assert not stack["zuora"].admin("GET", "faults")
    next_session_recovers(stack, changed)


def test_staged_files_are_kept_when_the_settings_say_so(stack, monkeypatch):
    """``keep_staged_files``: the session's staged files stay after it ends; without it, the next
    session that ends removes them with its own."""
    settings = json.loads(os.environ["AIRFLOW_VAR_ZUORA_SYNC_SETTINGS"])
    monkeypatch.setenv("AIRFLOW_VAR_ZUORA_SYNC_SETTINGS", json.dumps({**settings, "keep_staged_files": True}))
    changed = change_zuora(stack, "Kept staged")
    assert run_dag("zuora_incremental_sync") == "success"
    kept = staged_runs(stack)
    assert kept == [run_dir_name(last_session()["run_id"])]
    manifests = list((stack["base"] / "staging" / "zuora_incremental_sync" / kept[0]).rglob("manifest.json"))
    assert {p.parent.name for p in manifests} >= {"CustomerAccount"}
    monkeypatch.undo()
    next_session_recovers(stack, changed)


# -- 3. per-record rejections: kept with Salesforce's code and message, synced once possible ----------


def lock_rows(stack, changed: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """One renamed customer account is locked by another transaction: UNABLE_TO_LOCK_ROW, once."""
    key, name = next(iter(changed["names"].items()))
    stack["salesforce"].admin("POST", "faults", {"kind": "lock_row", "object": CA, "field": "Name", "value": name})
    return {key: ("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record")}


def validation_rules(stack, changed: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Validation rules reject one renamed customer account and the new subscription version."""
    key, name = next(iter(changed["names"].items()))
    stack["salesforce"].admin("POST", "faults", [
        {"kind": "record_error", "object": CA, "field": "Name", "value": name,
         "error_code": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Account names may not say so"},
        {"kind": "record_error", "object": SUB, "field": "Zuora__External_Id__c", "value": changed["new_subscription"],
         "error_code": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "Amendments need an approval"},
    ])
    return {key: ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Account names may not say so"),
            changed["new_subscription"]: ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Amendments need an approval")}


PER_RECORD = {"salesforce-unable-to-lock-row": lock_rows, "salesforce-validation-errors": validation_rules}


@pytest.mark.parametrize("fault", list(PER_RECORD))
def test_records_salesforce_rejects_are_kept_and_synced_next_time(stack, fault):
    changed = change_zuora(stack, f"Rejected {fault}", version=True, delete=True)
    before = store().watermarks(SCOPE)
    expected = PER_RECORD[fault](stack, changed)

    assert run_dag("zuora_incremental_sync") == "success"
    session = last_session()
    assert session["status"] == "Finished with Errors"
    baseline = stack["baseline"]
    new = [r for r in session_rejects(session["id"]) if r["external_id"] not in baseline[r["object"]]]
    by_key = {r["external_id"]: r for r in new}
    for key, (code, message) in expected.items():
        assert key in by_key, f"{key} was not recorded as rejected"
        assert by_key[key]["error_code"] == code and message in by_key[key]["message"], by_key[key]
    # A rejected subscription's rate plans and charges cannot find their parent: rejected, recorded, too.
    plans = f"SELECT id FROM rateplan WHERE subscriptionid = '{changed['new_subscription']}'"
    children = {row["id"] for row in tenant(stack, f"{plans} UNION SELECT id FROM rateplancharge WHERE rateplanid IN ({plans})")}
    for key, reject in by_key.items():
        if key not in expected:
            assert key in children and reject["error_code"] == "INVALID_FIELD", reject
    if changed["new_subscription"] in expected:
        assert children and children <= set(by_key)
    # The rejected records wait in the state store for the next session; the watermarks moved on.
    assert set(moved_past(before, store().watermarks(SCOPE))) == set(before)
    assert_in_salesforce(stack, changed, skip=set(by_key))
    check(stack)  # everything else is in Salesforce exactly

    stack["salesforce"].admin("DELETE", "faults")  # the rule is lifted (a lock_row fault is spent already)
    next_session_recovers(stack, changed)  # retried although unchanged in Zuora since
    assert not set(by_key) & set().union(*open_rejected().values())


# -- 4. a worker killed mid-upload --------------------------------------------------------------------------


def test_a_worker_killed_mid_upload(stack, tmp_path):
    """SIGKILL the process running the session while a Bulk job it uploaded is in progress.

    Nothing runs the session's end task, so its lock stays held until the lease expires
    (``lock_lease_seconds``, six hours here, so the test moves the expiry into the past rather
    than wait). The next session takes the lock over, re-sends what the killed one may or may not
    have written, and Salesforce ends up equal to Zuora without a duplicate.
    """
    from sqlalchemy import create_engine, update

    from zuora_sync.state.models import ScopeLock

    changed = change_zuora(stack, "Killed", version=True, delete=True)
    s = store()
    before = s.watermarks(SCOPE)
    sessions_before = s.list_sessions(limit=1)[0]["id"]
    hold_bulk_jobs(stack, 1.5)
    log_path = tmp_path / "killed-run.log"
    child = spawn_dag_run("zuora_incremental_sync", log_path)
    try:
        watcher = JobWatcher(stack, lambda job: job["object"] == SUB and job["state"] in ("UploadComplete", "InProgress"),
                             lambda job: (os.kill(child.pid, signal.SIGKILL), hold_bulk_jobs(stack, 0), job)[2])
        watcher.start()  # kills the worker as soon as the subscriptions' job is in Salesforce
        while not watcher.done.wait(0.1) and child.poll() is None and watcher.is_alive():
            pass
        killed_job = watcher.finish()
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
    assert "RESULT" not in log_path.read_text()
    stack["salesforce"].admin("DELETE", "faults")

    killed = last_session()
    assert killed["id"] > sessions_before and killed["status"] == "Running" and killed["ended_at"] is None
    holder = f"{killed['dag_id']}/{killed['run_id']}"
    assert s.lock_holders() == {SCOPE: holder}, "the killed session's lock is gone: nothing protected its data"
    assert s.watermarks(SCOPE) == before
    # The job the dead worker closed goes on in Salesforce without it.
    sf = stack["salesforce"].login()
    assert wait_for_state(sf, killed_job["id"], ("JobComplete", "Failed", "Aborted")) == "JobComplete"
    new_version = f"SELECT COUNT() FROM {SUB} WHERE Zuora__External_Id__c = '{changed['new_subscription']}'"
    assert sf_count(stack, new_version) == 1  # its rows landed; the next session sends them again

    # Six hours later: the lease has expired.
    locks = ScopeLock.__table__
    engine = create_engine(f"sqlite:///{stack['base'] / 'state.db'}")
    with engine.begin() as conn:
        conn.execute(update(locks).where(locks.c.holder == holder)
                     .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    engine.dispose()
    started = time.monotonic()
    session = next_session_recovers(stack, changed)
    assert time.monotonic() - started < 120
    assert session["id"] > killed["id"]
    assert s.lock_holders() == {}
    killed = s.get_session(killed["id"])
    assert killed["status"] == "Failure", "the killed session still looks like it is running"
    assert "interrupted" in killed["error"] and killed["ended_at"] is not None
