"""The "Zuora Sync session" button of every sync task: its session on the Zuora Sync page.

Airflow 3.3 works an operator's extra links out on the worker, when the task instance ends
(whatever its state), and keeps each URL as an XCom the UI reads; so :meth:`SyncSessionLink.get_link`
runs in the task's process, after its ``execute``, and may read the run's XComs. The session of a
run is the one its begin task recorded (its plan's ``session_id``, or the id of a session stopped
before writing); a run with no session (the begin task failed or found nothing to sync) links to
the sync history.

The link opens the page inside the Airflow UI, where Airflow 3.3 hands the path and query after
``/plugin/<url_route>`` to the plugin's iframe: ``<base>/plugin/zuora-sync/zuora-sync/ui/?session=12``
shows the page with session 12 open (the page honours ``?session=``, ``docs/ui.md``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseOperatorLink

from zuora_sync.webapp import EXTERNAL_VIEW, PAGE_PATH, URL_PREFIX


def session_page_url(session_id: int | None, base_url: str | None = None) -> str:
    """The Zuora Sync page inside the Airflow UI, with ``session_id`` open (the history without one).

    :param base_url: the Airflow UI's address (``[api] base_url``); without one the URL is
        relative to the server's root.
    """
    if base_url is None:
        from airflow.sdk import conf

        base_url = conf.get("api", "base_url", fallback="") or ""
    base = base_url.rstrip("/")
    # The iframe's own path is absolute on the server, so it carries the UI's path prefix if any.
    page = f"{urlsplit(base).path}{URL_PREFIX}{PAGE_PATH}"
    query = f"?session={int(session_id)}" if session_id is not None else ""
    return f"{base}/plugin/{EXTERNAL_VIEW['url_route']}{page}{query}"


def run_session_id(dag_id: str, run_id: str) -> int | None:
    """The sync session of a DAG run, from its begin task's XComs (None: the run recorded none)."""
    from airflow.sdk.execution_time.xcom import XCom

    from zuora_sync.operators.session import SESSION_TASK, STOPPED_KEY  # they use this module

    plan = XCom.get_one(key="return_value", dag_id=dag_id, task_id=SESSION_TASK, run_id=run_id)
    if isinstance(plan, dict) and plan.get("session_id") is not None:
        return int(plan["session_id"])
    stopped = XCom.get_one(key=STOPPED_KEY, dag_id=dag_id, task_id=SESSION_TASK, run_id=run_id)
    return int(stopped) if stopped is not None else None


class SyncSessionLink(BaseOperatorLink):
    """"Zuora Sync session": the task's sync session on the Zuora Sync page."""

    name = "Zuora Sync session"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return session_page_url(run_session_id(ti_key.dag_id, ti_key.run_id))
