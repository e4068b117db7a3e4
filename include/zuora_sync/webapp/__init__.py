"""The sync's web app, served by the Airflow API server under ``/zuora-sync`` (``docs/ui.md``).

- ``POST /zuora-sync/events``: Zuora callouts (data-change events), authenticated by the
  ``zuora_sync_webhook`` connection (HMAC-SHA256 signature or Basic auth), stored once each in the
  state store (:mod:`zuora_sync.webapp.callouts`);
- ``GET /zuora-sync/status``, ``GET``/``PUT /zuora-sync/settings``: behind the Airflow login and
  the user's Airflow permissions (:mod:`zuora_sync.webapp.app`, :mod:`zuora_sync.webapp.access`);
- ``GET /zuora-sync/ui/``: the Zuora Sync page, which the Airflow UI shows under "Zuora Sync" in its
  navigation (:data:`EXTERNAL_VIEW`), and its data endpoints (:mod:`zuora_sync.webapp.page`).

The plugin mounts :data:`asgi_app`, a stand-in that imports the real FastAPI app on its first
request. Airflow imports every plugin module in every task process (for macros), and the app pulls
in FastAPI and Airflow's API security module (about a second): tasks should not pay for a web app
they never serve. This module therefore imports nothing heavy.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

#: Where the plugin mounts the app on the Airflow API server.
URL_PREFIX = "/zuora-sync"
#: The page's path in the app.
PAGE_PATH = "/ui/"
#: The plugin's ``external_views`` entry: "Zuora Sync", a top-level entry of the Airflow UI's
#: navigation, showing the page (in an iframe) at ``/plugin/zuora-sync``. ``href`` and ``icon``
#: are relative, so they resolve against the UI's base URL (a deployment under a path prefix too).
EXTERNAL_VIEW = {
    "name": "Zuora Sync",
    "href": URL_PREFIX.strip("/") + PAGE_PATH,
    "url_route": "zuora-sync",
    "destination": "nav",
    "nav_top_level": True,
    "icon": URL_PREFIX.strip("/") + PAGE_PATH + "assets/icon.svg",
}


class LazyASGIApp:
    """An ASGI app that imports ``module:attribute`` on its first call and hands every call to it.

    :param target: ``"package.module:attribute"`` naming an ASGI application.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self._app: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LazyASGIApp({self.target!r})"

    def load(self) -> Any:
        """The real app (imported once, thread-safely)."""
        if self._app is None:
            with self._lock:
                if self._app is None:
                    module, _, attribute = self.target.partition(":")
                    self._app = getattr(importlib.import_module(module), attribute)
        return self._app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.load()(scope, receive, send)


#: What the plugin mounts: :data:`zuora_sync.webapp.app.app`, imported when first needed.
asgi_app = LazyASGIApp("zuora_sync.webapp.app:app")

__all__ = ["EXTERNAL_VIEW", "PAGE_PATH", "URL_PREFIX", "LazyASGIApp", "asgi_app"]
