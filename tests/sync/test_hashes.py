"""``zuora_sync.hashes``: the hash of a row, the filter's decisions, what the load commits, when the
stored hashes can be trusted. Pure: files and functions only."""

from __future__ import annotations

import io
from pathlib import Path

from zuora_sync.hashes import (
    CREATED,
    NOT_AS_STAGED,
    UPDATED,
    HashFilter,
    KeySet,
    StoredHashes,
    commit_plan,
    emptied_mark,
    fingerprint_trusted,
    read_pending,
    row_hash,
    salesforce_instant,
)


def test_the_hash_covers_every_cell_and_the_links_and_keeps_cells_apart() -> None:
    base = row_hash(["a1", "Acme", "#N/A"], ["p1"])
    assert base == row_hash(["a1", "Acme", "#N/A"], ["p1"])
    assert len(base) == 32
    assert base != row_hash(["a1", "Acme", ""], ["p1"])           # a cleared field is a change
    assert base != row_hash(["a1", "Acme", "#N/A"], ["p2"])       # so is a second-pass link
    assert base != row_hash(["a1", "Acme", "#N/A"])
    assert row_hash(["a,b", "c"]) != row_hash(["a", "b,c"])        # no separator confusion


def _filter(stored: dict[str, str], present=None, *, force=False):
    pending, seen = io.StringIO(), io.StringIO()
    return HashFilter(stored.get, present, pending, seen, force=force), pending, seen


def test_trusted_hashes_decide_alone_unchanged_rows_stay_home() -> None:
    stored = {"a": row_hash(["a", "1"]), "b": row_hash(["b", "old"])}
    hashes, pending, seen = _filter(stored)
    assert hashes.admit("a", ["a", "1"]) is False        # unchanged
    assert hashes.admit("b", ["b", "new"]) is True       # updated
    assert hashes.admit("c", ["c", "1"]) is True         # no hash: Salesforce lacks it (trusted)
    assert hashes.counts.as_dict() == {"created": 1, "updated": 1, "unchanged": 1, "refused": 0, "emptied": 0}
    assert list(read_pending(pending.getvalue().splitlines())) == [
        ("b", row_hash(["b", "new"]), UPDATED), ("c", row_hash(["c", "1"]), CREATED)]
    assert seen.getvalue().split() == ["a", "b", "c"]


def test_a_record_salesforce_lacks_is_sent_even_with_its_hash_unchanged() -> None:
    stored = {"a": row_hash(["a", "1"]), "b": row_hash(["b", "1"])}
    hashes, pending, _ = _filter(stored, present={"b", "x"}.__contains__)
    assert hashes.admit("a", ["a", "1"]) is True         # deleted in Salesforce: created again
    assert hashes.created                                # (its empty second-pass links need no pass)
    assert hashes.admit("b", ["b", "1"]) is False
    assert hashes.admit("x", ["x", "1"]) is True         # in Salesforce, never hashed: updated
    assert not hashes.created
    assert hashes.counts.as_dict() == {"created": 1, "updated": 1, "unchanged": 1, "refused": 0, "emptied": 0}
    assert [kind for _, _, kind in read_pending(pending.getvalue().splitlines())] == [CREATED, UPDATED]


def test_force_sends_everything_an_unchanged_row_as_an_update() -> None:
    stored = {"a": row_hash(["a", "1"])}
    hashes, pending, _ = _filter(stored, force=True)
    assert hashes.admit("a", ["a", "1"]) is True
    assert hashes.counts.as_dict() == {"created": 0, "updated": 1, "unchanged": 0, "refused": 0, "emptied": 0}
    assert len(pending.getvalue().splitlines()) == 1


def test_only_rows_accepted_exactly_as_staged_keep_a_hash() -> None:
    pending = [("a", "ha", CREATED), ("b", "hb", UPDATED), ("c", "hc", CREATED), ("d", "hd", UPDATED),
               ("e", "he", CREATED)]
    plan = commit_plan(pending, failed={"b", "e"}, partial={"c"})
    # a: taken as staged. b: an update refused, Salesforce keeps the old record. c: written with a lookup
    # emptied (or its link refused). d: taken. e: a create refused, Salesforce has nothing.
    assert plan.keep == [("a", "ha"), ("b", NOT_AS_STAGED), ("c", NOT_AS_STAGED), ("d", "hd")]
    assert plan.drop == ["e"]
    assert (plan.created, plan.updated) == (2, 1)      # what was written: a, c created; d updated
    assert NOT_AS_STAGED != row_hash([])               # it never matches a row: the row goes again
    hashes = HashFilter({"c": NOT_AS_STAGED}.get, None, io.StringIO())
    assert hashes.admit("c", ["c"]) is True and hashes.counts.updated == 1   # present, sent again


def test_a_row_written_with_a_lookup_emptied_stays_home_while_its_target_is_absent() -> None:
    cells, links = ["s1", "Sub", "a9"], ["p1"]
    digest = row_hash(cells, links)
    plan = commit_plan([("s1", digest, CREATED), ("s2", "h2", CREATED)], failed=set(), partial={"s1", "s2"},
                       emptied={"s1": [2]})
    assert plan.keep == [("s1", emptied_mark(digest, [2])), ("s2", NOT_AS_STAGED)]   # s2: a link refused
    stored = dict(plan.keep)
    absent_targets = {"a9"}
    asked = []

    def absent(position: int, value: str) -> bool:
        asked.append((position, value))
        return value in absent_targets

    def decide(row_cells, row_links=links):
        hashes = HashFilter(stored.get, None, io.StringIO(), absent=absent)
        return hashes.admit("s1", row_cells, row_links), hashes.counts

    sent, counts = decide(cells)
    assert sent is False and (counts.unchanged, counts.emptied) == (1, 1) and asked == [(2, "a9")]
    assert decide(["s1", "Sub renamed", "a9"])[0] is True          # its values changed: sent
    assert decide(cells, ["p2"])[0] is True                         # a link changed: sent
    absent_targets.clear()                                          # the target arrived: sent, the lookup written
    assert decide(cells)[0] is True
    assert HashFilter(stored.get, None, io.StringIO()).admit("s1", cells, links) is True   # nobody to ask: sent
    assert emptied_mark("x" * 32, range(40)) == NOT_AS_STAGED       # too long to store: sent again, as before


def test_a_row_waiting_for_a_parent_of_its_own_object_goes_at_the_end_if_the_parent_was_sent() -> None:
    # Position 1 is a hierarchy parent (this very object): the parent may be a row read later.
    child, orphan = ["c1", "p1"], ["c2", "p2"]
    stored = {"c1": emptied_mark(row_hash(child), [1]), "c2": emptied_mark(row_hash(orphan), [1])}
    pending = io.StringIO()
    hashes = HashFilter(stored.get, None, pending, absent=lambda position, value: True, own=[1])
    assert hashes.admit("c1", child) is False and hashes.admit("c2", orphan) is False   # held back
    assert hashes.admit("p1", ["p1", ""]) is True                                      # c1's parent is sent
    assert hashes.due() == [("c1", child, [])]                                          # c2's parent is not
    assert hashes.counts.as_dict() == {"created": 1, "updated": 1, "unchanged": 1, "refused": 0, "emptied": 1}
    assert [k for k, _, _ in read_pending(pending.getvalue().splitlines())] == ["p1", "c1"]
    hashes.close()
    # A parent sent only as a retry of a refusal with the same values does not release its child.
    hashes = HashFilter(stored.get, None, io.StringIO(), absent=lambda position, value: True, own=[1],
                        retried=lambda key, cells: key == "p1")
    assert hashes.admit("c1", child) is False and hashes.admit("p1", ["p1", ""]) is True
    assert hashes.due() == []
    hashes.close()


def test_a_row_salesforce_would_refuse_again_is_not_sent_and_is_noted() -> None:
    unsent, pending = io.StringIO(), io.StringIO()
    hashes = HashFilter({}.get, None, pending, settled=lambda key, cells: key == "bad", unsent=unsent)
    assert hashes.admit("bad", ["bad", "1"]) is False
    assert hashes.admit("good", ["good", "1"]) is True
    assert hashes.counts.as_dict() == {"created": 1, "updated": 0, "unchanged": 1, "refused": 1, "emptied": 0}
    assert unsent.getvalue().split() == ["bad"] and "bad" not in pending.getvalue()
    forced = HashFilter({}.get, None, io.StringIO(), force=True, settled=lambda key, cells: True)
    assert forced.admit("bad", ["bad", "1"]) is True                # force sends it all the same


def test_stored_hashes_are_read_a_key_range_at_a_time() -> None:
    rows = sorted((f"k{i:04}", f"h{i}") for i in range(100))
    reads = []

    def read(start: str, limit: int):
        reads.append(start)
        return [r for r in rows if r[0] >= start][:limit]

    stored = StoredHashes(read, page=30)
    assert [stored.get(f"k{i:04}") for i in range(100)] == [f"h{i}" for i in range(100)]
    assert len(reads) == 4                              # 100 keys in order, 30 per read
    assert stored.get("k0005") == "h5" and stored.get("zzz") is None   # out of order: read again, still right


def test_the_key_set_answers_from_disk(tmp_path: Path) -> None:
    export = tmp_path / "sf.csv"
    export.write_text("Id,Zuora__External_Id__c\n001A,a\n001B,b\n001C,\n", encoding="utf-8")
    keys = KeySet(export, tmp_path)
    try:
        assert "a" in keys and "b" in keys and "" not in keys and "c" not in keys
        assert list(keys.missing(["a", "c", "d"])) == ["c", "d"]
    finally:
        keys.close()


def test_records_changed_in_salesforce_since_the_last_session_are_touched(tmp_path: Path) -> None:
    export = tmp_path / "sf.csv"
    export.write_text("Id,Zuora__External_Id__c,SystemModstamp\n001A,a,2026-12-05T10:00:00.000Z\n"
                      "001B,b,2026-12-05T10:00:01.000Z\n", encoding="utf-8")
    keys = KeySet(export, tmp_path, since="2026-12-05T10:00:00.000+0000")
    try:
        assert not keys.touched("a") and keys.touched("b") and not keys.touched("nope")
    finally:
        keys.close()
    (tmp_path / "u").mkdir()
    everything = KeySet(export, tmp_path / "u")              # no recorded fingerprint: all touched
    try:
        assert everything.touched("a") and everything.touched("b")
    finally:
        everything.close()
    # A touched record is sent although its hash is unchanged (a lookup Salesforce cleared, an edit).
    stored = {"a": row_hash(["a"]), "b": row_hash(["b"])}
    hashes = HashFilter(stored.get, {"a", "b"}.__contains__, io.StringIO(), touched={"b"}.__contains__)
    assert hashes.admit("a", ["a"]) is False and hashes.admit("b", ["b"]) is True
    assert hashes.counts.as_dict() == {"created": 0, "updated": 1, "unchanged": 1, "refused": 0, "emptied": 0}


def test_salesforce_datetimes_read_alike_from_rest_and_bulk() -> None:
    assert salesforce_instant("2026-12-05T10:00:00.000+0000") == salesforce_instant("2026-12-05T10:00:00.000Z")
    assert salesforce_instant("2026-12-05T10:00:00.001Z") > salesforce_instant("2026-12-05T10:00:00.000+0000")


def test_the_hashes_are_trusted_only_when_salesforce_did_not_move_and_matches_them() -> None:
    recorded = {"record_count": 10, "last_modified": "2026-12-05T10:00:00.000+0000", "hashed_count": 10}
    same = {"record_count": 10, "last_modified": "2026-12-05T10:00:00.000+0000"}
    assert fingerprint_trusted(same, recorded, 10)
    assert not fingerprint_trusted({**same, "record_count": 9}, recorded, 10)          # one deleted
    assert not fingerprint_trusted({**same, "last_modified": "2026-12-05T11:00:00.000+0000"}, recorded, 10)
    assert not fingerprint_trusted(same, {**recorded, "hashed_count": 9}, 10)          # one was never hashed
    assert not fingerprint_trusted(same, recorded, 9)                                  # hashes changed since
    assert not fingerprint_trusted(same, None, 10) and not fingerprint_trusted(None, recorded, 10)
