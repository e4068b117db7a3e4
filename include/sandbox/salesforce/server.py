"""Start the Salesforce sandbox: check the port and data dir, prepare the org, serve HTTPS."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sandbox.salesforce.app import create_app
from sandbox.salesforce.org import Org
from sandbox.salesforce.schema import SchemaError
from sandbox.serving import (
    EXIT_DATA_DIR_UNUSABLE,
    DataDirLock,
    StartupError,
    bind_socket,
    run_server,
    write_env_file,
)
from sandbox.tls import ensure_tls


def connection_env(org: Org, host: str, port: int, bundle: Path) -> dict[str, str]:
    """The environment that points Airflow (and any requests-based client) at this sandbox."""
    advertised = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    address = f"{advertised}:{port}"
    connection = {
        "conn_type": "salesforce",
        "login": org.config.username,
        "password": org.config.password,
        "extra": {
            "security_token": org.config.security_token,
            # simple-salesforce logs in at https://{domain}.salesforce.com/services/...; the sandbox
            # answers https://host:port/login.salesforce.com/services/... as a login URL.
            "domain": f"{address}/login",
            # The sandbox finishes a small Bulk job in milliseconds: poll it sooner than an org.
            "poll_interval": 0.05,
        },
    }
    return {
        "REQUESTS_CA_BUNDLE": str(bundle.resolve()),
        "AIRFLOW_CONN_SALESFORCE_DEFAULT": json.dumps(connection, separators=(",", ":")),
        "SALESFORCE_SANDBOX_URL": f"https://{address}",
        "SALESFORCE_SANDBOX_CONSUMER_KEY": org.config.consumer_key,
        "SALESFORCE_SANDBOX_CONSUMER_SECRET": org.config.consumer_secret,
    }


def serve(
    *, host: str, port: int, data_dir: Path, username: str | None, password: str | None,
    security_token: str | None, accounts: int | None, seed: int, env_file: Path | None,
    schema_files: list[Path], log_level: str,
) -> None:
    """Run the sandbox in the foreground; raises :class:`StartupError` when it cannot start."""
    sock = bind_socket(host, port)
    lock = DataDirLock(data_dir)
    lock.acquire()
    try:
        org = Org(data_dir, username=username, password=password, security_token=security_token,
                  schema_files=schema_files)
    except sqlite3.DatabaseError as exc:
        raise StartupError(
            f"data dir {data_dir} holds a database the sandbox cannot use ({exc}); "
            "move it away or choose another --data-dir",
            EXIT_DATA_DIR_UNUSABLE,
        ) from None
    except SchemaError as exc:
        raise StartupError(f"schema: {exc}", 2) from None
    if accounts:
        org.seed_accounts(accounts, seed)
    tls = ensure_tls(Path(data_dir) / "tls", host)
    if env_file is not None:
        try:
            write_env_file(
                env_file, connection_env(org, host, port, tls.bundle),
                f"Salesforce sandbox (data dir {Path(data_dir).resolve()}); written by zuora-sync-sandbox",
            )
        except OSError as exc:
            # A bad --env-file is a bad argument: one line and exit 2, not a traceback.
            raise StartupError(
                f"cannot write env file {env_file}: {exc.strerror or exc}; choose another --env-file", 2
            ) from None
    advertised = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    run_server(
        create_app(org), sock, ssl_certfile=tls.server_cert, ssl_keyfile=tls.server_key,
        ready_message=f"Salesforce sandbox ready at https://{advertised}:{port} (data dir {data_dir})",
        log_level=log_level,
    )
    org.store.close()
