"""The Zuora sync's Airflow plugin: mounts the sync's web app on the API server at ``/zuora-sync``,
and listens for sync runs ending to put their session's outcome in the run's note.

Thin on purpose (``docs/architecture.md``): the app lives in the package (:mod:`zuora_sync.webapp`). Airflow imports
this module in every process that loads plugins, tasks included, so it imports nothing heavy and
touches no network or database: the app itself is imported on its first request.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from zuora_sync import run_notes
from zuora_sync.webapp import EXTERNAL_VIEW, URL_PREFIX, asgi_app


class ZuoraSyncPlugin(AirflowPlugin):
    """``POST /zuora-sync/events`` (Zuora callouts), ``/zuora-sync/status``, ``/zuora-sync/settings``
    and the Zuora Sync page (``/zuora-sync/ui/``), shown in the Airflow UI's navigation; the run-note
    listener (:mod:`zuora_sync.run_notes`) in the scheduler."""

    name = "zuora_sync"
    fastapi_apps = [{"app": asgi_app, "url_prefix": URL_PREFIX, "name": "Zuora sync"}]
    external_views = [dict(EXTERNAL_VIEW)]
    listeners = [run_notes]
