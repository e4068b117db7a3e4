"""One sandbox tenant: its data dir, schema, store, OAuth client and faults.

Everything a request handler or background worker needs hangs off :class:`Tenant`, built once when
the server starts. Feature modules (Data Query, ZOQL, actions, callouts) keep their own state on it.
"""

from __future__ import annotations

from pathlib import Path

from sandbox.private import make_private_dir
from sandbox.request_faults import RequestFaults
from sandbox.zuora.auth import TenantConfig, Tokens
from sandbox.zuora.schema import TenantSchema, load_schema
from sandbox.zuora.store import TenantStore

# Zuora's own answers to a rate limit, a concurrency limit and an expired token (reference §2.6).
FAULT_PRESETS = {
    "rate_limit": {"status": 429, "error_code": 70, "retry_after": 60,
                   "message": "API Rate limit exceeded for the minute, retry after 60 seconds"},
    "concurrency_limit": {"status": 429, "error_code": 50000070, "retry_after": 120,
                          "message": "The number of concurrent requests exceeds the limit"},
    "token_expiry": {"status": 401, "error_code": 90000011, "message": "Authentication error"},
}


class Tenant:
    """The sandbox tenant behind one server process."""

    def __init__(self, data_dir: Path, *, client_id: str | None = None, client_secret: str | None = None,
                 callout_url: str | None = None, callout_secret: str | None = None):
        self.data_dir = Path(data_dir)
        make_private_dir(self.data_dir)
        self.files_dir = self.data_dir / "files"
        self.files_dir.mkdir(exist_ok=True, mode=0o700)
        self.schema: TenantSchema = load_schema()
        self.store = TenantStore(self.data_dir / "tenant.sqlite3", self.schema)
        self.config = TenantConfig.load_or_create(self.store, client_id=client_id, client_secret=client_secret)
        self.tokens = Tokens(self.store, self.config)
        self.faults = RequestFaults(FAULT_PRESETS)
        self.callout_url = callout_url
        self.callout_secret = callout_secret
