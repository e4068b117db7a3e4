"""The tenant's OAuth client and bearer tokens (``POST /oauth/token``, client credentials).

Zuora issues a bearer token for an OAuth client's id and secret; the token lasts about an hour
(``expires_in``) and every API call carries it. A missing, unknown or expired token gets HTTP 401
``{"message": "Authentication error"}``, which clients answer by fetching a new token.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sandbox.zuora.store import TenantStore

DEFAULT_TOKEN_SECONDS = 3599


@dataclass
class TenantConfig:
    """The tenant's identity and its one OAuth client; generated once, kept in the data dir."""

    tenant_id: str
    entity_id: str
    user_id: str
    client_id: str
    client_secret: str
    token_seconds: int = DEFAULT_TOKEN_SECONDS

    @classmethod
    def load_or_create(cls, store: TenantStore, **overrides: Any) -> "TenantConfig":
        stored = store.get_setting("tenant")
        if stored is None:
            stored = {
                "tenant_id": str(10000 + secrets.randbelow(90000)),
                "entity_id": uuid.uuid4().hex,
                "user_id": uuid.uuid4().hex,
                "client_id": str(uuid.uuid4()),  # Zuora client ids are 36-character UUIDs
                "client_secret": secrets.token_urlsafe(30)[:40],
            }
        stored.update({key: value for key, value in overrides.items() if value is not None})
        config = cls(**stored)
        store.set_setting("tenant", asdict(config))
        return config

    def scope(self) -> str:
        return (f"entity.{self.entity_id} platform.write service.events.read service.events.write "
                f"service.usage.delete service.usage.update service.usage.write tenant.{self.tenant_id} "
                f"user.{self.user_id}")


class AuthFailed(Exception):
    """Token request refused."""


class Tokens:
    """Issued bearer tokens with their expiry, kept in the store across restarts."""

    def __init__(self, store: TenantStore, config: TenantConfig):
        self.store = store
        self.config = config
        self._lock = threading.Lock()
        self._live = dict(store.conn().execute("SELECT token, expires FROM _oauth_tokens WHERE expires > ?",
                                               (time.time(),)).fetchall())

    def issue(self, client_id: str, client_secret: str, grant_type: str) -> dict[str, Any]:
        """A token response for valid client credentials, else :class:`AuthFailed`."""
        if grant_type != "client_credentials":
            raise AuthFailed(f"Unsupported grant type: {grant_type}")
        good_id = hmac.compare_digest(client_id.encode(), self.config.client_id.encode())
        good_secret = hmac.compare_digest(client_secret.encode(), self.config.client_secret.encode())
        if not (good_id and good_secret):
            raise AuthFailed("Invalid client id or client secret")
        token = uuid.uuid4().hex
        expires = time.time() + self.config.token_seconds
        with self.store.write() as conn:
            conn.execute("DELETE FROM _oauth_tokens WHERE expires < ?", (time.time(),))
            conn.execute("INSERT INTO _oauth_tokens(token, client_id, expires) VALUES (?, ?, ?)",
                         (token, client_id, expires))
        with self._lock:
            self._live[token] = expires
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.config.token_seconds,
            "scope": self.config.scope(),
            "jti": uuid.uuid4().hex,
        }

    def valid(self, token: str) -> bool:
        expires = self._live.get(token)
        return expires is not None and expires > time.time()

    def expire_all(self) -> int:
        """End every token now (what an expired token looks like to a client)."""
        with self.store.write() as conn:
            count = conn.execute("UPDATE _oauth_tokens SET expires = 0 WHERE expires > 0").rowcount
        with self._lock:
            self._live.clear()
        return count
