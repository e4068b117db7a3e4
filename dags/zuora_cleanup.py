"""Airflow DAG: the 360 Sync Cleanup, removing the sync's records of one scope from Salesforce."""

from airflow.sdk import Param

from zuora_sync.dag_factory import build_cleanup_dag
from zuora_sync.operators.cleanup import CATALOG_WARNING, SCOPE_LABELS, SCOPES

DOC = """
### Zuora 360 Sync Cleanup

Removes the Zuora data the sync wrote to Salesforce for one scope, so **the next sync of that scope
is a full sync**. Only records carrying the sync's external id are deleted, children before
parents; records you created yourself are left alone. If all you want is a forced full sync,
trigger `zuora_full_sync` instead.

Before deleting it counts the records and lists the **custom lookup fields that point at these
objects** and how many records use them: those links break. Above 1,000,000 records it refuses
unless accepted. While it runs the sync stops: running sessions finish first, new ones wait.
Recorded in sync history as *Sync Clean-up*. The form defaults to a dry run; tick **confirm** (and
untick dry run) to delete. Dry run off without **confirm** fails at once, deleting nothing.

**Product Catalog and Zuora Quotes.** A Product Catalog cleanup is safe only with Zuora Quotes 3.x
or later, whose migration utility keeps the products on existing quotes; with any earlier version
of Zuora Quotes it is **not safe**. Quotes built on the current product catalog in Salesforce may
not work properly after a Product Catalog cleanup.
"""

dag = build_cleanup_dag(
    "zuora_cleanup",
    doc_md=DOC,
    params={
        "scope": Param("accounts_and_related_objects", type="string", enum=list(SCOPES), values_display=SCOPE_LABELS,
                       title="Scope",
                       description="What to remove: Accounts & Related Objects (customer accounts, hierarchies, "
                                   "subscriptions, rate plans, charges, invoices, payments, payment-invoices) or "
                                   "the Product Catalog (products, product rate plans and charges, used by Zuora "
                                   "Quotes). Product Catalog: " + CATALOG_WARNING),
        "dry_run": Param(True, type="boolean", title="Dry run",
                         description="Count the records and the lookups at risk; delete nothing."),
        "confirm": Param(False, type="boolean", title="Confirm",
                         description="Nothing is deleted unless this is ticked and dry run is off; a run with dry "
                                     "run off and this unticked fails, deleting nothing."),
        "hard_delete": Param(False, type="boolean", title="Hard delete",
                             description="Delete permanently instead of into Salesforce's recycle bin."),
        "accept_over_1m_records": Param(False, type="boolean", title="I accept a cleanup above 1,000,000 records",
                                        description="Zuora advises against cleaning up more than 1,000,000 records; "
                                                    "without this, such a cleanup is refused."),
    },
)
