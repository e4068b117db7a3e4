"""Every task id of the sync and cleanup DAGs, built and read in one place.

Tasks find each other's XCom by task id (the load reads its extract's manifest, the end task the
delete task's result), so the names are made here and nowhere else.
"""

from __future__ import annotations

__all__ = [
    "BEGIN_CLEANUP", "BEGIN_SESSION", "DELETE_REMOVED", "END_CLEANUP", "END_SESSION", "PREFLIGHT", "WAIT_FOR_CHANGES",
    "delete", "extract", "load", "object_of",
]

BEGIN_SESSION = "begin_session"
PREFLIGHT = "preflight"
WAIT_FOR_CHANGES = "wait_for_changes"
END_SESSION = "end_session"
#: A sync's one delete task: what left Zuora, every object, children first.
DELETE_REMOVED = "delete_removed"
BEGIN_CLEANUP = "begin_cleanup"
END_CLEANUP = "end_cleanup"

_EXTRACT, _LOAD, _DELETE = "extract_", "load_", "delete_"


def extract(obj: str) -> str:
    """The task that extracts ``obj`` from Zuora."""
    return _EXTRACT + obj


def load(obj: str) -> str:
    """The task that upserts ``obj`` into Salesforce."""
    return _LOAD + obj


def delete(obj: str) -> str:
    """A cleanup's task that deletes ``obj``'s owned records (a sync's deletes are one task, :data:`DELETE_REMOVED`)."""
    return _DELETE + obj


def object_of(task_id: str) -> str:
    """The object an extract, load or delete task works on.

    :raises ValueError: ``task_id`` is not one of them.
    """
    for prefix in (_EXTRACT, _LOAD, _DELETE):
        if task_id.startswith(prefix) and len(task_id) > len(prefix):
            return task_id[len(prefix):]
    raise ValueError(f"{task_id!r} is not an extract, load or delete task")
