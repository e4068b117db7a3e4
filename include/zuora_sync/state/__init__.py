"""The sync's own state store (``docs/architecture.md``): watermarks, sync history, rejected records, scope locks
and received change events, in a database reached through the Airflow connection
``zuora_sync_state`` (SQLite under ``$AIRFLOW_HOME/zuora_sync/state.db`` without it).

    from zuora_sync.state import StateStore
    store = StateStore.from_airflow()
"""

from zuora_sync.state.store import (
    CLEANUP_SCOPE,
    DEFAULT_CONN_ID,
    FAILURE,
    FINISHED,
    FINISHED_WITH_ERRORS,
    RUNNING,
    SESSION_STATUSES,
    SESSION_TYPES,
    STOPPED,
    LockLost,
    StateStore,
    alembic_config,
    default_url,
    url_from_connection,
)

__all__ = [
    "CLEANUP_SCOPE",
    "DEFAULT_CONN_ID",
    "FAILURE",
    "FINISHED",
    "FINISHED_WITH_ERRORS",
    "RUNNING",
    "SESSION_STATUSES",
    "SESSION_TYPES",
    "STOPPED",
    "LockLost",
    "StateStore",
    "alembic_config",
    "default_url",
    "url_from_connection",
]
