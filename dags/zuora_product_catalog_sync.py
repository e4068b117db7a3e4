"""Airflow DAG: product catalog sync, products, rate plans and charges, always full, daily."""

from airflow.sdk import CronDataIntervalTimetable

from zuora_sync.dag_factory import build_sync_dag, dry_run_param
from zuora_sync.planning import CATALOG

dag = build_sync_dag(
    "zuora_product_catalog_sync",
    session_type=CATALOG,
    scope="catalog",
    schedule=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"),
    params={"dry_run": dry_run_param()},
    doc_md="""
### Zuora product catalog sync

Daily (and on demand), copies the whole Zuora product catalog — products (`Product2`), product
rate plans and product rate plan charges — to Salesforce. Catalog syncs are always full. A product
deleted in Zuora is kept in Salesforce and flagged (`zqu__Deleted__c`), so quotes keep working.
""",
)
