"""Lineage: the Airflow assets the sync's tasks update, and the counts their events carry.

Every extract task has one outlet, the Zuora object it reads (``zuora://<tenant>/<table>``, the
Data Query table, e.g. ``zuora://zuora_default/subscription``); every load task has one, the
Salesforce object it writes (``salesforce://<org>/<sObject>``, e.g.
``salesforce://salesforce_default/Zuora__Subscription__c``), and a sync's delete task has every
object's of its scope (a cleanup's delete tasks one each). So Airflow's Assets page lists every
object the sync touches, with the tasks that update it, and each asset event's ``extra`` says what
the session did to it (:func:`record_event`).

What ``<org>`` and ``<tenant>`` are. Outlets are declared when the DAG file is parsed, and parsing
must not reach the network: the connection itself may sit in a secrets backend (Vault, AWS Secrets
Manager), and the org behind it is only known after a login. So they are names from Airflow's
configuration: ``[zuora_sync] salesforce_org`` and ``[zuora_sync] zuora_tenant`` (also
``AIRFLOW__ZUORA_SYNC__SALESFORCE_ORG`` / ``AIRFLOW__ZUORA_SYNC__ZUORA_TENANT``), by default the
connection ids, ``salesforce_default`` and ``zuora_default``. Set them to something that names the
real systems (the org's My Domain, ``acme.my.salesforce.com``, or its Org Id; the tenant's id or
host) when several Airflow deployments or lineage tools must tell them apart; changing them later
starts new assets (Airflow keeps the old ones, inactive).

The URIs follow Airflow 3.3's rules for schemes it has no handler for: the URI is kept as written,
with a lower-case scheme, no trailing slash, no fragment and no user info (``airflow`` is the only
reserved scheme). The names are checked to be a plain host-like word, so the URI needs no
quoting and cannot smuggle a path, query or credentials in.
"""

from __future__ import annotations

import re
from typing import Any

from airflow.sdk import Asset

#: Airflow configuration section of the sync's deployment-wide options.
CONFIG_SECTION = "zuora_sync"
SALESFORCE_SCHEME = "salesforce"
ZUORA_SCHEME = "zuora"
DEFAULT_SALESFORCE_ORG = "salesforce_default"
DEFAULT_ZUORA_TENANT = "zuora_default"

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252}[A-Za-z0-9])?(?::[0-9]{1,5})?$")


def _configured(option: str, default: str) -> str:
    """``[zuora_sync] option`` from Airflow's configuration (file or environment), checked."""
    from airflow.sdk import conf

    value = (conf.get(CONFIG_SECTION, option, fallback="") or "").strip() or default
    if not _NAME.match(value):
        raise ValueError(f"[{CONFIG_SECTION}] {option} = {value!r} cannot name an asset: use letters, digits, "
                         "'.', '-' and '_' (a host name such as acme.my.salesforce.com, an Org Id, a tenant id)")
    return value


def salesforce_org() -> str:
    """The ``<org>`` of the Salesforce assets (``[zuora_sync] salesforce_org``, default ``salesforce_default``)."""
    return _configured("salesforce_org", DEFAULT_SALESFORCE_ORG)


def zuora_tenant() -> str:
    """The ``<tenant>`` of the Zuora assets (``[zuora_sync] zuora_tenant``, default ``zuora_default``)."""
    return _configured("zuora_tenant", DEFAULT_ZUORA_TENANT)


def salesforce_asset(sobject: str, org: str | None = None) -> Asset:
    """The asset of one Salesforce object, e.g. ``salesforce://salesforce_default/Zuora__Subscription__c``."""
    return Asset(uri=f"{SALESFORCE_SCHEME}://{org or salesforce_org()}/{sobject}")


def zuora_asset(table: str, tenant: str | None = None) -> Asset:
    """The asset of one Zuora object (its Data Query table), e.g. ``zuora://zuora_default/subscription``."""
    return Asset(uri=f"{ZUORA_SCHEME}://{tenant or zuora_tenant()}/{table}")


def record_event(task: Any, context: Any, extra: dict[str, Any]) -> None:
    """Put ``extra`` on the asset events the task's outlets get when it succeeds.

    Airflow records one event per declared outlet when the task succeeds; this only sets what the
    events say. ``extra`` must be JSON: counts and session facts, never a record or a secret.
    """
    record_events(task, context, {outlet: extra for outlet in task.outlets or () if isinstance(outlet, Asset)})


def record_events(task: Any, context: Any, extras: dict[Asset, dict[str, Any]]) -> None:
    """Put each asset's ``extra`` on its event; the task's other outlets get no event this attempt
    (a task with an outlet per object, of which only some were written: see :func:`no_event`)."""
    task.outlets = [outlet for outlet in task.outlets or () if not isinstance(outlet, Asset) or outlet in extras]
    for outlet, extra in extras.items():
        context["outlet_events"][outlet].extra = dict(extra)


def no_event(task: Any) -> None:
    """This attempt changed nothing in the task's assets (a dry run, or nothing was sent): no event.

    Airflow reads a task's outlets when it succeeds and records an event for each; a task that
    wrote nothing clears them for this attempt only (the DAG's declared lineage is unchanged), so
    a DAG scheduled on the asset is not started by a run that did not update it.
    """
    task.outlets = []
