"""The 360 Sync Cleanup: remove the sync's records of one scope from Salesforce, safely.

``BeginCleanupOperator`` takes the exclusive cleanup lock (running sync sessions finish first; new
ones wait, deferred, until the cleanup ends), counts what would be removed, lists the custom lookup
fields in the org that point at those objects (the broken-linkage warning Zuora 360 gives)
with how many records use them, and refuses above the record limit unless the form accepts it.
Nothing is deleted in a dry run; a run with dry run off but without the form's confirmation fails
at once, before it takes the lock, saying what to tick (``docs/operations.md``: a cleanup without confirmation is
a clear error, not a green run that did nothing). Otherwise it resets the
scope's watermarks and clears its record hashes (:mod:`zuora_sync.hashes`) *before* anything is
deleted, so the next sync of the scope is a full sync that sends every record and restores whatever is gone — also after a cleanup that fails, or is stopped or killed, half-way
(Zuora 360: "after a Cleanup, a cancelled Cleanup ...: resync everything"). ``CleanupDeleteOperator``
deletes one object's records — only those the sync owns, carrying the external id — children
before parents. ``EndCleanupOperator`` records the session (*Sync Clean-up*) and unlocks. Until
then each task renews the lock's lease while it works (:mod:`zuora_sync.lock_lease`).
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Any, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from zuora_sync import clients
from zuora_sync.lock_lease import LockLease, renews_session_lock
from zuora_sync.mapping import load_mapping
from zuora_sync.lifecycle import close_session, lock_or_defer
from zuora_sync.planning import CleanupPlan, holder_name
from zuora_sync.settings import load_settings
from zuora_sync import task_ids
from zuora_sync.vocabulary import SessionType

SCOPES = {"accounts_and_related_objects": "accounts", "product_catalog": "catalog"}
#: The scopes as the cleanup form shows them (Zuora 360's names).
SCOPE_LABELS = {"accounts_and_related_objects": "Accounts & Related Objects", "product_catalog": "Product Catalog"}
#: The seed's warning for the Product Catalog scope, in the form, the DAG's docs, the task log and
#: the session's details.
CATALOG_WARNING = ("Zuora Quotes: a Product Catalog cleanup is safe only with Zuora Quotes 3.x or later (its "
                   "migration utility keeps products on existing quotes); with any earlier version it is not safe. "
                   "Quotes built on the current catalog in Salesforce may not work properly after it.")
#: Why a cleanup with dry run off and no confirmation fails.
NOT_CONFIRMED = ("Not confirmed: dry run is off but 'confirm' is not ticked, so nothing was deleted or reset. "
                 "To delete, trigger zuora_cleanup again with both 'dry run' off and 'confirm' ticked; to only "
                 "count what would be removed, leave 'dry run' on.")
BEGIN_TASK = task_ids.BEGIN_CLEANUP
CLEANUP = SessionType.CLEANUP


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


class BeginCleanupOperator(BaseOperator):
    """Lock, count, warn about lookups at risk, and decide whether this cleanup may delete.

    :param scope: ``accounts_and_related_objects`` or ``product_catalog``; templated.
    :param dry_run: count and report only; templated.
    :param confirm: without it nothing is deleted; templated.
    :param hard_delete: bypass the recycle bin; templated.
    :param accept_over_limit: accept a cleanup above the record limit; templated.
    """

    template_fields: Sequence[str] = ("scope", "dry_run", "confirm", "hard_delete", "accept_over_limit")
    ui_color = "#ffe0e0"

    def __init__(self, *, scope: Any, dry_run: Any = True, confirm: Any = False, hard_delete: Any = False,
                 accept_over_limit: Any = False, salesforce_conn_id: str = "salesforce_default",
                 state_conn_id: str = "zuora_sync_state", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scope = scope
        self.dry_run = dry_run
        self.confirm = confirm
        self.hard_delete = hard_delete
        self.accept_over_limit = accept_over_limit
        self.salesforce_conn_id = salesforce_conn_id
        self.state_conn_id = state_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from zuora_sync.state import CLEANUP_SCOPE, StateStore

        if self.scope not in SCOPES:
            raise AirflowFailException(f"scope must be one of {list(SCOPES)}, not {self.scope!r}")
        if not _truthy(self.dry_run) and not _truthy(self.confirm):
            # Before the lock and the session: nothing is written, and the run is red, not green.
            raise AirflowFailException(NOT_CONFIRMED)
        if SCOPES[self.scope] == "catalog":
            self.log.warning(CATALOG_WARNING)
        settings = load_settings()
        store = StateStore.from_airflow(self.state_conn_id)
        dag_run = context["dag_run"]
        holder = holder_name(dag_run.dag_id, dag_run.run_id)
        lock_or_defer(self, store, [CLEANUP_SCOPE], holder, settings, method_name="execute_after_wait",
                      ti=context["ti"],
                      waiting="Waiting: session {other} is running; the cleanup starts when it finishes (new sync "
                              "sessions wait for the cleanup). Checking again in {seconds} s, deferred.")
        with LockLease(store, holder, settings.lock_lease_seconds) as lease:
            return self._begin(context, store, settings, lease)

    def _begin(self, context: Any, store: Any, settings: Any, lease: LockLease) -> dict[str, Any]:
        """With the lock held: record the session, count, warn, and reset the watermarks if it deletes."""

        scope, holder, dag_run = SCOPES[self.scope], lease.holder, context["dag_run"]
        dry_run, confirm = _truthy(self.dry_run), _truthy(self.confirm)
        session_id = store.start_session(
            session_type=CLEANUP, scope=scope, trigger=str(getattr(dag_run, "run_type", "manual")),
            dag_id=dag_run.dag_id, run_id=dag_run.run_id, window_start=None, window_end=None,
            dry_run=dry_run,
        )
        loader = clients.salesforce(self.salesforce_conn_id, reserve=False)
        try:
            objects = load_mapping().scope_objects(scope)
            counts = {o.name: loader.count(f"FROM {o.salesforce} WHERE {o.key} != null") for o in objects}
            at_risk = self._lookups_at_risk(loader, {o.salesforce for o in objects})
        finally:
            store.add_api_calls(session_id, salesforce=loader.api_requests)
        total = sum(counts.values())
        store.add_details(session_id, records_to_remove=counts, total=total, lookups_at_risk=at_risk,
                          hard_delete=_truthy(self.hard_delete),
                          **({"warning": CATALOG_WARNING} if scope == "catalog" else {}))
        self.log.info("Cleanup of %s: %d records owned by the sync: %s", self.scope, total,
                      ", ".join(f"{name} {n}" for name, n in counts.items()))
        for lookup in at_risk:
            self.log.warning("Lookup at risk: %s.%s points at %s; %d record(s) use it and will lose the link",
                             lookup["object"], lookup["field"], lookup["references"], lookup["records"])
        if total > settings.cleanup_record_limit and not _truthy(self.accept_over_limit):
            reason = (f"Refused: {total:,} records exceed {settings.cleanup_record_limit:,}. Zuora advises against a "
                      "cleanup this large (ask for a forced full sync instead); tick 'I accept a cleanup above "
                      "1,000,000 records' to go ahead.")
            store.finish_session(session_id, error=reason)
            lease.release()
            raise AirflowFailException(reason)
        delete = not dry_run and confirm  # execute() refused dry run off without confirmation already
        if dry_run:
            self.log.info("Dry run: nothing is deleted and the watermarks stay")
        else:
            # Before the first delete: a cleanup that fails or is killed half-way must still be
            # followed by a full sync, or what it deleted would never come back.
            store.reset_watermarks(scope)
            # Also before the first delete: a hash says "Salesforce holds this record as staged".
            cleared = store.clear_hashes(scope)
            self.log.info("Watermarks of %s reset and its %d record hashes cleared: the next sync of this scope is a "
                          "full sync that sends every record, whatever happens to this cleanup", scope, cleared)
        return CleanupPlan(session_id=session_id, scope=scope, holder=holder, delete=delete,
                           hard=_truthy(self.hard_delete), objects=[o.name for o in objects],
                           counts=counts).as_xcom()

    def execute_after_wait(self, context: Any, event: Any = None) -> dict[str, Any]:
        return self.execute(context)

    def _lookups_at_risk(self, loader: Any, targets: set[str]) -> list[dict[str, Any]]:
        """Lookup fields outside the scope that point at the scope's objects, with their use."""
        found = []
        for entry in loader.describe_global()["sobjects"]:
            name = entry["name"]
            if name in targets or not entry.get("queryable", True):
                continue
            for field in loader.describe(name)["fields"]:
                pointing = [t for t in field.get("referenceTo") or [] if t in targets]
                if field.get("type") == "reference" and pointing:
                    used = loader.count(f"FROM {name} WHERE {field['name']} != null")
                    found.append({"object": name, "field": field["name"], "references": pointing[0], "records": used})
        return found


class CleanupDeleteOperator(BaseOperator):
    """Delete one object's records that the sync owns (they carry the external id)."""

    template_fields: Sequence[str] = ("object_name",)
    ui_color = "#ffd0d0"

    def __init__(self, *, object_name: str, salesforce_conn_id: str = "salesforce_default",
                 state_conn_id: str = "zuora_sync_state", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.object_name = object_name
        self.salesforce_conn_id = salesforce_conn_id
        self.state_conn_id = state_conn_id

    @renews_session_lock(BEGIN_TASK)
    def execute(self, context: Any) -> dict[str, Any]:
        from zuora_sync.state import StateStore

        value = context["ti"].xcom_pull(task_ids=BEGIN_TASK)
        plan = CleanupPlan.from_xcom(value) if value else None
        if plan is None or self.object_name not in plan.objects:
            raise AirflowSkipException(f"{self.object_name} is not part of this cleanup")
        if not plan.delete:
            return {"deleted": 0, "skipped": True}
        obj = load_mapping().get(self.object_name)
        store = StateStore.from_airflow(self.state_conn_id)
        loader = clients.salesforce(self.salesforce_conn_id, reserve=False)
        try:
            with tempfile.TemporaryDirectory(prefix="zuora-cleanup-") as tmp:
                path = Path(tmp) / "owned.csv"
                loader.query_to_csv(f"SELECT Id FROM {obj.salesforce} WHERE {obj.key} != null", path)
                with open(path, newline="", encoding="utf-8") as handle:
                    ids = [row[0] for index, row in enumerate(csv.reader(handle)) if index and row]
            outcome = loader.delete_ids(obj.salesforce, ids, hard=plan.hard)
        finally:
            store.add_api_calls(plan.session_id, salesforce=loader.api_requests)
        if outcome.rejected:
            store.add_rejected(plan.session_id, obj.name, [
                (r.external_id or r.sf_id, r.error_code, r.message, r.row) for r in outcome.rejected])
        deleted = outcome.processed - outcome.failed
        store.record_counts(plan.session_id, obj.name, deleted=deleted, failed=outcome.failed, removed=deleted)
        self.log.info("%s: %d record(s) %s, %d refused", obj.salesforce, deleted,
                      "hard-deleted" if plan.hard else "deleted (recycle bin)", outcome.failed)
        return {"deleted": deleted, "failed": outcome.failed}


class EndCleanupOperator(BaseOperator):
    """Record the session and release the lock (the watermarks were reset before the first delete)."""

    ui_color = "#ffe0e0"

    def __init__(self, *, delete_task_ids: list[str], state_conn_id: str = "zuora_sync_state", **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.delete_task_ids = delete_task_ids
        self.state_conn_id = state_conn_id

    def execute(self, context: Any) -> str:
        from zuora_sync.state import StateStore

        store = StateStore.from_airflow(self.state_conn_id)
        ti = context["ti"]
        value = ti.xcom_pull(task_ids=BEGIN_TASK)
        if not value:
            dag_run = context["dag_run"]
            store.release_lock(holder_name(dag_run.dag_id, dag_run.run_id))
            # The cleanup was refused or could not start: the run must show it, not look successful.
            raise AirflowFailException(f"The cleanup did not start; the {BEGIN_TASK} task's log says why")
        plan = CleanupPlan.from_xcom(value)
        missing = [t for t in self.delete_task_ids
                   if task_ids.object_of(t) in plan.objects and not ti.xcom_pull(task_ids=t)]
        error = f"tasks did not finish: {', '.join(missing)}" if missing else None
        status = close_session(store, plan.session_id, plan.holder, error=error, log=self.log)
        self.log.info("Cleanup session %d ended: %s", plan.session_id, status)
        if missing:
            raise AirflowFailException(f"Cleanup session {plan.session_id} failed: {error}")
        return status
