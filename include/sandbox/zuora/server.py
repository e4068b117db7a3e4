"""Start the Zuora sandbox: check the port and data dir, generate the tenant once, serve HTTP."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from sandbox.serving import (
    EXIT_DATA_DIR_UNUSABLE,
    DataDirLock,
    StartupError,
    bind_socket,
    run_server,
    write_env_file,
)
from sandbox.zuora.app import create_app
from sandbox.zuora.tenant import Tenant

EXIT_BAD_ARGUMENTS = 2


def connection_env(tenant: Tenant, host: str, port: int) -> dict[str, str]:
    """The environment that points Airflow's ``zuora_default`` connection at this sandbox."""
    advertised = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{advertised}:{port}"
    # A local tenant finishes a small Data Query job in milliseconds: poll it sooner than a real one.
    connection = {"conn_type": "zuora", "host": url, "login": tenant.config.client_id,
                  "password": tenant.config.client_secret, "extra": {"poll_interval": 0.05}}
    return {
        "AIRFLOW_CONN_ZUORA_DEFAULT": json.dumps(connection, separators=(",", ":")),
        "ZUORA_SANDBOX_URL": url,
    }


def ensure_generated(tenant: Tenant, accounts: int | None, seed: int) -> None:
    """Generate the tenant on first start; later starts must ask for the same one (or none)."""
    generated = tenant.store.get_setting("generated")
    if accounts is None:
        return
    wanted = {"accounts": accounts, "seed": seed}
    if generated is not None:
        if generated != wanted:
            raise StartupError(
                f"data dir {tenant.data_dir} already holds a tenant generated with --accounts "
                f"{generated['accounts']} --seed {generated['seed']}; use those values or another --data-dir",
                EXIT_BAD_ARGUMENTS,
            )
        return
    from sandbox.zuora.generator import generate_tenant

    generate_tenant(tenant, accounts=accounts, seed=seed)
    tenant.store.set_setting("generated", wanted)


def serve(*, host: str, port: int, data_dir: Path, client_id: str | None, client_secret: str | None,
          accounts: int | None, seed: int, callout_url: str | None, callout_secret: str | None,
          env_file: Path | None, log_level: str) -> None:
    """Run the sandbox in the foreground; raises :class:`StartupError` when it cannot start."""
    sock = bind_socket(host, port)
    DataDirLock(data_dir).acquire()
    try:
        tenant = Tenant(data_dir, client_id=client_id, client_secret=client_secret,
                        callout_url=callout_url, callout_secret=callout_secret)
    except sqlite3.DatabaseError as exc:
        raise StartupError(
            f"data dir {data_dir} holds a database the sandbox cannot use ({exc}); "
            "move it away or choose another --data-dir",
            EXIT_DATA_DIR_UNUSABLE,
        ) from None
    ensure_generated(tenant, accounts, seed)
    tenant.store.create_indexes()
    if env_file is not None:
        try:
            write_env_file(env_file, connection_env(tenant, host, port),
                           f"Zuora sandbox (data dir {Path(data_dir).resolve()}); written by zuora-sync-sandbox")
        except OSError as exc:
            raise StartupError(f"cannot write the env file {env_file}: {exc.strerror or exc}", EXIT_BAD_ARGUMENTS) from None
    advertised = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    run_server(create_app(tenant), sock, ssl_certfile=None, ssl_keyfile=None,
               ready_message=f"Zuora sandbox ready at http://{advertised}:{port} (data dir {data_dir})",
               log_level=log_level)
    tenant.store.close()
