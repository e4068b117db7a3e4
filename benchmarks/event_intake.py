"""Callout intake rate: signed Zuora callouts accepted per second on loopback (SPEC §10: ≥ 500/s).

    python -m benchmarks.event_intake --callouts 5000
    python -m benchmarks.event_intake --callouts 5000 --airflow   # through Airflow's API app and the plugin

Starts the web app under uvicorn in a subprocess (one worker, an SQLite state store in a temporary
directory; with ``--airflow``, Airflow's whole API app with a migrated metadata database, the
plugin mounting the web app at ``/zuora-sync``), then sends N distinct signed callouts from a pool
of client threads, each with its own keep-alive session. Bodies and signatures are made before the
clock starts. It then sends every callout again (Zuora's retries) and checks the state store: each
notification id stored exactly once, none lost, none double-counted. Prints a Markdown row for
docs/benchmarks.md. The clients share the machine's cores with the server, so the figure is a
lower bound of what the server alone sustains.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import free_port  # noqa: E402  (the same helper the tests use)

SECRET = "benchmark-webhook-secret"


def _env(work: Path, airflow: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "_AIRFLOW_PROCESS_CONTEXT"}
    env.update({
        "AIRFLOW_HOME": str(work / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(work / "dags"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "benchmark-jwt-secret-" + "x" * 48,
        "_AIRFLOW_PROCESS_CONTEXT": "server",
        "AIRFLOW_CONN_ZUORA_SYNC_WEBHOOK": json.dumps({"conn_type": "http", "extra": {"hmac_secret": SECRET}}),
        "AIRFLOW_CONN_ZUORA_SYNC_STATE": json.dumps({"conn_type": "sqlite", "host": str(work / "state.db")}),
    })
    if airflow:
        env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"  # no access-log line per callout on the console
    return env


def start_server(work: Path, airflow: bool) -> tuple[subprocess.Popen, str]:
    """The app (or Airflow's API app with the plugin) under uvicorn; returns it and the events URL."""
    (work / "dags").mkdir(parents=True, exist_ok=True)
    env = _env(work, airflow)
    port = free_port()
    if airflow:
        subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target, prefix = ["--factory", "airflow.api_fastapi.app:create_app"], "/zuora-sync"
    else:
        target, prefix = ["zuora_sync.webapp.app:app"], ""
    log = open(work / "server.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", *target, "--host", "127.0.0.1", "--port", str(port),
                                "--no-access-log", "--log-level", "warning"],
                               stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}{prefix}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {(work / 'server.log').read_text()[-3000:]}")
        try:
            if requests.get(f"{base}/openapi.json", timeout=2).ok:
                return process, f"{base}/events"
        except requests.RequestException:
            pass
        time.sleep(0.2)
    process.terminate()
    raise SystemExit("the server did not start")


def prepare(count: int) -> list[tuple[str, bytes, dict[str, str]]]:
    run = uuid.uuid4().hex[:8]
    prepared = []
    for i in range(count):
        notification_id = f"{run}-{i:07d}"
        body = json.dumps({"notificationId": notification_id, "tenantId": "12345", "eventType": "AccountUpdated",
                           "eventCategory": "Account", "baseObject": "Account", "changeType": "UPDATE",
                           "objectId": f"{i:032x}", "eventTimestamp": "2025-01-31T10:00:00Z"},
                          separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Zuora-Notification-Id": notification_id,
                   "Zuora-Request-Id": str(uuid.uuid4()),
                   "X-Zuora-Signature": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}
        prepared.append((notification_id, body, headers))
    return prepared


def send_all(url: str, prepared: list[tuple[str, bytes, dict[str, str]]], clients: int) -> tuple[float, Counter]:
    """POST every callout from ``clients`` threads; returns the seconds taken and the answers' statuses.

    Each thread keeps one ``http.client`` keep-alive connection: a lighter client than requests,
    so less of the two cores goes to the load generator and more to the server measured.
    """
    target = urlsplit(url)
    local = threading.local()

    def send(item: tuple[str, bytes, dict[str, str]]) -> int:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        conn.request("POST", target.path, body=item[1], headers=item[2])
        response = conn.getresponse()
        response.read()
        return response.status

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        codes = Counter(pool.map(send, prepared))
    return time.perf_counter() - started, codes


def run(count: int, clients: int, airflow: bool, work: Path) -> dict[str, float]:
    process, url = start_server(work, airflow)
    try:
        send_all(url, prepare(50), clients)  # warm-up: migrations, first imports, connections
        prepared = prepare(count)
        seconds, codes = send_all(url, prepared, clients)
        replay_seconds, replay_codes = send_all(url, prepared, clients)
    finally:
        process.terminate()
        process.wait(timeout=30)
    wanted = {notification_id for notification_id, _, _ in prepared}
    with sqlite3.connect(work / "state.db") as conn:
        rows = Counter(n for (n,) in conn.execute("SELECT notification_id FROM zuora_sync_event"))
    stored = {n for n in rows if n in wanted}
    return {
        "callouts": count, "clients": clients, "seconds": seconds, "rate": count / seconds,
        "accepted": codes.get(202, 0), "other_answers": sum(v for k, v in codes.items() if k != 202),
        "replay_rate": count / replay_seconds, "duplicates": replay_codes.get(200, 0),
        "lost": len(wanted - stored), "double": sum(1 for n in stored if rows[n] > 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callouts", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads (default 16)")
    parser.add_argument("--airflow", action="store_true",
                        help="serve Airflow's API app with the plugin instead of the web app alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="event-intake-") as tmp:
        m = run(args.callouts, args.clients, args.airflow, Path(tmp))
    served = "Airflow API app + plugin" if args.airflow else "web app alone"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"uvicorn, 1 worker, SQLite state store; {served}")
    print("| served by | callouts | clients | seconds | accepted callouts/s | accepted | replayed: duplicate answers "
          "| replay callouts/s | lost | double-counted |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {served} | {m['callouts']:,} | {m['clients']} | {m['seconds']:.1f} | {m['rate']:,.0f} | {m['accepted']:,} "
          f"| {m['duplicates']:,} | {m['replay_rate']:,.0f} | {m['lost']} | {m['double']} |")
    if m["accepted"] != m["callouts"] or m["duplicates"] != m["callouts"] or m["lost"] or m["double"]:
        raise SystemExit(f"wrong result: {m}")


if __name__ == "__main__":
    main()
