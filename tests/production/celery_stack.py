"""docker-compose.yaml's production shape, run as local processes (no container engine needed).

:class:`CeleryStack` starts what ``docker compose --profile sandbox up`` starts, from the same
packages (Debian's PostgreSQL and Redis, the project's pinned PyPI dependencies), each service a
process in its own process group with its own working directory:

- ``postgres`` (a private cluster; the ``airflow`` role and database as the image makes them,
  password required over TCP) and ``redis``;
- ``salesforce-sandbox`` and ``zuora-sandbox`` with the compose file's command lines;
- ``airflow-init``: what the image's entrypoint does for ``_AIRFLOW_DB_MIGRATE`` and
  ``_AIRFLOW_WWW_USER_CREATE``, then the Python script from the compose file, verbatim;
- ``airflow-apiserver``, ``airflow-scheduler``, ``airflow-dag-processor``, ``airflow-triggerer``
  and N ``airflow-worker`` (``--scale airflow-worker=N``), then ``sandbox-connections``' script;
- an S3-compatible server (moto's, from PyPI) for ``s3://`` staging, which the compose file leaves
  to the operator.

**One source of truth.** Every Airflow process gets the ``environment`` of its service in the
compose file, interpolated with a ``.env`` written here (random secrets, ``COMPOSE_PROFILES=sandbox``
and ``REQUESTS_CA_BUNDLE`` as docs/deployment.md tells a user). What a container would give and a
local process must be told is changed in one place, :meth:`CeleryStack.localize`: service
addresses (``postgres:5432`` → ``127.0.0.1:<port>``) and container paths (a named volume's mount
point → a directory standing for that volume, shared by every process that mounts it; the image's
``/opt/airflow/dags`` → this checkout's ``dags/``). Each process also gets the container facts of
:meth:`CeleryStack.container_env` (its ``AIRFLOW_HOME``, ``HOSTNAME``, the ports it listens on)
and the test's own settings, :data:`TEST_SETTINGS`, each with its reason. Nothing else differs.

Services are "healthy" when the compose file's own healthcheck command passes (localized).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
for _path in (str(TESTS), str(TESTS / "sync")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from compose_file import load  # noqa: E402
from conftest import SalesforceSandbox, ZuoraSandbox, free_port, read_env_file  # noqa: E402
from postgres_server import PostgresServer  # noqa: E402

BIN = Path(sys.executable).parent

#: The Airflow services started once each (the worker is scaled), with their command in the file.
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
WORKER = "airflow-worker"
#: Where the image has the project's DAGs and plugin (Dockerfile ``COPY``), and this checkout has them.
IMAGE_PATHS = {"/opt/airflow/dags": ROOT / "dags", "/opt/airflow/plugins": ROOT / "plugins"}
#: The image's AIRFLOW_HOME: task logs go to ``$AIRFLOW_HOME/logs`` (the ``airflow-logs`` volume there).
IMAGE_AIRFLOW_HOME = "/opt/airflow"
#: Where the image's entrypoint creates the admin user from (its defaults for what the file leaves out).
ENTRYPOINT_USER = {"--firstname": "Airflow", "--lastname": "Admin", "--email": "airflowadmin@example.com",
                   "--role": "Admin"}
#: Settings this test changes, and why. Everything else is the compose file's.
TEST_SETTINGS = {
    # A worker killed mid-task: its task instance is failed after 30 s without a heartbeat (Airflow's
    # default is 300 s) and retried at most 5 s later, not after the DAGs' retry_delay of 1 minute,
    # doubling with each try (max_task_retry_delay caps that backoff).
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__CORE__MAX_TASK_RETRY_DELAY": "5",
    # Two cores: two task slots per worker (Celery's default is 16). Two slots each also make a
    # run's parallel extracts use both workers.
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
}
#: The services' addresses in the compose network (host:port as the file writes them).
ADDRESSES = {"postgres": 5432, "redis": 6379, "airflow-apiserver": 8080, "salesforce-sandbox": 8443,
             "zuora-sandbox": 8081}
#: Options that point these images' healthcheck clients at the local server (in the container they
#: reach it at the default socket or port); put right after the program's name.
HEALTHCHECK_ARGS = {"postgres": lambda s: ["-h", "127.0.0.1", "-p", str(s.ports["postgres"])],
                    "redis": lambda s: ["-p", str(s.ports["redis"])]}
#: The admin user that the API client logs in as (the .env's ``_AIRFLOW_WWW_USER_USERNAME``).
ADMIN = "admin"
S3_BUCKET = "zuora-sync-staging"
#: The moto server's made-up credentials (it accepts any); in the ``aws_default`` connection.
S3_KEY_ID, S3_SECRET = "zuora-sync-test", "zuora-sync-test-secret"


@dataclass
class Service:
    """One running service: a process group with its own working directory and log."""

    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    process: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.cwd / "service.log"

    def start(self) -> Service:
        self.cwd.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.command, env=self.env, cwd=self.cwd, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pids(self) -> set[int]:
        """The service's process and every descendant (a child that left the process group too)."""
        import psutil

        if self.process is None:
            return set()
        try:
            root = psutil.Process(self.process.pid)
            return {root.pid, *(child.pid for child in root.children(recursive=True))}
        except psutil.NoSuchProcess:
            return set()

    def kill(self, sig: int = signal.SIGKILL) -> set[int]:
        """Send ``sig`` to the whole process group and to every descendant; the pids signalled."""
        pids = self.pids()
        if self.process is not None:
            try:
                os.killpg(self.process.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        return pids

    def stop(self, grace: float = 15) -> set[int]:
        """SIGTERM to the group, then SIGKILL for whatever is left after ``grace`` seconds; the pids
        of the service's tree still alive after that (none, unless something went wrong)."""
        if self.process is None:
            return set()
        pids = self.pids()
        self.kill(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (self.process.poll() is None or _alive(pids)):
            time.sleep(0.2)
        self.kill(signal.SIGKILL)
        for pid in pids:  # the survivors of SIGTERM, children that left the group included
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.2)
        return {pid for pid in pids if _alive({pid})}

    def tail(self, chars: int = 3000) -> str:
        try:
            return f"--- {self.name} ({self.log}) ---\n" + self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return f"--- {self.name}: no log ---"


def _alive(pids: set[int]) -> bool:
    import psutil

    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            pass
    return False


class StackError(RuntimeError):
    """The stack did not come up; the message has the tails of the services' logs."""


@dataclass
class CeleryStack:
    """The compose file's services as local processes under ``base``.

    :param workers: how many ``airflow-worker`` (``--scale airflow-worker=N``).
    :param accounts: the sandboxes' tenant size (``SANDBOX_ACCOUNTS``).
    :param overrides: settings on top of :data:`TEST_SETTINGS` (the benchmark's worker concurrency).
    """

    base: Path
    workers: int = 2
    accounts: int = 2000
    overrides: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    dotenv: dict[str, str] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    postgres: PostgresServer | None = None
    salesforce: SalesforceSandbox | None = None
    zuora: ZuoraSandbox | None = None
    _airflow: Any = None

    # -- the compose file, localized -----------------------------------------------------------------

    def __post_init__(self) -> None:
        self.base = Path(self.base).resolve()
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o700)  # the .env's secrets, the databases, the sandboxes' credentials
        names = ["postgres", "redis", "airflow-apiserver", "salesforce-sandbox", "zuora-sandbox", "s3", "mail-smtp",
                 "mail-web",
                 "scheduler-health", "trigger-log"] + [f"worker-log-{n}" for n in range(1, self.workers + 1)]
        used: set[int] = set()
        for name in names:
            port = free_port()
            while port in used:
                port = free_port()
            used.add(port)
            self.ports[name] = port
        self.dotenv = self._write_dotenv()
        self.compose = load(self.dotenv)
        self.volumes = self._volumes()

    def _write_dotenv(self) -> dict[str, str]:
        """The ``.env`` a user writes next to the compose file (docs/deployment.md), with fresh secrets."""
        from cryptography.fernet import Fernet

        values = {
            "POSTGRES_PASSWORD": secrets.token_hex(24),
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
            "_AIRFLOW_WWW_USER_USERNAME": ADMIN,
            # Not beginning with "-": the image's entrypoint passes it to `airflow users create --password`
            # as an argument of its own, and argparse takes "-..." for an option (docs/deployment.md).
            "_AIRFLOW_WWW_USER_PASSWORD": "pw" + secrets.token_urlsafe(16),
            "ZUORA_CALLOUT_SECRET": secrets.token_urlsafe(24),
            "COMPOSE_PROFILES": "sandbox",
            "REQUESTS_CA_BUNDLE": "/opt/sandbox/salesforce/tls/ca-bundle.pem",
            "SANDBOX_ACCOUNTS": str(self.accounts),
        }
        path = self.base / ".env"
        path.write_text("".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items()))
        path.chmod(0o600)
        return values

    def _volumes(self) -> dict[str, Path]:
        """Container path → the local directory standing for the named volume mounted there."""
        mounts: dict[str, Path] = {}
        for service in self.compose["services"].values():
            for volume in service.get("volumes", []):
                source, target = str(volume).split(":")[:2]
                if source in self.compose["volumes"]:
                    mounts[target] = self.base / "volumes" / source
        for directory in mounts.values():
            directory.mkdir(parents=True, exist_ok=True)
        return mounts

    def localize(self, text: str) -> str:
        """``text`` from the compose file as a local process needs it: service addresses and
        container paths replaced (the only differences between a container and a process here)."""
        for service, port in ADDRESSES.items():
            text = re.sub(rf"(?<![\w.-]){re.escape(service)}:{port}(?!\d)", f"127.0.0.1:{self.ports[service]}", text)
        # The healthchecks reach their own container as localhost.
        text = re.sub(r"(?<![\w.-])localhost:8080(?!\d)", f"127.0.0.1:{self.ports['airflow-apiserver']}", text)
        text = re.sub(r"(?<![\w.-])localhost:8974(?!\d)", f"127.0.0.1:{self.ports['scheduler-health']}", text)
        paths = {**{k: str(v) for k, v in IMAGE_PATHS.items()}, **{k: str(v) for k, v in self.volumes.items()}}
        for container in sorted(paths, key=len, reverse=True):
            text = re.sub(rf"{re.escape(container)}(?![\w.-])", paths[container], text)
        return text

    def service_environment(self, service: str) -> dict[str, str]:
        """The service's ``environment`` from the compose file, localized; a variable without a value
        is passed through from the .env only when it is set there (as Compose does)."""
        env = {}
        for key, value in (self.compose["services"][service].get("environment") or {}).items():
            if value is None:
                value = self.dotenv.get(key)
                if value is None:
                    continue
            env[key] = self.localize(str(value))
        return env

    def container_env(self, hostname: str, home: Path, listen: dict[str, str] | None = None) -> dict[str, str]:
        """What the container itself gives a process: its hostname, the image's AIRFLOW_HOME (one of
        its own per process here, with task logs on the ``airflow-logs`` volume as in the image), the
        ports it listens on (each container has its own network), and PATH with the image's tools."""
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW", "_AIRFLOW", "PYTEST")) and k not in ("REQUESTS_CA_BUNDLE", "HOSTNAME")}
        env.update({
            "HOSTNAME": hostname,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "container_hostname.hostname",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": self.localize(f"{IMAGE_AIRFLOW_HOME}/logs"),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(HERE),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(listen or {})
        return env

    def airflow_env(self, service: str, hostname: str, listen: dict[str, str] | None = None) -> dict[str, str]:
        home = self.base / "containers" / hostname
        home.mkdir(parents=True, exist_ok=True)
        return {**self.container_env(hostname, home, listen), **self.service_environment(service), **TEST_SETTINGS,
                **self.overrides}

    def listen_env(self, service: str, index: int = 0) -> dict[str, str]:
        """The ports a service's process listens on, which a container would have to itself."""
        if service == "airflow-apiserver":
            return {"AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(self.ports["airflow-apiserver"])}
        if service == "airflow-scheduler":
            return {"AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
                    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(self.ports["scheduler-health"])}
        if service == "airflow-triggerer":
            return {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.ports["trigger-log"])}
        if service == WORKER:
            return {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.ports[f"worker-log-{index}"])}
        return {}

    def command(self, service: str) -> list[str]:
        """The service's ``command`` as the image runs it (its entrypoint puts ``airflow`` in front)."""
        command = self.compose["services"][service]["command"]
        words = command.split() if isinstance(command, str) else list(command)
        return [str(BIN / "airflow"), *words]

    # -- starting and stopping -------------------------------------------------------------------------

    def start(self) -> CeleryStack:
        try:
            self._start()
        except Exception as exc:
            tails = self.tails()
            self.stop()
            raise StackError(f"the stack did not come up: {exc}\n{tails}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def mark(self, what: str) -> None:
        """Note in ``<base>/timings.log`` how long after the start ``what`` happened (for the docs' figures)."""
        if not hasattr(self, "_started"):
            self._started = time.monotonic()
        with open(self.base / "timings.log", "a") as log:
            log.write(f"{time.monotonic() - self._started:7.1f} s  {what}\n")

    def _start(self) -> None:
        self.mark("starting")
        postgres_env = self.service_environment("postgres")
        self.postgres = PostgresServer(self.ports["postgres"], host_auth="scram-sha-256").start()
        self.postgres.create_role(postgres_env["POSTGRES_USER"], postgres_env["POSTGRES_PASSWORD"],
                                  postgres_env["POSTGRES_DB"])
        self._spawn("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(self.ports["redis"]), "--save", "",
                              "--appendonly", "no", "--dir", str(self.base / "containers" / "redis")])
        self._spawn("s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.ports["s3"])])
        for sandbox in ("salesforce-sandbox", "zuora-sandbox"):
            self._spawn(sandbox, self._sandbox_command(sandbox))
        # The compose file's sandbox profile's mail catcher: sandbox-connections reads its env file.
        self._spawn("mail-sandbox", [str(BIN / "zuora-sync-sandbox"), "mail", "--host", "127.0.0.1", "--port",
                                     str(self.ports["mail-smtp"]), "--web-port", str(self.ports["mail-web"]),
                                     "--data-dir", self.localize("/opt/sandbox/mail"),
                                     "--env-file", self.localize("/opt/sandbox/mail.env")])
        with ThreadPoolExecutor(4) as pool:
            redis = pool.submit(self.wait_healthy, "redis", 60)
            pg = pool.submit(self.wait_healthy, "postgres", 60)
            redis.result(), pg.result()
            self.mark("postgres and redis healthy")
            self.airflow_init()
            self.mark("airflow-init done")
            for service in AIRFLOW_SERVICES:
                self._spawn(service, self.command(service),
                            env=self.airflow_env(service, service, self.listen_env(service)))
            for index in range(1, self.workers + 1):
                self.start_worker(index)
            sandboxes = [pool.submit(self.wait_healthy, s, 600) for s in ("salesforce-sandbox", "zuora-sandbox")]
            for future in sandboxes:
                future.result()
            self.wait_for("the mail catcher's env file", lambda: Path(self.localize("/opt/sandbox/mail.env")).exists(), 120)
            connections = pool.submit(self.sandbox_connections)
            checks = [pool.submit(self.wait_healthy, service, 300) for service in AIRFLOW_SERVICES]
            checks += [pool.submit(self.wait_healthy, WORKER, 300, f"{WORKER}-{n}") for n in range(1, self.workers + 1)]
            for future in checks + [connections]:
                future.result()
            self.mark("every service healthy, sandbox-connections done")
        self._sandboxes()
        self._bucket()
        self.wait_for("the DAGs parsed", lambda: self.airflow.call("GET", "/api/v2/dags/zuora_full_sync").ok, 300)
        self.mark("the DAGs parsed: up")

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Service:
        env = env or self.container_env(name, self.base / "containers" / name)
        service = Service(name, command, env, self.base / "containers" / name).start()
        self.services[name] = service
        return service

    def start_worker(self, index: int) -> Service:
        """``airflow-worker`` number ``index`` (again, after it was killed: Compose's ``restart: always``).
        Celery names itself after the container's hostname, as in a container."""
        hostname = f"{WORKER}-{index}"
        command = self.command(WORKER) + ["--celery-hostname", f"celery@{hostname}"]
        return self._spawn(hostname, command, env=self.airflow_env(WORKER, hostname, self.listen_env(WORKER, index)))

    def _sandbox_command(self, service: str) -> list[str]:
        """The sandbox's command line from the compose file, listening on 127.0.0.1 and its own port."""
        words = [self.localize(str(w)) for w in self.compose["services"][service]["command"]]
        for index, word in enumerate(words[:-1]):
            if word == "--host":
                words[index + 1] = "127.0.0.1"
            elif word == "--port":
                words[index + 1] = str(self.ports[service])
        return [str(BIN / words[0]), *words[1:]]

    def airflow_init(self) -> None:
        """``airflow-init``: the image's entrypoint (``_AIRFLOW_DB_MIGRATE``, ``_AIRFLOW_WWW_USER_CREATE``),
        then the compose file's Python script, fed to ``python -`` as its heredoc does. (The rest of
        its shell script checks Docker's resources and hands the volumes to AIRFLOW_UID: container matters.)"""
        env = self.airflow_env("airflow-init", "airflow-init")
        cwd = self.base / "containers" / "airflow-init"
        steps = []
        if env.get("_AIRFLOW_DB_MIGRATE") == "true":
            steps.append(([str(BIN / "airflow"), "db", "migrate"], None))
        if env.get("_AIRFLOW_WWW_USER_CREATE") == "true":
            user = ["--username", env["_AIRFLOW_WWW_USER_USERNAME"], "--password", env["_AIRFLOW_WWW_USER_PASSWORD"]]
            steps.append(([str(BIN / "airflow"), "users", "create", *user,
                           *(word for pair in ENTRYPOINT_USER.items() for word in pair)], None))
        steps.append(([sys.executable, "-"], self.init_script()))
        with open(cwd / "service.log", "ab") as out:
            for command, stdin in steps:
                shown = command[:3] if "users" in command else command
                out.write(f"$ {' '.join(shown)}\n".encode())
                out.flush()
                result = subprocess.run(command, env=env, cwd=cwd, input=stdin.encode() if stdin else None,
                                        stdout=out, stderr=subprocess.STDOUT, timeout=600)
                if result.returncode != 0:
                    raise StackError(f"airflow-init: {' '.join(shown)} exited {result.returncode}")

    def init_script(self) -> str:
        """The Python that ``airflow-init`` runs (its heredoc), localized."""
        command = "\n".join(str(w) for w in self.compose["services"]["airflow-init"]["command"])
        found = re.search(r"<<'PYTHON'\n(.*?)\n\s*PYTHON\s*$", command, re.S | re.M)
        assert found, "airflow-init's command has no <<'PYTHON' ... PYTHON heredoc"
        return self.localize(found.group(1))

    def sandbox_connections(self) -> None:
        """``sandbox-connections``: its shell script from the compose file (``airflow connections``)."""
        script = "\n".join(str(w) for w in self.compose["services"]["sandbox-connections"]["command"][2:])
        env = self.airflow_env("sandbox-connections", "sandbox-connections")
        cwd = self.base / "containers" / "sandbox-connections"
        with open(cwd / "service.log", "ab") as out:
            result = subprocess.run(["bash", "-c", self.localize(script)], env=env, cwd=cwd, stdout=out,
                                    stderr=subprocess.STDOUT, timeout=600)
        if result.returncode != 0:
            raise StackError(f"sandbox-connections exited {result.returncode}")

    def healthcheck(self, service: str, hostname: str | None = None) -> subprocess.CompletedProcess:
        """The compose file's healthcheck of ``service``, run against its local process."""
        kind, *words = self.compose["services"][service]["healthcheck"]["test"]
        words = [self.localize(str(w)) for w in words]
        if kind == "CMD-SHELL":
            command = ["bash", "-c", words[0]]
        else:
            command = [words[0], *HEALTHCHECK_ARGS.get(service, lambda s: [])(self), *words[1:]]
        hostname = hostname or service
        env = (self.airflow_env(service, hostname) if service.startswith("airflow")
               else self.container_env(hostname, self.base / "containers" / hostname))
        try:
            return subprocess.run(command, env=env, cwd=self.base / "containers" / hostname, capture_output=True,
                                  text=True, timeout=120)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(command, -1, "", f"timed out: {exc}")

    def wait_healthy(self, service: str, timeout: float, hostname: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        name = hostname or service
        result = None
        while time.monotonic() < deadline:
            running = self.services.get(name)
            if running is not None and not running.running:
                raise StackError(f"{name} exited with {running.process.returncode}")
            result = self.healthcheck(service, hostname)
            if result.returncode == 0:
                return
            time.sleep(2)
        output = (result.stdout + result.stderr)[-1000:] if result else ""
        raise StackError(f"{name} not healthy within {timeout:.0f} s: {output}")

    def _sandboxes(self) -> None:
        """Clients of both sandboxes, from the env files they wrote (what sandbox-connections read)."""
        sf_dir = Path(self.localize("/opt/sandbox/salesforce"))
        sf_env = read_env_file(Path(self.localize("/opt/sandbox/salesforce.env")))
        login = json.loads(sf_env["AIRFLOW_CONN_SALESFORCE_DEFAULT"])
        self.salesforce = SalesforceSandbox(
            self.services["salesforce-sandbox"].process, self.ports["salesforce-sandbox"], sf_dir,
            Path(self.localize("/opt/sandbox/salesforce.env")), login["login"], login["password"],
            login["extra"]["security_token"], sf_env)
        zuora_env_file = Path(self.localize("/opt/sandbox/zuora.env"))
        self.zuora = ZuoraSandbox(self.services["zuora-sandbox"].process, self.ports["zuora-sandbox"],
                                  Path(self.localize("/opt/sandbox/zuora")), zuora_env_file,
                                  read_env_file(zuora_env_file))

    def _bucket(self) -> None:
        self.s3().create_bucket(Bucket=S3_BUCKET)
        # Versioned: a removed file leaves its versions, so a test can tell what was staged there.
        self.s3().put_bucket_versioning(Bucket=S3_BUCKET, VersioningConfiguration={"Status": "Enabled"})

    def stop(self) -> dict[str, set[int]]:
        """Stop every service (Airflow first, the databases last), whatever state they are in; the
        pids that survived that, by service (none, unless something went wrong)."""
        if self.zuora is not None:
            self.zuora.stop_sdk_clients()
        airflow = [name for name in self.services if name.startswith("airflow")]
        others = [name for name in self.services if name not in airflow]
        left: dict[str, set[int]] = {}
        for names in (airflow, others):
            if names:
                with ThreadPoolExecutor(len(names)) as pool:
                    for name, pids in zip(names, pool.map(lambda name: self.services[name].stop(), names)):
                        if pids:
                            left[name] = pids
        if self.postgres is not None:
            try:
                self.postgres.stop()
            finally:
                self.postgres = None
        return left

    # -- using it ---------------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['airflow-apiserver']}"

    @property
    def airflow(self):
        """Airflow's REST API and the sync's web app, logged in as the admin (the FAB auth manager's token)."""
        if self._airflow is None:
            from stack.standalone import Airflow

            self._airflow = Airflow(self.api_url, self.dotenv["_AIRFLOW_WWW_USER_PASSWORD"])
        return self._airflow

    def worker_names(self) -> list[str]:
        return [name for name in self.services if name.startswith(f"{WORKER}-")]

    def kill_worker(self, name: str) -> set[int]:
        """SIGKILL the worker's whole process tree at once (its Celery pool, the task supervisors and
        tasks, its log server): as if its machine died."""
        pids = self.services[name].kill(signal.SIGKILL)
        self.services[name].process.wait(timeout=30)
        return pids

    def state_store(self):
        from sqlalchemy.engine import make_url
        from zuora_sync.state import StateStore, url_from_connection
        from airflow.models import Connection

        value = self.service_environment(WORKER)["AIRFLOW_CONN_ZUORA_SYNC_STATE"]
        url = url_from_connection(Connection.from_json(value, conn_id="zuora_sync_state"))
        return StateStore(make_url(url).render_as_string(hide_password=False))

    def s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.ports['s3']}", region_name="us-east-1",
                            aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)

    def aws_connection(self) -> dict:
        """``aws_default`` as an operator adds it for ``s3://`` staging: the bucket's endpoint and keys."""
        return {"connection_id": "aws_default", "conn_type": "aws", "login": S3_KEY_ID, "password": S3_SECRET,
                "extra": json.dumps({"endpoint_url": f"http://127.0.0.1:{self.ports['s3']}",
                                     "region_name": "us-east-1"})}

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float, every: float = 2) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = check()
            except Exception:  # noqa: BLE001 - a service still starting
                value = None
            if value:
                return value
            time.sleep(every)
        raise StackError(f"{what} did not happen within {timeout:.0f} s\n{self.tails()}")

    def secrets(self) -> dict[str, str]:
        """Every secret the stack holds: none may appear in a log."""
        values = {key: value for key, value in self.dotenv.items()
                  if re.search(r"PASSWORD|SECRET|FERNET|_KEY$", key)}
        if self.salesforce is not None:
            values.update({"salesforce password": self.salesforce.password,
                           "salesforce security token": self.salesforce.security_token})
        if self.zuora is not None:
            values["zuora client secret"] = self.zuora.client_secret
        values["s3 secret"] = S3_SECRET
        return values

    def log_files(self) -> list[Path]:
        """Every log the stack wrote: the services' own and every task's (the airflow-logs volume)."""
        logs = [service.log for service in self.services.values() if service.log.exists()]
        logs += [p for p in (self.base / "containers").glob("*/service.log") if p not in logs]
        logs += [p for p in Path(self.localize(f"{IMAGE_AIRFLOW_HOME}/logs")).rglob("*") if p.is_file()]
        return logs

    def tails(self) -> str:
        return "\n".join(service.tail() for service in self.services.values())


def main(argv: list[str] | None = None) -> None:
    """``python tests/production/celery_stack.py DIR [--workers N] [--accounts N]``: start it, print
    how to reach it, and stop it on Ctrl-C (for trying it by hand)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--accounts", type=int, default=2000)
    args = parser.parse_args(argv)
    stack = CeleryStack(args.dir, workers=args.workers, accounts=args.accounts)
    started = time.monotonic()
    stack.start()
    print(f"Up in {time.monotonic() - started:.0f} s: {stack.api_url} (login {ADMIN}, "
          f"password in {stack.base / '.env'})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
