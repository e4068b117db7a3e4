"""Speed of the Zuora sandbox's tenant generator: N accounts into a fresh data dir.

    python -m benchmarks.zuora_generate --accounts 100000

Generates the tenant the way the server does on first start (``generate_tenant``, then
``create_indexes``) in a temporary data dir, and prints a Markdown table row for
docs/benchmarks.md: accounts, records per object, seconds (generation, indexes), rows/s and the
database size. Every volume benchmark of the sync starts from such a tenant, so this bounds how
quickly one can be set up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

from sandbox.zuora.generator import generate_tenant
from sandbox.zuora.tenant import Tenant

# Column order of the table; the short names keep the row readable.
OBJECTS = (("Account", "Account"), ("Contact", "Contact"), ("Subscription", "Subscription"),
           ("RatePlan", "RatePlan"), ("RatePlanCharge", "RatePlanCharge"), ("Invoice", "Invoice"),
           ("Payment", "Payment"), ("InvoicePayment", "InvoicePayment"),
           ("Product", "Product"), ("ProductRatePlan", "PRP"), ("ProductRatePlanCharge", "PRPC"),
           ("ProductRatePlanChargeTier", "PRPC tier"))


def run(accounts: int, seed: int, work: Path) -> dict:
    tenant = Tenant(work / "tenant")
    try:
        started = time.perf_counter()
        generate_tenant(tenant, accounts=accounts, seed=seed)
        generate_seconds = time.perf_counter() - started
        started = time.perf_counter()
        tenant.store.create_indexes()
        index_seconds = time.perf_counter() - started
    finally:
        tenant.store.close()
    db = work / "tenant" / "tenant.sqlite3"
    with sqlite3.connect(db) as conn:
        counts = {name: conn.execute(f"SELECT COUNT(*) FROM {name.lower()}").fetchone()[0] for name, _ in OBJECTS}
    return {"accounts": accounts, "counts": counts, "rows": sum(counts.values()), "generate_s": generate_seconds,
            "index_s": index_seconds, "db_mb": db.stat().st_size / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, help="where to make the temporary data dir (default: the system's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zuora-generate-", dir=args.dir) as tmp:
        m = run(args.accounts, args.seed, Path(tmp))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| date | accounts | " + " | ".join(short for _, short in OBJECTS)
          + " | rows | generate s | rows/s | indexes s | DB MB |")
    print("|---" * (len(OBJECTS) + 7) + "|")
    print(f"| {dt.date.today().isoformat()} | {m['accounts']:,} | "
          + " | ".join(f"{m['counts'][name]:,}" for name, _ in OBJECTS)
          + f" | {m['rows']:,} | {m['generate_s']:.1f} | {m['rows'] / m['generate_s']:,.0f} | {m['index_s']:.1f} "
            f"| {m['db_mb']:,.0f} |")


if __name__ == "__main__":
    main()
