"""Who may do what in the sync's web app: Airflow's auth manager decides (``docs/ui.md``).

A login is not enough: the web app asks Airflow's auth manager (whichever is configured: the
SimpleAuthManager's Viewer/User/Op/Admin roles, FAB's roles and per-DAG permissions, ...) about
the user that Airflow's own :func:`~airflow.api_fastapi.core_api.security.get_user` returns, through
the same dependencies Airflow's REST API uses (:func:`~airflow.api_fastapi.core_api.security.requires_access_dag`):

=====================================================  ===============================================
route                                                  the user needs
=====================================================  ===============================================
``GET /status``, ``/settings``, ``/sessions``,         read access to the runs of every sync DAG
``/sessions/{id}``, ``/pending-events``,               (:data:`SYNC_DAG_IDS`): sessions *are* those
``/api-usage``                                         DAGs' runs
``PUT /settings``                                      edit access to the Variable
                                                       ``zuora_sync_settings``: the route writes it, and
                                                       must not let anyone write it who could not on
                                                       Airflow's own Variables page
``PUT /mode``                                          edit access to both ``zuora_incremental_sync``
                                                       and ``zuora_realtime_sync`` (what pausing them
                                                       on Airflow's own pages needs): it pauses and
                                                       unpauses them
``/sessions/{id}/rejected``, ``rejected.csv``          read access to the task logs of the session's
                                                       DAG *and* the right to run that DAG
=====================================================  ===============================================

The rejected records are rows of customer data as they were sent to Salesforce. Task logs are the
Airflow permission closest to them, but both Airflow auth managers grant it to their read-only
Viewer role; so reading them also takes the right to trigger the session's DAG, which is what a
user does about rejected records (retry them). A Viewer gets 403; a User, an Op and an Admin (or
FAB's User role and above) get the records.

Every check fails closed: no user, 401 (or Airflow's 403 for an invalid token); a user without the
permission, 403 ``Forbidden``, as Airflow's own API answers.
"""

from __future__ import annotations

from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, VariableDetails
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import Depends, HTTPException, Request, status

from zuora_sync.settings import VARIABLE

#: The sync DAGs (``dags/``): every session is a run of one of them.
SYNC_DAG_IDS = (
    "zuora_full_sync",
    "zuora_incremental_sync",
    "zuora_on_demand_sync",
    "zuora_product_catalog_sync",
    "zuora_realtime_sync",
    "zuora_cleanup",
)

#: Route dependencies: read access to the runs of every sync DAG (Airflow's own dependency, once per DAG).
READ_SYNC = [Depends(requires_access_dag("GET", DagAccessEntity.RUN, dag_id)) for dag_id in SYNC_DAG_IDS]
#: The DAGs whose paused flags are the sync mode.
MODE_DAG_IDS = ("zuora_incremental_sync", "zuora_realtime_sync")
#: Route dependencies of ``PUT /mode``: edit access to both mode DAGs, as Airflow's ``PATCH
#: /api/v2/dags/{dag_id}`` (pause, unpause) asks for each.
EDIT_MODE = [Depends(requires_access_dag("PUT", None, dag_id)) for dag_id in MODE_DAG_IDS]


def _team_of_variable(key: str) -> str | None:
    """The team owning the Variable in a multi-team deployment (as ``requires_access_variable`` looks it up)."""
    from airflow.configuration import conf

    if not conf.getboolean("core", "multi_team", fallback=False):
        return None
    from airflow.models import Variable

    return Variable.get_team_name(key)


def can_edit_settings(user: Any) -> bool:
    """Whether ``user`` may change the settings: edit access to the ``zuora_sync_settings`` Variable."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().is_authorized_variable(
        method="PUT", details=VariableDetails(key=VARIABLE, team_name=_team_of_variable(VARIABLE)), user=user)


def can_change_mode(user: Any) -> bool:
    """Whether ``user`` may change the sync mode: edit access to both :data:`MODE_DAG_IDS`."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.models.dag import DagModel

    manager = get_auth_manager()
    return all(manager.is_authorized_dag(method="PUT", details=DagDetails(id=dag_id, team_name=DagModel.get_team_name(
        dag_id)), user=user) for dag_id in MODE_DAG_IDS)


def require_settings_edit(user: GetUserDep) -> None:
    """Route dependency of ``PUT /settings``: 403 unless :func:`can_edit_settings`.

    Airflow's ``requires_access_variable`` would check the Variable named in the *path* (there is
    none here) and, with multi-team on, read the whole request body before its size is checked; so
    the same auth manager call is made here for the one Variable the route writes.
    """
    if not can_edit_settings(user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden: changing the sync settings needs edit access "
                                                       f"to the Airflow Variable {VARIABLE}")


EditSettings = Annotated[None, Depends(require_settings_edit)]


def require_rejected_records(request: Request, user: Any, dag_id: str | None) -> None:
    """403 unless ``user`` may read the task logs of ``dag_id`` and run it (see the module's table).

    Called by the rejected-records routes once they know the session's DAG; Airflow's own
    dependencies do the checks.
    """
    # Never None: Airflow's dependency would then take the DAG from the request's query string.
    for target in [dag_id] if dag_id else SYNC_DAG_IDS:
        requires_access_dag("GET", DagAccessEntity.TASK_LOGS, target)(request, user)
        requires_access_dag("POST", DagAccessEntity.RUN, target)(request, user)


__all__ = ["EDIT_MODE", "MODE_DAG_IDS", "READ_SYNC", "SYNC_DAG_IDS", "EditSettings", "can_change_mode",
           "can_edit_settings", "require_rejected_records", "require_settings_edit"]
