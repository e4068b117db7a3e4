"""Honest run states: a DAG run note that says how its sync session ended, when it did not simply finish.

A session that ends *Finished with Errors* (Salesforce rejected some records) did its job: every
record it could write is in Salesforce, the rejected ones are kept with Salesforce's reason and
retried as soon as a retry can succeed. Its DAG run therefore stays **successful** — a failed run would read
as a failed sync, look the same as a real Failure, turn every run red for as long as one record
stays rejected (say a CRM Id nobody fixes), set off retries and "rerun failed" backfills that
cannot help, and count toward ``max_consecutive_failed_dag_runs``, which pauses the DAG: the sync
would stop because of one bad record. What the run gets instead is a **note**, which the Airflow
UI shows at a glance (the run's bar in the grid gets a folded corner, the note is on the run's
page, ``note`` in the REST API): "**Zuora sync: Finished with Errors** — session 12 (Full): 7
records rejected by Salesforce: CustomerAccount 7. …", with a link to the session on the Zuora
Sync page. A Stopped session (green run) and a Failure (red run) get one too, saying why; a plain
Finished session gets none, so a note means "look at this run".

How the note gets there. A task cannot write its run's note (the Task Execution API has no call
for it), so ``end_session`` composes it (:func:`session_note`) and pushes it as the XCom
:data:`NOTE_KEY`; this module's listener, registered by the sync's plugin, copies it onto the run
when the run ends (``on_dag_run_success`` / ``on_dag_run_failed``, in the scheduler, or in the
process running ``dag.test()``). A note someone wrote on the run is kept: the sync's paragraph is
added after it, and replaced (not repeated) when the run is cleared and ends again.

This module is imported wherever plugins load, tasks included: it imports nothing heavy at import.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

#: XCom key (of ``end_session``) holding the run's note; empty when the session simply finished.
NOTE_KEY = "zuora_sync_run_note"
#: How every note of the sync begins: how the listener tells its paragraph from a person's.
MARKER = "**Zuora sync: "
#: Airflow keeps at most 1000 characters of a note.
MAX_NOTE = 1000

_NEXT_STEP = {
    "Finished with Errors": "They are retried as soon as a retry can succeed.",
    "Stopped": "The next session resumes.",
    "Failure": "The next session picks the changes up.",
}


def session_note(session: dict[str, Any], url: str) -> str:
    """The run's note for a session that did not simply finish ("" for Finished and dry runs).

    :param session: the session as :meth:`StateStore.get_session <zuora_sync.state.StateStore.get_session>`
        returns it (status, type, counts per object, rejected count, error).
    :param url: the session on the Zuora Sync page.
    """
    status = session.get("status")
    if status not in _NEXT_STEP:
        return ""
    head = f"{MARKER}{status}** — [session {session['id']}]({url}) ({session.get('session_type')})"
    if status == "Finished with Errors":
        failed = {name: counts.get("failed", 0) for name, counts in (session.get("objects") or {}).items()
                  if counts.get("failed")}
        total = max(int(session.get("rejected") or 0), sum(failed.values()))
        per_object = ", ".join(f"{name} {n:,}" for name, n in failed.items())
        body = f"{total:,} record{'' if total == 1 else 's'} rejected by Salesforce" + (f": {per_object}" if per_object else "")
        body += ". Their codes and messages are on the Zuora Sync page."
    else:
        body = str(session.get("error") or status)
    tail = f" {_NEXT_STEP[status]}"
    room = MAX_NOTE - len(head) - len(tail) - 3  # ": " and a possible "…"
    body = body.strip()
    if len(body) > room:
        body = body[:max(room, 0)].rstrip() + "…"
    elif not body.endswith((".", "!", "?")):
        body += "."
    return f"{head}: {body}{tail}"


def merge_note(current: str | None, ours: str | None) -> str | None:
    """The run's note with the sync's paragraph set to ``ours`` (removed when empty).

    The sync's paragraph is the one starting with :data:`MARKER`; whatever else the note says was
    written by a person and stays first.
    """
    kept = [p for p in (current or "").split("\n\n") if p.strip() and not p.startswith(MARKER)]
    if ours:
        room = MAX_NOTE - sum(len(p) + 2 for p in kept)
        kept.append(ours if len(ours) <= room else ours[:max(room - 1, 0)] + "…")
    merged = "\n\n".join(kept)
    return merged or None


def _annotate(dag_run: Any) -> None:
    """Copy the note ``end_session`` left for this run (if any) onto the run.

    In the scheduler the run belongs to the scheduler's DB session, which commits the note with the
    run's new state; ``dag.test()`` hands over a detached run, so the note gets a session of its own.
    """
    from sqlalchemy.orm import object_session

    from airflow.utils.session import create_session

    if dag_run.id is None:
        return
    session = object_session(dag_run)
    if session is not None:
        _copy_note(session, dag_run)
        return
    from airflow.models.dagrun import DagRun

    with create_session() as own:
        run = own.get(DagRun, dag_run.id)
        if run is not None:
            _copy_note(own, run)


def _copy_note(session: Any, dag_run: Any) -> None:
    from sqlalchemy import select

    from airflow.models.xcom import XComModel
    from airflow.sdk.execution_time.xcom import XCom

    with session.no_autoflush:
        row = session.scalars(select(XComModel).where(XComModel.dag_run_id == dag_run.id,
                                                      XComModel.key == NOTE_KEY).limit(1)).first()
        if row is None:
            return  # not a sync run, or its session never ended (e.g. it never began)
        ours = XCom.deserialize_value(row)
        current = dag_run.note
    merged = merge_note(current, ours if isinstance(ours, str) else None)
    if merged != current:
        dag_run.note = merged


def _annotate_quietly(dag_run: Any) -> None:
    try:
        _annotate(dag_run)
    except Exception:  # noqa: BLE001 - a note must never disturb the scheduler
        log.exception("Could not set the note of DAG run %s", getattr(dag_run, "run_id", "?"))


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    """A sync run succeeded: note its session if it finished with errors or stopped."""
    _annotate_quietly(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    """A sync run failed: note why its session failed."""
    _annotate_quietly(dag_run)
