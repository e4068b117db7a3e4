"""Shared test fixtures: sandboxes started as real server processes on free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]

# `make test` runs the tests on pytest-xdist workers (``-n``): each is a process of its own, named
# by PYTEST_XDIST_WORKER ("gw0", "gw1", ...), with the environment of the pytest that started it.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))

# Airflow reads these at import: keep it off the user's ~/airflow and quiet about test mode.
# A temporary AIRFLOW_HOME of each process: a worker inherits the one its controller made, and two
# workers on one SQLite airflow.db (dag.test() runs) would see "database is locked". An
# AIRFLOW_HOME the user set is kept (and is then shared by the workers).
_MADE_HOME = "ZUORA_SYNC_TESTS_MADE_AIRFLOW_HOME"  # the AIRFLOW_HOME this file made, not the user
if "AIRFLOW_HOME" not in os.environ or os.environ["AIRFLOW_HOME"] == os.environ.get(_MADE_HOME):
    os.environ["AIRFLOW_HOME"] = os.environ[_MADE_HOME] = tempfile.mkdtemp(
        prefix=f"zuora-sync-airflow-{XDIST_WORKER + '-' if XDIST_WORKER else ''}")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))  # dag.test() syncs this bundle
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))


#: Test packages that run as one unit on one worker under ``make test``: their tests share a
#: package-scoped fixture (``tests/stack/``: one ``airflow standalone`` stack, started once).
XDIST_PACKAGES = ("tests/stack/",)


def xdist_unit(nodeid: str) -> str:
    """What ``make test``'s workers are handed at once: a whole test module (its module-scoped
    fixtures start once, its tests run in order in one process, as under plain ``pytest``), or a
    whole package of :data:`XDIST_PACKAGES`."""
    module = nodeid.split("::")[0]
    return next((package for package in XDIST_PACKAGES if module.startswith(package)), module)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope`` (pyproject's addopts) hands out :func:`xdist_unit` units, in the order
    the workers collected them (``--no-loadscope-reorder``; see ``pytest_collection_modifyitems``).

    Not ``--dist loadgroup`` with ``xdist_group`` marks: pytest-xdist 3.8 marks a group by editing
    the test's node id, which pytest 9.2 no longer reads (pytest-xdist issue #1386), so every
    marked test would run wherever it lands."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_unit(nodeid)

    return UnitScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker: units holding a ``slow`` test first (in collection order otherwise), so
    that none of them is left running alone at the end. Plain ``pytest`` keeps collection order."""
    if not XDIST_WORKER:
        return
    slow = {xdist_unit(item.nodeid) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: xdist_unit(item.nodeid) not in slow)  # stable


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A private PostgreSQL server for the run (``tests/postgres_server.py``)."""
    from postgres_server import PostgresServer

    server = PostgresServer(free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def _ephemeral_ports() -> tuple[int, int]:
    """The range the kernel picks a port from for ``bind(port 0)``."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


_EPHEMERAL = _ephemeral_ports()
# A worker that replaces a crashed one gets the next name (gw2 of 2): it takes the crashed one's share.
_XDIST_INDEX = int(XDIST_WORKER[2:]) % XDIST_WORKERS if XDIST_WORKER[2:].isdigit() else 0
_ports_given: set[int] = set()


def _share(port: int) -> int:
    """Which worker's share of the port range ``port`` is in."""
    low, high = _EPHEMERAL
    if not low <= port <= high:
        return port % XDIST_WORKERS
    return min((port - low) * XDIST_WORKERS // (high - low + 1), XDIST_WORKERS - 1)


def free_port() -> int:
    """A port nothing listens on now, for a server a test starts.

    Nothing holds it until that server binds it (seconds later for Airflow), so under xdist each
    worker takes ports from its own share of the range only: the other worker's ``free_port()``
    cannot hand out the same port meanwhile. Nor does a process get the same port twice."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if _share(port) == _XDIST_INDEX and port not in _ports_given:
            _ports_given.add(port)
            return port


def read_env_file(path: Path) -> dict[str, str]:
    """The KEY=value lines of a sandbox env file (values are shell-quoted)."""
    import shlex

    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, raw = line.partition("=")
            values[key] = shlex.split(raw)[0] if raw else ""
    return values


class SandboxProcess:
    """A sandbox server started as a subprocess."""

    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class SalesforceSandbox(SandboxProcess):
    """A running Salesforce sandbox process and what a client needs to reach it."""

    process: subprocess.Popen
    port: int
    data_dir: Path
    env_file: Path
    username: str
    password: str
    security_token: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def domain(self) -> str:
        """The ``domain`` argument that makes simple-salesforce log in here."""
        return f"127.0.0.1:{self.port}/login"

    @property
    def ca_bundle(self) -> str:
        return self.env["REQUESTS_CA_BUNDLE"]

    def admin(self, method: str, path: str, payload: Any = None) -> Any:
        response = requests.request(
            method, f"{self.url}/__admin/{path}", json=payload, verify=self.ca_bundle, timeout=60
        )
        response.raise_for_status()
        return response.json()

    def login(self, **kwargs: Any):
        from simple_salesforce import Salesforce

        return Salesforce(
            username=self.username, password=self.password, security_token=self.security_token,
            domain=self.domain, **kwargs,
        )



def sandbox_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sandbox.cli", *args]


def start_salesforce_sandbox(
    data_dir: Path, *, port: int | None = None, accounts: int = 50, seed: int = 7, extra: list[str] | None = None,
    username: str = "integration@zuora-sync.test", password: str = "s3cret-Pass", security_token: str = "TOKEN123",
) -> SalesforceSandbox:
    port = port or free_port()
    env_file = data_dir.parent / f"{data_dir.name}.env"
    args = [
        "salesforce", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
        "--username", username, "--password", password, "--security-token", security_token,
        "--accounts", str(accounts), "--seed", str(seed), "--env-file", str(env_file), *(extra or []),
    ]
    return launch_salesforce_sandbox(args, data_dir, env_file, port, (username, password, security_token))


def launch_salesforce_sandbox(
    args: list[str], data_dir: Path, env_file: Path, port: int, credentials: tuple[str, str, str] = ("", "", ""),
) -> SalesforceSandbox:
    """Run ``zuora-sync-sandbox`` with exactly ``args`` and wait until it answers ``/health``."""
    process, log_path = _spawn(args, data_dir)
    sandbox = SalesforceSandbox(process, port, data_dir, env_file, *credentials)
    return _wait_healthy(sandbox, log_path, 60, lambda: sandbox.ca_bundle)


def _spawn(args: list[str], data_dir: Path) -> tuple[subprocess.Popen, Path]:
    log_path = data_dir.parent / f"{data_dir.name}.log"
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(sandbox_command(*args), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return process, log_path


def _wait_healthy(sandbox: Any, log_path: Path, timeout: float, verify: Any = lambda: True) -> Any:
    """Wait until the sandbox wrote its env file and answers ``/health``; fail with its log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sandbox.process.poll() is not None:
            raise RuntimeError(f"sandbox exited with {sandbox.process.returncode}: {log_path.read_text()}")
        if sandbox.env_file.exists():
            sandbox.env = read_env_file(sandbox.env_file)
            try:
                if requests.get(f"{sandbox.url}/health", verify=verify(), timeout=2).ok:
                    return sandbox
            except requests.RequestException:
                pass
        time.sleep(0.1)
    sandbox.stop()
    raise RuntimeError(f"the sandbox did not become healthy within {timeout:.0f} s: {log_path.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def salesforce_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SalesforceSandbox]:
    """One Salesforce sandbox for the whole test session (tests use their own external ids)."""
    data_dir = tmp_path_factory.mktemp("salesforce") / "org"
    sandbox = start_salesforce_sandbox(data_dir)
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = sandbox.ca_bundle
    try:
        yield sandbox
    finally:
        sandbox.stop()
        if previous is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = previous


@pytest.fixture
def sf_sandbox(salesforce_sandbox: SalesforceSandbox) -> Iterator[SalesforceSandbox]:
    """The session sandbox, with faults and the API allowance reset after each test."""
    yield salesforce_sandbox
    salesforce_sandbox.admin("DELETE", "faults")
    salesforce_sandbox.admin("POST", "limits", {"daily_api_requests": 100_000, "used": 0})


@pytest.fixture
def sf(sf_sandbox: SalesforceSandbox):
    """A simple-salesforce client logged in to the sandbox with username, password and token."""
    return sf_sandbox.login()


@dataclass
class ZuoraSandbox(SandboxProcess):
    """A running Zuora sandbox process and what a client needs to reach it."""

    process: subprocess.Popen
    port: int
    data_dir: Path
    env_file: Path
    env: dict[str, str] = field(default_factory=dict)
    sdk_clients: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.stop_sdk_clients()
        super().stop()

    def stop_sdk_clients(self) -> None:
        """Stop the token refresh of every client :meth:`sdk_client` made.

        zuora-sdk's client refreshes its token from a daemon thread every 10 minutes; once this
        sandbox is gone that thread would retry against a closed port, sleeping 1 s and 2 s in the
        middle of whatever test runs then. Its ``stop_auto_auth()`` joins the sleeping thread for
        5 s; setting the event is enough: the thread checks it before refreshing."""
        for client in self.sdk_clients:
            client._stop_refresh.set()

    @property
    def connection(self) -> dict:
        import json

        return json.loads(self.env["AIRFLOW_CONN_ZUORA_DEFAULT"])

    @property
    def client_id(self) -> str:
        return self.connection["login"]

    @property
    def client_secret(self) -> str:
        return self.connection["password"]

    def admin(self, method: str, path: str, payload: Any = None) -> Any:
        response = requests.request(method, f"{self.url}/__admin/{path}", json=payload, timeout=60)
        response.raise_for_status()
        return response.json()

    def token(self) -> str:
        response = requests.post(f"{self.url}/oauth/token", timeout=30, data={
            "client_id": self.client_id, "client_secret": self.client_secret, "grant_type": "client_credentials"})
        response.raise_for_status()
        return response.json()["access_token"]

    def sdk_client(self):
        """Zuora's own ``zuora-sdk`` client, authenticated against the sandbox."""
        import zuora_sdk
        from zuora_sdk.zuora_client import ZuoraClient

        client = ZuoraClient(self.client_id, self.client_secret, None, zuora_sdk.Configuration(host=self.url))
        client.initialize()
        self.sdk_clients.append(client)
        return client


def start_zuora_sandbox(
    data_dir: Path, *, port: int | None = None, accounts: int | None = None, seed: int = 7,
    callout_url: str | None = None, callout_secret: str | None = None, extra: list[str] | None = None,
) -> ZuoraSandbox:
    """Start ``zuora-sync-sandbox zuora`` on a free port and wait until it answers ``/health``."""
    port = port or free_port()
    env_file = data_dir.parent / f"{data_dir.name}.env"
    args = ["zuora", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
            "--env-file", str(env_file), "--seed", str(seed)]
    if accounts is not None:
        args += ["--accounts", str(accounts)]
    if callout_url:
        args += ["--callout-url", callout_url]
    if callout_secret:
        args += ["--callout-secret", callout_secret]
    args += extra or []
    process, log_path = _spawn(args, data_dir)
    # Generating a large tenant takes a while.
    return _wait_healthy(ZuoraSandbox(process, port, data_dir, env_file), log_path, 600)


@pytest.fixture
def unique() -> str:
    """A short unique prefix for external ids, so tests sharing a sandbox never collide."""
    import uuid

    return uuid.uuid4().hex[:10]



# Zuora test modules define a module-scoped ``sandbox`` fixture; these build on it.


@pytest.fixture(scope="module")
def sdk(sandbox: ZuoraSandbox):
    """Zuora's ``zuora-sdk`` client, authenticated against the module's Zuora sandbox."""
    return sandbox.sdk_client()


@pytest.fixture(scope="module")
def auth(sandbox: ZuoraSandbox) -> dict[str, str]:
    """A bearer-token header for raw HTTP calls to the module's Zuora sandbox."""
    return {"Authorization": f"Bearer {sandbox.token()}"}
