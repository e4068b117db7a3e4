"""Writing one object's staged rows to Salesforce: the upserts, then what no longer belongs.

:func:`upsert_object` upserts the staged rows, each chunk as soon as the extract has staged it
(:mod:`zuora_sync.pipeline`), then the second-pass links of the rows that made it, and keeps
every row Salesforce refused, with its code and message, for the next session to retry; rows
refused only for a missing optional lookup go again with it empty
(:mod:`zuora_sync.lookups`). Once Salesforce has answered for the whole object, the rows it took
exactly as staged keep their hash (:mod:`zuora_sync.hashes`; the extract's row loop, run by the
load, staged only the rows that changed); the others lose it, so the next session sends them
again. :func:`remove_object` removes (or flags) the rows that left Zuora or no longer qualify —
for a full sync every owned record whose Zuora source is gone (:mod:`zuora_sync.reconcile`) —
dropping their hashes first, and only then moves the object's watermark: a change counts as
synced once it is safely in Salesforce. Both stop cleanly when the Salesforce API budget runs low
(``docs/operations.md``, "API budget"). The operators (:mod:`zuora_sync.operators.salesforce_load`)
only gather the inputs and record the result.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zuora_sync.hashes import NOT_AS_STAGED, PENDING_HASHES, REFUSED_UNSENT, SEEN_KEYS, commit_plan, read_pending
from zuora_sync.lookups import Lookup, upsert_keeping_records
from zuora_sync.mapping import ObjectMapping
from zuora_sync.planning import SessionPlan, parse_instant
from zuora_sync.reconcile import advanced_watermark, orphan_keys, orphans
from zuora_sync.salesforce_loader import ApiBudgetExhausted, JobOutcome
from zuora_sync.pipeline import ChunkStream, StagedFiles
from zuora_sync.staging import SALESFORCE_KEYS, Manifest, StagedObject, local_copy, read_keys

__all__ = ["RemoveResult", "UpsertResult", "remove_object", "upsert_object"]

log = logging.getLogger(__name__)

_ID_CHUNK = 50_000
_HASH_CHUNK = 5_000

#: Bulk jobs of one object uploaded and not yet collected, at most (Salesforce processes them in turn).
JOBS_IN_FLIGHT = 8


@dataclass
class UpsertResult:
    """What :func:`upsert_object` did. ``stopped`` is why the API budget stopped it, if it did."""

    upserted: int = 0
    rejected: int = 0
    emptied: Counter = field(default_factory=Counter)
    stopped: str | None = None
    would_upsert: int | None = None   # a dry run's count
    manifest: Manifest | None = None  # what the extract staged (None when stopped)


@dataclass
class RemoveResult:
    """What :func:`remove_object` did. ``stopped`` is why the API budget stopped it, if it did."""

    removed: int = 0
    rejected: int = 0
    stopped: str | None = None
    would_remove: int | None = None   # a dry run's count


def upsert_object(plan: SessionPlan, obj: ObjectMapping, chunks: ChunkStream | StagedFiles | Manifest,
                  staged: StagedObject, loader: Any, store: Any, lookups: list[Lookup]) -> UpsertResult:
    """Upsert ``obj``'s staged rows as they are staged; keep the rejected ones; resolve the ones that are in now.

    :param chunks: the object's upsert files as the extract closes them (:class:`ChunkStream`), or
        an object staged before (its :class:`Manifest`).

    Each chunk becomes a Bulk job as soon as it exists; the next one is uploaded without waiting
    for Salesforce to process the one before (up to :data:`JOBS_IN_FLIGHT` jobs); the jobs are
    collected, oldest first, when the extract is done, and the rows they refused only for a
    missing optional lookup go again, all in one job. Then the second-pass links (of the rows
    the first pass wrote). The object's results (rejected rows, counts, fixed rejections, the
    pending hashes: :func:`zuora_sync.hashes.commit_plan`) are recorded only once every chunk is
    through: an extract or a job that fails leaves nothing half-recorded, and the task's retry
    starts the object again (upserts by external id converge). A dry run counts what the rows
    compared with their stored hashes would be (created, updated, unchanged) and sends nothing.
    """
    if isinstance(chunks, Manifest):
        chunks = StagedFiles(chunks)
    result = UpsertResult()
    refused: list[tuple[Any, str, str, Any]] = []   # (key, code, message, row), stored at the end
    failed_keys: set[str] = set()
    first_pass_failed: set[str] = set()   # refused in the first pass, or by the conversion: no new hash
    emptied_keys: set[str] = set()        # written, but not as staged: a lookup emptied, a link refused
    emptied_at: dict[str, set[int]] = {}  # of those, the positions (cells, then links) of the lookups emptied
    links_refused: set[str] = set()       # of those, a second-pass link refused outright
    width = len(obj.upsert_header)       # the cells before the links
    pending: deque[_Pending] = deque()

    chunked: list[Any] = []      # the chunks' job outcomes, settled together once all are in
    header: list[str] = []
    settled = False

    def settle(outcome: Any, columns: list[str], stem: str, *, counted: bool = True) -> None:
        """Rows refused only for a missing optional lookup go again without it; keep the rest."""
        with tempfile.TemporaryDirectory(prefix="zuora-sync-") as tmp:
            done = upsert_keeping_records(loader, obj.salesforce, obj.key, Path(stem), lookups, Path(tmp),
                                          outcome=outcome, header=columns)
        if counted:
            result.upserted += done.succeeded
        result.emptied += done.emptied
        emptied_keys.update(done.emptied_keys)
        for key, names in done.emptied_columns.items():
            # The link file's columns follow its key column; in a row's hash they follow its cells.
            offset = 0 if counted else width - 1
            emptied_at.setdefault(key, set()).update(offset + columns.index(n) for n in names if n in columns)
        refused.extend((r.external_id, r.error_code, r.message, r.row) for r in done.rejected)
        keys = {r.external_id for r in done.rejected if r.external_id}
        failed_keys.update(keys)
        # A first-pass refusal leaves Salesforce's record (if any) as it was; a refused link leaves
        # the record written without it.
        (first_pass_failed if counted else emptied_keys).update(keys)
        if not counted:
            links_refused.update(keys)

    def collect(job: _Pending) -> None:
        header[:] = job.header  # every chunk has the same header
        chunked.append(loader.finish(job.started))

    try:
        for name in chunks.files():
            if plan.dry_run:
                continue
            while len(pending) >= JOBS_IN_FLIGHT:
                collect(pending.popleft())
            pending.append(_start(loader, obj, staged, name))
        manifest = chunks.manifest()
        compared = manifest.hashes or {}
        if plan.dry_run:
            store.record_counts(plan.session_id, obj.name, extracted=manifest.counts.extracted,
                                created=compared.get("created", 0), updated=compared.get("updated", 0),
                                unchanged=compared.get("unchanged", 0))
            return UpsertResult(would_upsert=manifest.counts.upserts, manifest=manifest)
        if pending:
            # The object (and its children) wait for the last job; Salesforce works through the
            # jobs in turn, so once it is done the others are, and each is collected in one poll.
            loader.finish(pending[-1].started, closely=True)
        while pending:
            collect(pending.popleft())
        if chunked:
            # One resend for the whole object, not one per chunk: fewer jobs, fewer API requests.
            settled = True
            settle(JobOutcome(",".join(o.job_id for o in chunked if o.job_id), "upsert", obj.salesforce,
                              sum(o.processed for o in chunked), sum(o.failed for o in chunked),
                              [row for o in chunked for row in o.rejected]), header, "upsert")
        conversion = staged.rejected_conversions()
        refused[:0] = [(r.external_id, r.error_code, r.message, r.row) for r in conversion]
        failed_keys.update(r.external_id for r in conversion)
        first_pass_failed.update(r.external_id for r in conversion)
        if conversion:
            # Not sent; where Salesforce holds the record, it holds it as last taken: say "not as staged".
            store.mark_hashes(plan.scope, obj.name, {r.external_id for r in conversion}, NOT_AS_STAGED)
        for name in manifest.link_files:
            # Second-pass links only for records the first pass wrote.
            job = _start(loader, obj, staged, name, without=failed_keys)
            settle(loader.finish(job.started, closely=True), job.header, Path(name).stem, counted=False)
    except ApiBudgetExhausted as exc:
        result.stopped = str(exc)
        if not settled:  # the chunks collected before the stop, not yet settled
            refused.extend((r.external_id, r.error_code, r.message, r.row) for o in chunked for r in o.rejected)
        if refused:  # a clean stop: what Salesforce refused so far is kept, as it was before pipelining
            store.add_rejected(plan.session_id, obj.name, refused)
        result.rejected = len(refused)
        return result
    finally:
        store.add_api_calls(plan.session_id, salesforce=loader.api_requests)
    result.rejected, result.manifest = len(refused), manifest
    if refused:
        store.add_rejected(plan.session_id, obj.name, refused)
    emptied = {k: v for k, v in emptied_at.items() if v and k not in links_refused}
    created, updated = _commit_hashes(plan, obj, manifest, staged, store, first_pass_failed, emptied_keys, emptied)
    store.record_counts(plan.session_id, obj.name, extracted=manifest.counts.extracted, upserted=result.upserted,
                        failed=result.rejected, created=created, updated=updated,
                        unchanged=compared.get("unchanged", 0))
    still_open = set(store.open_rejected_ids(plan.scope, obj.name))
    if still_open:
        unsent = set(read_keys(staged.path(REFUSED_UNSENT))) if staged.path(REFUSED_UNSENT).exists() else set()
        fixed = [k for k in staged.keep_keys() if k in still_open and k not in failed_keys and k not in unsent]
        if fixed:
            store.resolve_rejected(obj.name, fixed, plan.session_id)
            log.info("%d record(s) rejected before are now in Salesforce", len(fixed))
    return result


@dataclass
class _Pending:
    """A staged file's Bulk job, uploaded and closed, waiting to be collected."""

    name: str
    header: list[str]
    started: Any


def _start(loader: Any, obj: ObjectMapping, staged: StagedObject, name: str, *,
           without: set[str] | None = None) -> _Pending:
    """Upload one staged file as a Bulk job (not waiting for it); ``without``: keys to leave out."""
    with local_copy(staged.path(name)) as path, tempfile.TemporaryDirectory(prefix="zuora-sync-") as tmp:
        if without:
            path = _without_keys(path, without, Path(tmp) / name)
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        return _Pending(name, header, loader.start_upsert(obj.salesforce, obj.key, path))


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
                   failed: set[str], partial: set[str], emptied: dict[str, set[int]]) -> tuple[int, int]:
    """Store the hashes of the rows Salesforce accepted exactly as staged; mark or drop the others'
    (:func:`zuora_sync.hashes.commit_plan`), a chunk at a time. Returns (created, updated) written.

    :param failed: keys refused in the first pass (or by the conversion).
    :param partial: keys written but not as staged: an optional lookup emptied, a second-pass link refused.
    :param emptied: of those, the ones written with only optional lookups emptied, with their positions.
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
            decided = commit_plan(chunk, failed, partial, emptied)
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
