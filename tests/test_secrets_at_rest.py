"""Secrets and customer data at rest are their owner's only (issue 12, SPEC §8 and §11).

The sandboxes keep passwords, security tokens, client secrets and live session ids in SQLite files;
the state store keeps rejected rows and events; staged extracts are customer records as CSV. Each
is checked where it is really written: both sandboxes as server processes (one started on a data
dir an earlier version left world-readable), the state store's SQLite file, and a real extraction
from the Zuora sandbox through ``ZuoraHook`` to local staging, and to object storage, where files
have no modes and staging must simply work.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import ZuoraSandbox, start_salesforce_sandbox, start_zuora_sandbox

PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def sqlite_files(path: Path) -> list[Path]:
    """The database and whichever of its -wal and -shm files exist."""
    return [p for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")) if p.exists()]


def world_readable_old_layout(data_dir: Path, database: str) -> None:
    """A data dir as an earlier version left it: 0755, with a 0644 SQLite database."""
    data_dir.mkdir(parents=True)
    os.chmod(data_dir, 0o755)
    sqlite3.connect(data_dir / database).close()
    os.chmod(data_dir / database, 0o644)


@pytest.fixture(scope="module")
def zuora(tmp_path_factory: pytest.TempPathFactory) -> ZuoraSandbox:
    data_dir = tmp_path_factory.mktemp("zuora-at-rest") / "tenant"
    world_readable_old_layout(data_dir, "tenant.sqlite3")
    sandbox = start_zuora_sandbox(data_dir, accounts=3, seed=5)
    yield sandbox
    sandbox.stop()


def test_the_salesforce_sandbox_keeps_its_credentials_and_records_private(tmp_path, monkeypatch):
    data_dir = tmp_path / "org"
    world_readable_old_layout(data_dir, "org.sqlite3")
    sandbox = start_salesforce_sandbox(data_dir, accounts=2, password="at-rest-Pass1", security_token="ATREST")
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.ca_bundle)
        sf = sandbox.login()  # a live session id is stored now
        sf.bulk2.Account.insert(records=[{"Name": "At Rest Ltd"}], wait=0.1)  # a Bulk job's files
        database = data_dir / "org.sqlite3"
        assert b"at-rest-Pass1" in database.read_bytes() + b"".join(p.read_bytes() for p in sqlite_files(database))
        assert mode(data_dir) == PRIVATE_DIR
        assert {p.name: mode(p) for p in sqlite_files(database)} == {p.name: PRIVATE_FILE for p in sqlite_files(database)}
        assert mode(data_dir / "bulk") == PRIVATE_DIR
        assert mode(data_dir / "tls" / "server-key.pem") == PRIVATE_FILE
    finally:
        sandbox.stop()


def test_the_zuora_sandbox_keeps_its_client_secret_and_tokens_private(zuora):
    zuora.token()  # a bearer token is stored now
    database = zuora.data_dir / "tenant.sqlite3"
    assert mode(zuora.data_dir) == PRIVATE_DIR
    assert {p.name: mode(p) for p in sqlite_files(database)} == {p.name: PRIVATE_FILE for p in sqlite_files(database)}
    assert mode(zuora.data_dir / "files") == PRIVATE_DIR  # Data Query results
    assert mode(zuora.env_file) == PRIVATE_FILE


def test_the_state_store_file_is_private(tmp_path):
    from zuora_sync.state import StateStore

    fresh = tmp_path / "new" / "zuora_sync" / "state.db"
    store = StateStore(f"sqlite:///{fresh}")
    assert store.add_event("at-rest-1", "AccountUpdated", {"baseObject": "Account", "objectId": "A-1"})
    assert mode(fresh.parent) == PRIVATE_DIR and mode(fresh.parent.parent) == PRIVATE_DIR
    assert [mode(p) for p in sqlite_files(fresh)] == [PRIVATE_FILE] * len(sqlite_files(fresh))
    assert len(sqlite_files(fresh)) == 3  # WAL mode: the -wal and -shm files were checked too
    # A file an earlier version created 0644 is tightened; a shared directory it sits in is left alone.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    old = shared / "state.db"
    sqlite3.connect(old).close()
    os.chmod(old, 0o644)
    assert StateStore(f"sqlite:///{old}").add_event("at-rest-2", "AccountUpdated", {})
    assert mode(old) == PRIVATE_FILE and mode(shared) == 0o755


def _extract(zuora: ZuoraSandbox, directory, monkeypatch) -> dict:
    from zuora_sync.extract import Selection, extract_object
    from zuora_sync.hooks.zuora import ZuoraHook
    from zuora_sync.mapping import load_mapping

    monkeypatch.setenv("AIRFLOW_CONN_ZUORA_DEFAULT", zuora.env["AIRFLOW_CONN_ZUORA_DEFAULT"])
    return extract_object(ZuoraHook(), load_mapping().get("CustomerAccount"), Selection("full"), directory,
                          field_types={}, tz=dt.UTC).to_dict()


def test_staged_extracts_are_private_on_local_disk(zuora, tmp_path, monkeypatch):
    from airflow.sdk import ObjectStoragePath

    root = tmp_path / "staging"
    directory = ObjectStoragePath(f"file://{root}/zuora_full_sync/manual__run/CustomerAccount")
    manifest = _extract(zuora, directory, monkeypatch)
    assert manifest["counts"]["extracted"] == 3 and manifest["upsert_files"]
    for made in (root, root / "zuora_full_sync", root / "zuora_full_sync" / "manual__run",
                 root / "zuora_full_sync" / "manual__run" / "CustomerAccount"):
        assert mode(made) == PRIVATE_DIR, made
    files = sorted(p for p in (root / "zuora_full_sync" / "manual__run" / "CustomerAccount").iterdir())
    assert {p.name for p in files} >= {"manifest.json", "keep-keys.txt", "delete-keys.txt", "rejected.jsonl",
                                      *manifest["upsert_files"]}
    assert {p.name: mode(p) for p in files} == {p.name: PRIVATE_FILE for p in files}


def test_staging_on_object_storage_still_works(zuora, monkeypatch):
    """No modes there (the bucket's policy decides): files are created and read back as on disk."""
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    attach("memory", fs=MemoryFileSystem())
    directory = ObjectStoragePath("memory://bucket/staging/zuora_full_sync/run/CustomerAccount")
    manifest = _extract(zuora, directory, monkeypatch)
    assert json.loads((directory / "manifest.json").read_text()) == manifest
    upsert = (directory / manifest["upsert_files"][0]).read_text().splitlines()
    assert len(upsert) == 1 + manifest["counts"]["upserts"] and manifest["counts"]["upserts"] >= 1
