"""Where the sync's clients are built from its settings and Airflow connections.

One place, so that every task, the real-time trigger and the web app talk to Zuora and Salesforce
the same way: the same retry policies (:mod:`zuora_sync.retry`), the same API reserve, the same
connections. Building a client does no network call; the first request does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from zuora_sync.hooks.zuora import ZuoraHook
    from zuora_sync.salesforce_loader import SalesforceBulkLoader
    from zuora_sync.settings import Settings

__all__ = ["salesforce", "zuora"]

#: A person waits on the page's answer: fail fast rather than retry for minutes.
_INTERACTIVE = {"max_retries": 1, "request_timeout": (10.0, 20.0)}


def salesforce(conn_id: str = "salesforce_default", *, settings: Settings | None = None, reserve: bool = True,
               interactive: bool = False) -> SalesforceBulkLoader:
    """The Bulk API 2.0 loader on ``conn_id``.

    :param reserve: keep the settings' ``salesforce_api_reserve`` untouched (jobs that write or read
        in bulk); ``False`` for single checks such as ``describe`` and counts.
    :param interactive: for the web app: one retry, short timeouts.
    """
    from zuora_sync.salesforce_loader import SalesforceBulkLoader
    from zuora_sync.settings import load_settings

    api_reserve = (settings or load_settings()).salesforce_api_reserve if reserve else 0
    return SalesforceBulkLoader(conn_id, api_reserve=api_reserve, **(_INTERACTIVE if interactive else {}))


def zuora(conn_id: str = "zuora_default") -> ZuoraHook:
    """The Zuora hook on ``conn_id`` (its policy: :data:`zuora_sync.retry.ZUORA`)."""
    from zuora_sync.hooks.zuora import ZuoraHook

    return ZuoraHook(conn_id)
