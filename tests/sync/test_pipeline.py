"""The pipelined load over real HTTP: an object read from the Zuora sandbox in a producer thread
(:class:`~zuora_sync.pipeline.ChunkStream` around the real ``extract_object``) and upserted into the
Salesforce sandbox chunk by chunk (``writing.upsert_object``), with small chunks so that one object
spans many Bulk jobs.

* every staged row of a multi-chunk object is in Salesforce or rejected with its reason;
* a producer that fails mid-extract (a truncated Data Query result file) fails the load, and the
  state store holds nothing of that object for the session (no half-recorded rejections or counts);
* the queue between producer and load never holds more than its depth of closed chunks: a producer
  that runs ahead waits (memory stays flat whatever the object's size);
* staged files on object storage (an ``ObjectStoragePath`` that is not local disk) work the same;
* send only what changed, pipelined: the producer's row loop compares each row with its stored
  hash, and the load commits the pending hashes once the object's jobs are collected.

No timed assertions: the tests wait for states, not for durations.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from sync_harness import running_stack

ACCOUNTS = 30
SEED = 5
EXT = "Zuora__External_Id__c"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("pipeline"), accounts=ACCOUNTS, seed=SEED) as value:
        yield value


@pytest.fixture(scope="module")
def preflight(stack):
    """Field types and lookups of the org, as the preflight task hands them to the loads."""
    from zuora_sync import clients
    from zuora_sync.mapping import load_mapping
    from zuora_sync.preflight import check_mapping

    mapping = load_mapping()
    result = check_mapping(mapping, mapping.scopes["accounts"], clients.salesforce(reserve=False).describe)
    assert not result.problems, result.problems
    return result.as_xcom()


def store_and_plan(stack, objects: list[str], *, dry_run: bool = False):
    from zuora_sync.planning import SessionPlan
    from zuora_sync.state import StateStore

    store = StateStore(f"sqlite:///{stack['base'] / 'state.db'}")
    started = dt.datetime.now(dt.timezone.utc)
    session = store.start_session(session_type="Full", scope="accounts", trigger="manual", dag_id="test_pipeline",
                                  run_id=f"run-{time.monotonic_ns()}", window_start=None, window_end=None,
                                  dry_run=dry_run)
    plan = SessionPlan(session_id=session, session_type="Full", scope="accounts", mode="full", objects=objects,
                       holder="test", staging=str(stack["base"] / "staging" / str(session)),
                       started=started.isoformat(), dry_run=dry_run)
    return store, plan


def load_object(stack, preflight, name: str, directory, *, chunk_rows=(3, 8), depth: int = 2, first_job=True,
                dry_run: bool = False, hashes=None):
    """What ``load_<name>`` does, with small chunks: returns (result, stream, store, plan).

    :param hashes: ``hashes(store)`` → the :class:`~zuora_sync.hashes.HashSource` the row loop compares with.
    """
    from zuora_sync import clients
    from zuora_sync.extract import Selection, extract_object, submit_selection
    from zuora_sync.lookups import Lookup
    from zuora_sync.mapping import load_mapping
    from zuora_sync.pipeline import ChunkStream
    from zuora_sync.staging import StagedObject
    from zuora_sync.writing import upsert_object

    obj = load_mapping().get(name)
    store, plan = store_and_plan(stack, [name], dry_run=dry_run)
    hook = clients.zuora()
    job = submit_selection(hook, obj, Selection("full")) if first_job else None
    staged = StagedObject(directory)

    def extract(on_file):
        return extract_object(hook, obj, Selection("full"), directory, field_types=preflight["types"][name],
                              tz=dt.timezone.utc, first_job=job, chunk_rows=chunk_rows, on_upsert_file=on_file,
                              hashes=hashes(store) if hashes else None)

    lookups = [Lookup.from_dict(v) for v in preflight["lookups"].get(name, [])]
    with ChunkStream(extract, depth=depth) as stream:
        result = upsert_object(plan, obj, stream, staged, clients.salesforce(), store, lookups)
    return result, stream, store, plan


def in_salesforce(stack, sobject: str) -> set[str]:
    sf = stack["salesforce"].login()
    return {r[EXT] for r in sf.query_all(f"SELECT {EXT} FROM {sobject}")["records"]}


def staged_keys(directory: Path, files: list[str]) -> list[str]:
    import csv

    keys = []
    for name in files:
        with open(directory / name, newline="", encoding="utf-8") as handle:
            keys += [row[EXT] for row in csv.DictReader(handle)]
    return keys


def test_an_object_spanning_many_chunks_writes_every_row(stack, preflight, tmp_path):
    directory = tmp_path / "CustomerAccount"
    result, stream, store, plan = load_object(stack, preflight, "CustomerAccount", directory)
    manifest = result.manifest
    assert len(manifest.upsert_files) >= 4, manifest.upsert_files   # 3, 6, 8, 8, ... rows
    keys = staged_keys(directory, manifest.upsert_files)
    assert len(keys) == len(set(keys)) == manifest.counts.upserts > 0
    rejected = {r["external_id"]: r["error_code"] for r in store.rejected_for_session(plan.session_id)}
    written = in_salesforce(stack, "Zuora__CustomerAccount__c")
    # Every staged row is either in Salesforce or kept as rejected with its reason; none both.
    assert set(keys) - set(rejected) <= written
    assert not (set(rejected) & written)
    assert rejected and set(rejected.values()) <= {"MALFORMED_ID", "INVALID_CROSS_REFERENCE_KEY"}
    assert result.upserted == len(set(keys) - set(rejected)) and result.rejected == len(rejected)
    session = store.get_session(plan.session_id)
    assert session["objects"]["CustomerAccount"]["extracted"] == manifest.counts.extracted
    assert session["objects"]["CustomerAccount"]["upserted"] == result.upserted
    assert stream.peak_depth <= stream.depth


def test_a_dry_run_reads_and_counts_every_row_and_writes_nothing(stack, preflight, tmp_path):
    before = in_salesforce(stack, "Zuora__Payment__c")
    api_before = stack["salesforce"].admin("GET", "limits")
    result, _stream, store, plan = load_object(stack, preflight, "Payment", tmp_path / "Payment", dry_run=True)
    assert stack["salesforce"].admin("GET", "limits") == api_before   # not one Salesforce request
    assert result.would_upsert == result.manifest.counts.upserts > 0
    assert len(result.manifest.upsert_files) >= 3   # staged in chunks, none uploaded
    assert in_salesforce(stack, "Zuora__Payment__c") == before
    assert store.get_session(plan.session_id)["objects"]["Payment"]["extracted"] == result.manifest.counts.extracted
    assert list(store.rejected_for_session(plan.session_id)) == []


def test_children_after_their_parent_in_many_chunks(stack, preflight, tmp_path):
    """A child object (relationship columns to its parents) chunk by chunk: the parents are in."""
    load_object(stack, preflight, "CustomerAccount", tmp_path / "CustomerAccount", chunk_rows=(50, 100))
    result, _stream, store, plan = load_object(stack, preflight, "Subscription", tmp_path / "Subscription",
                                               chunk_rows=(4, 16), first_job=False)
    keys = staged_keys(tmp_path / "Subscription", result.manifest.upsert_files)
    rejected = {r["external_id"] for r in store.rejected_for_session(plan.session_id)}
    assert len(result.manifest.upsert_files) >= 3
    assert set(keys) - rejected <= in_salesforce(stack, "Zuora__Subscription__c")
    assert result.upserted == len(set(keys) - rejected)


def test_a_producer_failure_mid_extract_fails_the_load_and_records_nothing(stack, preflight, tmp_path):
    from zuora_sync.hooks.zuora import DataQueryFailed

    stack["zuora"].admin("POST", "dataquery", {"truncate_next": True})   # the next result file is cut in half
    try:
        with pytest.raises(DataQueryFailed):
            load_object(stack, preflight, "Subscription", tmp_path / "Subscription", chunk_rows=(2, 4))
    finally:
        stack["zuora"].admin("POST", "dataquery", {"truncate_next": False})
    # Chunks closed before the cut were uploaded (upserts converge on the retry), but nothing of the
    # object is recorded for the session: no rejected rows, no counts; its manifest was never written.
    from zuora_sync.state import StateStore

    store = StateStore(f"sqlite:///{stack['base'] / 'state.db'}")
    session = store.list_sessions(limit=1)[0]
    assert session["objects"] == {} or "Subscription" not in session["objects"], session["objects"]
    assert list(store.rejected_for_session(session["id"])) == []
    assert list((tmp_path / "Subscription").glob("upsert-*.csv")), "the extract had staged chunks before the cut"
    assert not (tmp_path / "Subscription" / "manifest.json").exists()


def test_the_queue_holds_at_most_its_depth_of_closed_chunks(stack, preflight, tmp_path):
    """A producer far ahead of the load waits: while the load does not read, at most ``depth``
    closed chunks wait in the queue (plus the one being written), however many the object has."""
    from zuora_sync import clients
    from zuora_sync.extract import Selection, extract_object
    from zuora_sync.mapping import load_mapping
    from zuora_sync.pipeline import ChunkStream

    obj = load_mapping().get("RatePlanCharge")
    directory = tmp_path / "RatePlanCharge"
    hook = clients.zuora()

    def extract(on_file):
        return extract_object(hook, obj, Selection("full"), directory, field_types=preflight["types"][obj.name],
                              tz=dt.timezone.utc, chunk_rows=(2, 2), on_upsert_file=on_file)

    with ChunkStream(extract, depth=3) as stream:
        files = stream.files()
        first = next(files)
        deadline = time.monotonic() + 120
        while stream._queue.qsize() < 3 and time.monotonic() < deadline:   # the producer fills the queue...
            time.sleep(0.05)
        assert stream._queue.qsize() == 3
        time.sleep(0.5)
        # ... and then waits: one chunk handed over, three queued, at most one more being written.
        assert len(list(directory.glob("upsert-*.csv"))) <= 1 + 3 + 1
        assert stream._thread.is_alive()
        rest = [first, *files]
    manifest = stream.manifest()
    assert rest == manifest.upsert_files and len(rest) > 10
    assert stream.peak_depth == 3


def test_only_changed_rows_are_staged_and_hashes_are_committed_once_the_object_is_through(stack, preflight,
                                                                                          tmp_path):
    """The hash filter runs in the producer thread (the extract's row loop, inside the load); the
    pending hashes are committed after every chunk's job is collected: rows Salesforce took exactly
    as staged get their hash, refused rows none, rows written with a lookup emptied a mark
    (NOT_AS_STAGED, or EMPTIED: with nobody to say whether its target is still absent, as here, it
    is sent again). Loading the object again stages (and sends) only the rows without a real hash."""
    import threading

    from zuora_sync.hashes import EMPTIED, NOT_AS_STAGED, HashSource, StoredHashes

    name = "CustomerAccount"
    threads: set[str] = set()

    def compared(store):
        def read(key, limit):
            threads.add(threading.current_thread().name)
            return store.stored_hashes("accounts", name, from_key=key, limit=limit)
        return HashSource(StoredHashes(read).get)   # trusted: present exactly when hashed

    def stored(store) -> dict[str, str]:
        return dict(store.stored_hashes("accounts", name, from_key="", limit=10**6))

    from zuora_sync.state import StateStore

    StateStore(f"sqlite:///{stack['base'] / 'state.db'}").clear_hashes("accounts", [name])
    first, _stream, store, plan = load_object(stack, preflight, name, tmp_path / "first", hashes=compared)
    sent = set(staged_keys(tmp_path / "first", first.manifest.upsert_files))
    refused = {r["external_id"] for r in store.rejected_for_session(plan.session_id)}
    assert first.manifest.hashes == {"created": len(sent), "updated": 0, "unchanged": 0, "refused": 0, "emptied": 0}
    hashes = stored(store)
    real = {k for k, h in hashes.items() if h != NOT_AS_STAGED and not h.startswith(EMPTIED)}
    assert refused and not (refused & set(hashes)), "a refused new row keeps no hash"
    assert set(hashes) == sent - refused
    assert real
    counts = store.get_session(plan.session_id)["objects"][name]
    assert (counts["created"], counts["updated"], counts["unchanged"]) == (len(sent - refused), 0, 0)
    assert threads == {"zuora-sync-extract"}, threads

    second, _stream, store, plan = load_object(stack, preflight, name, tmp_path / "second", hashes=compared)
    again = set(staged_keys(tmp_path / "second", second.manifest.upsert_files))
    assert again == sent - real
    assert second.manifest.hashes["unchanged"] == len(real)
    assert store.get_session(plan.session_id)["objects"][name]["unchanged"] == len(real)
    assert {k for k, h in stored(store).items() if h != NOT_AS_STAGED and not h.startswith(EMPTIED)} == real


@pytest.fixture
def s3_bucket(monkeypatch, tmp_path):
    """An S3 server (moto's, from PyPI, as ``tests/production`` uses) with one bucket, reached
    through the ``aws_default`` connection as an operator configures it for ``s3://`` staging."""
    import json
    import subprocess
    import sys

    import boto3
    from conftest import free_port

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=open(tmp_path / "moto.log", "wb"), stderr=subprocess.STDOUT)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket="staging")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
            "conn_type": "aws", "login": "test", "password": "test",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}))
        yield client
    finally:
        server.terminate()
        server.wait(30)


def test_staged_chunks_on_s3(stack, preflight, s3_bucket):
    """Staging on ``s3://`` (an ``ObjectStoragePath`` that is not local disk): each chunk is
    written to the bucket, then copied to a local file for its upload; removing a directory removes
    its files from the bucket."""
    from airflow.sdk import ObjectStoragePath

    load_object(stack, preflight, "CustomerAccount", ObjectStoragePath("s3://aws_default@staging/s/CustomerAccount"),
                chunk_rows=(50, 100))
    directory = ObjectStoragePath("s3://aws_default@staging/s/Payment")
    result, _stream, store, plan = load_object(stack, preflight, "Payment", directory, chunk_rows=(5, 10))
    assert len(result.manifest.upsert_files) >= 3
    keys = {item["Key"] for item in s3_bucket.list_objects_v2(Bucket="staging", Prefix="s/Payment/")["Contents"]}
    assert {f"s/Payment/{name}" for name in result.manifest.upsert_files} | {"s/Payment/manifest.json"} <= keys
    rejected = {r["external_id"] for r in store.rejected_for_session(plan.session_id)}
    assert result.upserted > 0 and result.upserted + len(rejected) == result.manifest.counts.upserts

    # What the end task removes (staging.remove_run_directories): every file under a directory, on
    # S3 too ("s" standing for a DAG's directory, the objects' for its runs').
    from zuora_sync.staging import remove_run_directories

    removed = remove_run_directories(ObjectStoragePath("s3://aws_default@staging/s"), keep={"Payment"})
    assert removed == ["CustomerAccount"]
    left = {item["Key"] for item in s3_bucket.list_objects_v2(Bucket="staging")["Contents"]}
    assert left and all(key.startswith("s/Payment/") for key in left), left
