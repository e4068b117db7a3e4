"""Triggers of the sync, run by Airflow's triggerer.

They live in the installed package, not under ``dags/``: the triggerer imports a trigger by its
class path and does not load the DAG bundle.
"""

from zuora_sync.triggers.realtime import RealTimeSyncTrigger

__all__ = ["RealTimeSyncTrigger"]
