"""Writing one object's staged rows to Salesforce: the upserts, then what no longer belongs.

:func:`upsert_object` upserts the staged rows (then the second-pass links of the rows that made
it) and keeps every row Salesforce refused, with its code and message, for the next session to
retry; rows refused only for a missing optional lookup go again with it empty
(:mod:`zuora_sync.lookups`). Once Salesforce has answered, the rows it took exactly as staged keep
their hash (:mod:`zuora_sync.hashes`); the others lose it, so the next session sends them again.
:func:`remove_object` removes (or flags) the rows that left Zuora or no longer qualify — for a full
sync every owned record whose Zuora source is gone (:mod:`zuora_sync.reconcile`) — dropping their
hashes first, and only then moves the object's watermark: a change counts as synced once it is
safely in Salesforce. Both stop cleanly when the Salesforce API budget runs low
(``docs/operations.md``, "API budget"). The operators (:mod:`zuora_sync.operators.salesforce_load`)
only gather the inputs and record the result.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zuora_sync.hashes import NOT_AS_STAGED, PENDING_HASHES, SEEN_KEYS, commit_plan, read_pending
from zuora_sync.lookups import Lookup, upsert_keeping_records
from zuora_sync.mapping import ObjectMapping
from zuora_sync.planning import SessionPlan, parse_instant
from zuora_sync.reconcile import advanced_watermark, orphan_keys, orphans
from zuora_sync.salesforce_loader import ApiBudgetExhausted
from zuora_sync.staging import SALESFORCE_KEYS, Manifest, StagedObject, local_copy, read_keys

__all__ = ["RemoveResult", "UpsertResult", "remove_object", "upsert_object"]

log = logging.getLogger(__name__)

_ID_CHUNK = 50_000
_HASH_CHUNK = 5_000


@dataclass
class UpsertResult:
    """What :func:`upsert_object` did. ``stopped`` is why the API budget stopped it, if it did."""

    upserted: int = 0
    rejected: int = 0
    emptied: Counter = field(default_factory=Counter)
    stopped: str | None = None
    would_upsert: int | None = None   # a dry run's count


@dataclass
class RemoveResult:
    """What :func:`remove_object` did. ``stopped`` is why the API budget stopped it, if it did."""

    removed: int = 0
    rejected: int = 0
    stopped: str | None = None
    would_remove: int | None = None   # a dry run's count


def upsert_object(plan: SessionPlan, obj: ObjectMapping, manifest: Manifest, staged: StagedObject, loader: Any,
                  store: Any, lookups: list[Lookup]) -> UpsertResult:
    """Upsert ``obj``'s staged rows; keep the rejected ones; resolve the ones that are in now."""
    conversion = staged.rejected_conversions()
    if plan.dry_run:
        return UpsertResult(would_upsert=manifest.counts.upserts)
    if conversion:
        store.add_rejected(plan.session_id, obj.name, [
            (r.external_id, r.error_code, r.message, r.row) for r in conversion])
    failed_keys = {r.external_id for r in conversion}
    if failed_keys:
        # Not sent; where Salesforce holds the record, it holds it as last taken: say "not as staged".
        store.mark_hashes(plan.scope, obj.name, failed_keys, NOT_AS_STAGED)
    emptied_keys: set[str] = set()   # written, but not as staged: a lookup emptied, a link refused
    first_pass_failed: set[str] = set(failed_keys)
    result = UpsertResult(rejected=len(conversion))
    try:
        for name in manifest.upsert_files + manifest.link_files:
            with local_copy(staged.path(name)) as path, tempfile.TemporaryDirectory(prefix="zuora-sync-") as tmp:
                if name in manifest.link_files and failed_keys:
                    # Second-pass links only for records the first pass wrote.
                    path = _without_keys(path, failed_keys, Path(tmp) / name)
                outcome = upsert_keeping_records(loader, obj.salesforce, obj.key, path, lookups, Path(tmp))
            if name in manifest.upsert_files:
                result.upserted += outcome.succeeded
            result.rejected += len(outcome.rejected)
            result.emptied += outcome.emptied
            emptied_keys.update(outcome.emptied_keys)
            if outcome.rejected:
                store.add_rejected(plan.session_id, obj.name, [
                    (r.external_id, r.error_code, r.message, r.row) for r in outcome.rejected])
                failed_keys.update(r.external_id for r in outcome.rejected if r.external_id)
                if name in manifest.upsert_files:
                    first_pass_failed.update(r.external_id for r in outcome.rejected if r.external_id)
                else:
                    emptied_keys.update(r.external_id for r in outcome.rejected if r.external_id)
    except ApiBudgetExhausted as exc:
        result.stopped = str(exc)
        return result
    finally:
        store.add_api_calls(plan.session_id, salesforce=loader.api_requests)
    created, updated = _commit_hashes(plan, obj, manifest, staged, store, first_pass_failed, emptied_keys)
    store.record_counts(plan.session_id, obj.name, upserted=result.upserted, failed=result.rejected,
                        created=created, updated=updated)
    still_open = set(store.open_rejected_ids(plan.scope, obj.name))
    if still_open:
        fixed = [k for k in staged.keep_keys() if k in still_open and k not in failed_keys]
        if fixed:
            store.resolve_rejected(obj.name, fixed, plan.session_id)
            log.info("%d record(s) rejected before are now in Salesforce", len(fixed))
    return result


def remove_object(plan: SessionPlan, obj: ObjectMapping, staged: StagedObject, loader: Any,
                  store: Any) -> RemoveResult:
    """Remove (or flag) what no longer belongs in Salesforce, then move the object's watermark."""
    try:
        with tempfile.TemporaryDirectory(prefix="zuora-sync-") as tmp:
            if plan.mode == "full":
                doomed_keys, doomed_ids = _reconcile(plan, obj, staged, loader, store, Path(tmp))
            else:
                doomed_keys = list(staged.delete_keys()) if obj.on_delete == "delete" else []
                doomed_ids = _ids_for(loader, obj, doomed_keys)
            if plan.dry_run:
                store.record_counts(plan.session_id, obj.name, removed=len(doomed_ids))
                return RemoveResult(would_remove=len(doomed_ids))
            # Hashes go before their records: a hash always names a record Salesforce holds.
            store.forget_hashes(plan.scope, obj.name, doomed_keys)
            removed, failed = _remove(plan, obj, loader, store, doomed_ids, Path(tmp))
    except ApiBudgetExhausted as exc:
        return RemoveResult(stopped=str(exc))
    finally:
        store.add_api_calls(plan.session_id, salesforce=loader.api_requests)
    store.record_counts(plan.session_id, obj.name, deleted=removed, failed=failed, removed=removed)
    open_keys = set(store.open_rejected_ids(plan.scope, obj.name))
    gone = [k for k in doomed_keys if k in open_keys]
    if gone:
        store.resolve_rejected(obj.name, gone, plan.session_id)
    if plan.mode == "window":
        # Only a window that joins the watermark moves it (reconcile.advanced_watermark).
        moved = advanced_watermark(store.get_watermark(plan.scope, obj.name), plan.window(obj.name),
                                   started=parse_instant(plan.started))
        if moved is not None:
            store.set_watermark(plan.scope, obj.name, moved)
    elif plan.mode == "full":
        store.set_watermark(plan.scope, obj.name, parse_instant(plan.started), force=True)
    return RemoveResult(removed=removed, rejected=failed)


def _without_keys(source: Path, keys: set[str], target: Path) -> Path:
    """A copy of a staged CSV without the rows whose first column (the key) is in ``keys``."""
    with open(source, newline="", encoding="utf-8") as read, open(target, "w", newline="", encoding="utf-8") as write:
        writer = csv.writer(write, lineterminator="\n")
        for index, row in enumerate(csv.reader(read)):
            if index == 0 or (row and row[0] not in keys):
                writer.writerow(row)
    return target


def _ids_for(loader: Any, obj: ObjectMapping, keys: list[str]) -> dict[str, str]:
    """Salesforce Ids of the records with these external ids (those that exist), Id → key."""
    found: dict[str, str] = {}
    for start in range(0, len(keys), _ID_CHUNK):
        for key, record_id in loader.ids_for_external_ids(obj.salesforce, obj.key, keys[start:start + _ID_CHUNK]).items():
            found[record_id] = key
    return found


def _reconcile(plan: SessionPlan, obj: ObjectMapping, staged: StagedObject, loader: Any, store: Any,
               tmp: Path) -> tuple[list[str], dict[str, str]]:
    """Every Salesforce record of the object whose key is not among the kept Zuora rows (on disk, not in memory).

    Which records Salesforce holds: the stored hashes, when the preflight found they still describe
    Salesforce (then only orphans, if any, are looked up); else the owned keys the extract read
    (staged); else (a flagged object, an older extract) the reconciliation's own query.
    """
    compared = staged.manifest().hashes or {}
    if compared.get("trusted"):
        doomed_keys = orphan_keys(store.hashed_keys(plan.scope, obj.name), read_keys(staged.path(SEEN_KEYS)), tmp)
        return doomed_keys, _ids_for(loader, obj, doomed_keys)
    if compared.get("salesforce_keys") and obj.on_delete != "flag":
        with local_copy(staged.path(SALESFORCE_KEYS)) as exported:
            doomed = orphans(exported, staged.keep_keys(), tmp)
        return list(doomed.values()), doomed
    exported = tmp / "salesforce.csv"
    where = f" WHERE {obj.flag} = false" if obj.on_delete == "flag" else ""
    loader.query_to_csv(f"SELECT Id, {obj.key} FROM {obj.salesforce}{where}", exported)
    doomed = orphans(exported, staged.keep_keys(), tmp)
    return list(doomed.values()), doomed


def _commit_hashes(plan: SessionPlan, obj: ObjectMapping, manifest: Manifest, staged: StagedObject, store: Any,
                   failed: set[str], partial: set[str]) -> tuple[int, int]:
    """Store the hashes of the rows Salesforce accepted exactly as staged; mark or drop the others'
    (:func:`zuora_sync.hashes.commit_plan`), a chunk at a time. Returns (created, updated) written.

    :param failed: keys refused in the first pass (or by the conversion).
    :param partial: keys written but not as staged: an optional lookup emptied, a second-pass link refused.
    """
    if manifest.hashes is None:
        return 0, 0
    created = updated = 0
    with staged.path(PENDING_HASHES).open("r", encoding="utf-8") as handle:
        pending = read_pending(handle)
        while True:
            chunk = [line for _, line in zip(range(_HASH_CHUNK), pending)]
            if not chunk:
                break
            decided = commit_plan(chunk, failed, partial)
            store.put_hashes(plan.scope, obj.name, decided.keep)
            store.forget_hashes(plan.scope, obj.name, decided.drop)
            created += decided.created
            updated += decided.updated
    return created, updated


def _remove(plan: SessionPlan, obj: ObjectMapping, loader: Any, store: Any, doomed: dict[str, str],
            tmp: Path) -> tuple[int, int]:
    if not doomed:
        return 0, 0
    if obj.on_delete == "flag":
        path = tmp / "flags.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow([obj.key, obj.flag])
            writer.writerows([key, "true"] for key in doomed.values() if key)
        outcome = loader.upsert_csv(obj.salesforce, obj.key, path)
    else:
        outcome = loader.delete_ids(obj.salesforce, list(doomed))
    if outcome.rejected:
        store.add_rejected(plan.session_id, obj.name, [
            (r.external_id or doomed.get(r.sf_id or ""), r.error_code, r.message, r.row) for r in outcome.rejected])
    return outcome.processed - outcome.failed, outcome.failed
