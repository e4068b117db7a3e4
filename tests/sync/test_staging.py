"""The staging module: the manifest's round trip, CSV parts under a size limit, keys and conversions."""

from __future__ import annotations

import csv
import json

from zuora_sync.staging import Counts, CsvParts, Manifest, RejectedConversion, StagedObject, remove_run_directories


def test_the_manifest_round_trips_through_xcom_and_its_file(tmp_path):
    staged = StagedObject(tmp_path / "Subscription")
    staged.create()
    manifest = Manifest(object="Subscription", salesforce="Zuora__Subscription__c", key="Zuora__External_Id__c",
                        mode="window", directory=str(staged.directory), counts=Counts(5, 3, 1, 1),
                        upsert_files=["upsert-0000.csv"], link_files=[], on_delete="delete")
    staged.write_manifest(manifest)
    assert staged.manifest() == manifest
    assert Manifest.from_dict(json.loads(json.dumps(manifest.to_dict()))) == manifest
    # A newer writer's extra keys do not break an older reader.
    assert Manifest.from_dict({**manifest.to_dict(), "added_later": 1}) == manifest


def test_csv_parts_stay_under_the_size_limit_and_each_has_the_header(tmp_path):
    parts = CsvParts(tmp_path, "upsert", ["Name", "Zuora__External_Id__c"], max_bytes=100)
    rows = [[f"name, {i}", f"id-{i:03d}"] for i in range(20)]
    for row in rows:
        parts.write(row)
    parts.close()
    assert len(parts.files) > 1 and parts.rows == 20
    read = []
    for name in parts.files:
        assert (tmp_path / name).stat().st_size <= 100
        with open(tmp_path / name, newline="", encoding="utf-8") as handle:
            content = list(csv.reader(handle))
        assert content[0] == ["Name", "Zuora__External_Id__c"]
        read += content[1:]
    assert read == rows


def test_keys_and_rejected_conversions_read_back(tmp_path):
    staged = StagedObject(tmp_path)
    with staged.open_for_writing("keep-keys.txt") as handle:
        handle.write("a\n\nb\n")
    with staged.open_for_writing("delete-keys.txt") as handle:
        handle.write("")
    with staged.open_for_writing("rejected.jsonl") as handle:
        handle.write(json.dumps({"external_id": "c", "error_code": "VALUE_CONVERSION", "message": "bad date",
                                 "row": ["x", 1]}) + "\n")
    assert list(staged.keep_keys()) == ["a", "b"] and list(staged.delete_keys()) == []
    assert staged.rejected_conversions() == [RejectedConversion("c", "VALUE_CONVERSION", "bad date", ["x", 1])]


def test_the_selection_travels_from_the_extract_task_to_the_load_task_unchanged(tmp_path):
    """The load rebuilds the extract's statements from selection.json: the same SQL, page by page."""
    import datetime as dt

    from zuora_sync.mapping import load_mapping
    from zuora_sync.queries import Selection, build_query, selection_parts

    obj = load_mapping().get("Subscription")
    selection = Selection("window", dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.timezone.utc),
                          dt.datetime(2026, 12, 1, 10, 0, 0, 123000, tzinfo=dt.timezone.utc),
                          retry_keys=["8a8a0001", "8a8a0002"], related_keys={"account": ["2c92a0f9"]})
    staged = StagedObject(tmp_path / "Subscription")
    staged.create()
    staged.write_selection(selection)
    again = staged.selection()
    assert again == selection
    assert [build_query(obj, part, after_key="k") for part in selection_parts(obj, again)] == \
        [build_query(obj, part, after_key="k") for part in selection_parts(obj, selection)]


def _runs(root, names):
    for name in names:
        staged = StagedObject(root / name / "CustomerAccount")
        staged.create()
        with staged.open_for_writing("upsert-0000.csv") as handle:
            handle.write("Name\nrow\n")


def test_run_directories_are_removed_but_those_kept_on_local_disk(tmp_path):
    dag = tmp_path / "zuora_full_sync"
    _runs(dag, ["manual__1", "manual__2", "scheduled__3"])
    assert remove_run_directories(dag, keep={"scheduled__3"}) == ["manual__1", "manual__2"]
    assert sorted(p.name for p in dag.iterdir()) == ["scheduled__3"]
    assert (dag / "scheduled__3" / "CustomerAccount" / "upsert-0000.csv").exists()
    assert remove_run_directories(tmp_path / "never_ran") == []


def test_run_directories_are_removed_on_object_storage():
    """Through ``ObjectStoragePath`` as the end task calls it (fsspec's in-memory store here; S3 in
    test_pipeline.py)."""
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    attach("memory", fs=MemoryFileSystem())
    dag = ObjectStoragePath("memory://staging-test/zuora-sync/zuora_full_sync")
    _runs(dag, ["manual__1", "manual__2"])
    try:
        assert remove_run_directories(dag, keep={"manual__2"}) == ["manual__1"]
        assert [p.name for p in dag.iterdir()] == ["manual__2"]
        assert not (dag / "manual__1" / "CustomerAccount" / "upsert-0000.csv").exists()
    finally:
        remove_run_directories(dag)
