"""Airflow DAG: on-demand sync of chosen customer accounts and all their related records."""

from airflow.sdk import Param

from zuora_sync.dag_factory import build_sync_dag, dry_run_param
from zuora_sync.planning import ON_DEMAND

dag = build_sync_dag(
    "zuora_on_demand_sync",
    session_type=ON_DEMAND,
    scope="accounts",
    schedule=None,
    params={
        "accounts": Param([], type="array", items={"type": "string"}, minItems=1, title="Accounts",
                          description="Zuora account numbers (e.g. A00000001) or account ids to sync now."),
        "dry_run": dry_run_param(),
    },
    doc_md="""
### Zuora on-demand sync

Syncs the listed Zuora customer accounts — by account number or id — and all their related
records (subscriptions, rate plans, charges, invoices, payments, invoice payments) now, applying
the same rules as the other syncs. Waits (deferred) while another Accounts session runs.
""",
)
