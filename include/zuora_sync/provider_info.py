"""What the ``zuora-sync`` package tells Airflow about itself, as a provider (entry point
``apache_airflow_provider``, declared in ``pyproject.toml``).

- The **Zuora connection type**: Admin → Connections offers "Zuora" with its own form (REST base
  URL, OAuth client ID and secret; the extras entity id, timeout and poll interval as fields) and a
  working Test button (:meth:`ZuoraHook.test_connection <zuora_sync.hooks.zuora.ZuoraHook.test_connection>`).
  The form is declared here, as Airflow 3.2+ wants it (``conn-fields`` and ``ui-field-behaviour``),
  so the API server builds it without importing the hook.
- The ``[zuora_sync]`` configuration section: the names the lineage assets give the Salesforce org
  and the Zuora tenant (:mod:`zuora_sync.lineage`), so ``airflow config list`` shows them.

Airflow calls :func:`get_provider_info` in every process that lists providers; it returns a
constant and imports nothing.
"""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """The provider metadata Airflow's ``ProvidersManager`` reads (``provider_info.schema.json``)."""
    return {
        "package-name": "zuora-sync",
        "name": "Zuora Sync",
        "description": "Zuora to Salesforce sync: the Zuora connection type and hook, and the sync's settings.",
        "integrations": [
            {"integration-name": "Zuora", "external-doc-url": "https://developer.zuora.com/", "tags": ["service"]},
        ],
        "hooks": [{"integration-name": "Zuora", "python-modules": ["zuora_sync.hooks.zuora"]}],
        "connection-types": [
            {
                "hook-class-name": "zuora_sync.hooks.zuora.ZuoraHook",
                "hook-name": "Zuora",
                "connection-type": "zuora",
                "conn-fields": {
                    "entity_id": {
                        "label": "Entity ID",
                        "description": "Multi-entity tenants only: sent as Zuora-Entity-Ids.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Seconds to wait for a connection or an answer (default 60).",
                        "schema": {"type": ["number", "null"], "minimum": 1},
                    },
                    "poll_interval": {
                        "label": "Data Query poll interval (seconds)",
                        "description": "Seconds before a Data Query job's first poll, then doubling (default 0.5).",
                        "schema": {"type": ["number", "null"], "minimum": 0.01},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {"host": "REST base URL", "login": "OAuth client ID",
                                   "password": "OAuth client secret"},
                    "placeholders": {
                        "host": "https://rest.apisandbox.zuora.com",
                        "login": "36-character client ID",
                    },
                },
            }
        ],
        "config": {
            "zuora_sync": {
                "description": "The Zuora sync's deployment-wide options (its run-time settings are the "
                               "zuora_sync_settings Variable).",
                "options": {
                    "salesforce_org": {
                        "description": "The <org> of the sync's Salesforce assets, "
                                       "salesforce://<org>/<sObject>. Read when DAG files are parsed.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "acme.my.salesforce.com",
                        "default": "salesforce_default",
                    },
                    "zuora_tenant": {
                        "description": "The <tenant> of the sync's Zuora assets, zuora://<tenant>/<table>. "
                                       "Read when DAG files are parsed.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "rest.na.zuora.com",
                        "default": "zuora_default",
                    },
                },
            }
        },
    }
