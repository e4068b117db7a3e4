"""One sandbox org: its data dir, schema, store, credentials, API usage, faults and DML engine.

Everything a request handler needs hangs off :class:`Org`, built once when the server starts. The
data dir holds the SQLite database, Bulk job files, the TLS material and the schema additions, so
stopping and starting the sandbox keeps the org as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sandbox.crm_accounts import crm_account_id, crm_account_name, crm_account_number
from sandbox.private import make_private_dir
from sandbox.salesforce.auth import ORG_NAME, OrgConfig, Sessions
from sandbox.salesforce.dml import DmlEngine
from sandbox.salesforce.faults import Faults
from sandbox.salesforce.limits import ApiUsage
from sandbox.salesforce.schema import (
    Schema,
    build_schema,
    builtin_schema_document,
    merge_documents,
    read_schema_file,
)
from sandbox.salesforce.store import Store, quote
from sandbox.salesforce.values import now_stored

API_VERSIONS = ("52.0", "55.0", "57.0", "58.0", "59.0", "60.0", "61.0", "62.0")
SCHEMA_EXTRA_FILE = "schema-extra.yaml"


class Org:
    """The sandbox org behind one server process."""

    def __init__(
        self,
        data_dir: Path,
        *,
        username: str | None = None,
        password: str | None = None,
        security_token: str | None = None,
        schema_files: list[Path] | None = None,
    ):
        self.data_dir = Path(data_dir)
        make_private_dir(self.data_dir)
        self.bulk_dir = self.data_dir / "bulk"
        self.bulk_dir.mkdir(exist_ok=True, mode=0o700)
        self._schema_files = list(schema_files or [])
        self.schema = self._load_schema()
        self.store = Store(self.data_dir / "org.sqlite3", self.schema)
        self.config = OrgConfig.load_or_create(
            self.store, username=username, password=password, security_token=security_token
        )
        self.sessions = Sessions(self.store, self.config)
        self.usage = ApiUsage(self.data_dir / "api-usage.json", self.config.daily_api_requests)
        self.faults = Faults()
        self.engine = DmlEngine(self.store, self.faults.check_record)
        self._ensure_user()
        self._ensure_organization()

    # -- schema ------------------------------------------------------------------------------

    def _load_schema(self) -> Schema:
        document = builtin_schema_document()
        extra = self.data_dir / SCHEMA_EXTRA_FILE
        sources = ([extra] if extra.exists() else []) + self._schema_files
        for path in sources:
            document = merge_documents(document, read_schema_file(path))
        return build_schema(document, source=", ".join(str(p) for p in sources) or "schema.yaml")

    def add_schema(self, addition: dict[str, Any]) -> Schema:
        """Add objects or fields (admin API); kept in the data dir so they outlive a restart."""
        extra_path = self.data_dir / SCHEMA_EXTRA_FILE
        extra = read_schema_file(extra_path) if extra_path.exists() else {"objects": {}}
        merged_extra = merge_documents(extra, addition)
        document = builtin_schema_document()
        for path in [None] + self._schema_files:
            document = merge_documents(document, merged_extra if path is None else read_schema_file(path))
        schema = build_schema(document, source="admin schema addition")
        extra_path.write_text(yaml.safe_dump(merged_extra, sort_keys=False), encoding="utf-8")
        self.schema = schema
        self.store.schema = schema
        self.engine.schema = schema
        self.store.sync_tables()
        return schema

    # -- seed data ---------------------------------------------------------------------------

    def _ensure_user(self) -> None:
        now = now_stored()
        with self.store.write() as conn:
            conn.execute(
                'INSERT INTO "User" (Id, IsDeleted, Username, Name, Email, IsActive, CreatedDate, CreatedById, '
                "LastModifiedDate, LastModifiedById, SystemModstamp) VALUES (?, 0, ?, 'Sandbox Admin', ?, 1, ?, ?, ?, ?, ?) "
                "ON CONFLICT(Id) DO UPDATE SET Username = excluded.Username, Email = excluded.Email",
                (self.config.user_id, self.config.username, self.config.username, now,
                 self.config.user_id, now, self.config.user_id, now),
            )

    def _ensure_organization(self) -> None:
        """The one Organization record: the org id every login and the identity URL hand out."""
        now, user = now_stored(), self.config.user_id
        with self.store.write() as conn:
            conn.execute(
                'INSERT INTO "Organization" (Id, IsDeleted, Name, OrganizationType, InstanceName, IsSandbox, '
                "DefaultLocaleSidKey, LanguageLocaleKey, TimeZoneSidKey, CreatedDate, CreatedById, LastModifiedDate, "
                "LastModifiedById, SystemModstamp) VALUES (?, 0, ?, 'Developer Edition', 'LOCAL', 1, 'en_US', 'en_US', "
                "'GMT', ?, ?, ?, ?, ?) ON CONFLICT(Id) DO NOTHING",
                (self.config.org_id, ORG_NAME, now, user, now, user, now),
            )

    def seed_accounts(self, count: int, seed: int) -> int:
        """Create the standard Accounts a Zuora tenant of this size and seed uses as CRM Ids.

        Idempotent: Accounts that already exist are left alone. Returns how many were created.
        """
        now = now_stored()
        user = self.config.user_id
        created = 0
        batch = 50_000
        with self.store.write() as conn:
            for start in range(0, count, batch):
                rows = [
                    (crm_account_id(seed, i), crm_account_name(seed, i), crm_account_number(seed, i),
                     "Customer - Direct", user, now, user, now, user, now)
                    for i in range(start, min(count, start + batch))
                ]
                cursor = conn.executemany(
                    f"INSERT OR IGNORE INTO {quote('Account')} (Id, Name, AccountNumber, Type, OwnerId, IsDeleted, "
                    "CreatedDate, CreatedById, LastModifiedDate, LastModifiedById, SystemModstamp) "
                    "VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
                    rows,
                )
                created += cursor.rowcount
        return created

    def reset(self) -> None:
        """Remove every record, Bulk job and cursor; keep the schema, credentials, the user and the org."""
        with self.store.write() as conn:
            for name in self.schema.objects:
                if name not in ("User", "Organization"):
                    conn.execute(f"DELETE FROM {quote(name)}")
            for table in ("_bulk_jobs", "_bulk_batches", "_query_cursors", "_cursor_rows"):
                conn.execute(f"DELETE FROM {table}")
