"""Airflow DAG: full sync of Accounts & Related Objects: everything in Zuora, then reconciliation."""

from zuora_sync.dag_factory import build_sync_dag, dry_run_param, force_param, objects_param
from zuora_sync.planning import FULL

dag = build_sync_dag(
    "zuora_full_sync",
    session_type=FULL,
    scope="accounts",
    schedule=None,
    params={"objects": objects_param("accounts"), "dry_run": dry_run_param(), "force": force_param()},
    doc_md="""
### Zuora full sync — Accounts & Related Objects

Copies every qualifying customer account, subscription (latest version), rate plan, charge, posted
invoice, payment and invoice payment from Zuora to Salesforce, then **reconciles**: Salesforce
records of these objects whose Zuora source is gone or no longer qualifies are removed.

Runs manually (trigger it with the form: objects, dry run, force). Only records whose values changed
since Salesforce last took them, or that Salesforce lacks, are sent; **force** sends every record. The first sync ever, and the first
after a cleanup, is a full sync whichever sync DAG starts it. Sessions never overlap: a full sync
waits (deferred) while another Accounts session runs. History and rejected records: the sync page.
""",
)
