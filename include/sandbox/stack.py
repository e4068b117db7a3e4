"""The local stack behind ``make up`` / ``make down``: both sandboxes and ``airflow standalone``.

``python -m sandbox.stack up`` starts the Salesforce sandbox, a Zuora sandbox with a generated
demo tenant (the same ``--accounts``/``--seed``, so CRM Ids match) and a mail catcher
(:mod:`sandbox.mail`: SMTP on ``--mail-port``, its messages on a page at ``--mail-web-port``),
writes Airflow's connections to point at them (``smtp_default`` at the mail catcher), starts ``airflow standalone`` with the project's DAGs and plugin, waits until the
DAGs are loaded and prints the UI address and login. Every process runs in the background with a
pid file and a log under ``--dir``; ``down`` stops them. ``<dir>/airflow.env`` holds the
environment for running ``airflow`` commands against this stack.

Everything listens on 127.0.0.1 unless asked otherwise: Airflow's API server (the UI, the REST API
and the sync's web app) with ``--airflow-host`` (``make up AIRFLOW_HOST=0.0.0.0`` for every
interface), the sandboxes and the mail catcher always. ``--dir`` is made ``0700``: it holds the webhook secret, the
admin password and Airflow's database with the connections.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from sandbox.private import make_private_dir

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("salesforce", "zuora", "mail", "airflow")
#: Seconds ``down`` lets a service's processes end after SIGTERM before it kills them.
STOP_GRACE_SECONDS = 60
#: Where Airflow's API server listens unless ``--airflow-host`` says otherwise: this machine only.
DEFAULT_AIRFLOW_HOST = "127.0.0.1"


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, raw = line.partition("=")
            values[key] = shlex.split(raw)[0] if raw else ""
    return values


def _start(name: str, command: list[str], directory: Path, env: dict[str, str] | None = None) -> int:
    log = open(directory / f"{name}.log", "ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                               start_new_session=True)
    (directory / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def _running(directory: Path, name: str) -> int | None:
    pid_file = directory / f"{name}.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    try:  # a child that exited but was not reaped yet (a zombie) is not running
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None
    except (OSError, IndexError):
        pass
    return pid


def _alive(directory: Path, name: str, pid: int) -> bool:
    """Whether the service ``name`` (pid ``pid``) or any process it started is still running."""
    return _running(directory, name) is not None or _group_running(pid)


def _gone_within(directory: Path, name: str, pid: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for the service and its processes to end; whether they did."""
    deadline = time.monotonic() + seconds
    while _alive(directory, name, pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def _group_running(pgid: int) -> bool:
    """Whether any process of the group ``pgid`` (a service and its children) is alive.

    ``airflow standalone``'s scheduler can outlive it: it once hung in its graceful shutdown,
    waiting on its executor's workers, after standalone had exited, and kept running."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():  # no /proc (macOS): ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
        except OSError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if state != "Z" and int(group) == pgid:  # a zombie is no longer running
            return True
    return False


def _wait(description: str, check, timeout: float, directory: Path, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _running(directory, name) is None:
            raise SystemExit(f"error: {description} stopped while starting; see {directory / (name + '.log')}")
        try:
            if check():
                return
        except (requests.RequestException, OSError, KeyError, ValueError):
            pass
        time.sleep(1)
    raise SystemExit(f"error: {description} did not come up within {timeout:.0f} s; see {directory / (name + '.log')}")


def reachable_host(host: str) -> str:
    """The address to call a server listening on ``host`` at (``0.0.0.0`` and ``::`` are every interface)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def airflow_env(directory: Path, port: int, sf_env: dict[str, str], zuora_env: dict[str, str],
                host: str = DEFAULT_AIRFLOW_HOST, *, worker_log_port: int = 8793,
                trigger_log_port: int = 8794) -> dict[str, str]:
    """The environment of ``airflow standalone``: its API server listens on ``host``:``port``, the
    scheduler's and the triggerer's task-log servers on ``worker_log_port`` and ``trigger_log_port``."""
    home = directory / "airflow"
    base = f"http://{reachable_host(host)}:{port}"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__API__HOST": host,  # Airflow's own default is 0.0.0.0: every interface
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # Airflow's fixed defaults (8793, 8794): a second stack on the machine needs others.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_log_port),
        # How long a task's supervisor may block between looks at its task process (and its least
        # time between heartbeats; Airflow's default is 5 s). When the task process closes its
        # sockets a moment before it exits, the supervisor notices the exit only when that wait ends,
        # and the LocalExecutor slot stays taken until then: about a third of the tasks held their
        # slot 5 s after they had finished, and with 4 slots the next task of a real-time session
        # queued behind them (docs/benchmarks.md, "Real-time sync: latency"). 1 s bounds that.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        # How long the scheduler sleeps after a loop that found nothing to do (Airflow's default 1 s):
        # each step of a real-time session (trigger fired → begin_session → preflight → extract →
        # load) waits for its next loop. 0.25 s takes about 0.4 s off each such hop, at 7 % of one
        # core when idle instead of 2 % (measured, docs/benchmarks.md).
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
        # The connection form's Test button (off by default in Airflow): a local stack's admin may use it.
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "REQUESTS_CA_BUNDLE": sf_env["REQUESTS_CA_BUNDLE"],
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }


def _secret_file(path: Path) -> str:
    """A random secret kept in ``path`` (made once, readable by its owner only)."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _add_connections(env: dict[str, str], sf_env: dict[str, str], zuora_env: dict[str, str], log: Path,
                     webhook_secret: str, mail_env: dict[str, str]) -> None:
    """Connections in Airflow's database, so they show (and can be edited) in the UI."""
    webhook = json.dumps({"conn_type": "generic", "description": "Zuora callouts to /zuora-sync/events",
                          "extra": {"hmac_secret": webhook_secret, "signature_header": "X-Zuora-Signature"}})
    for conn_id, value in (("salesforce_default", sf_env["AIRFLOW_CONN_SALESFORCE_DEFAULT"]),
                           ("zuora_default", zuora_env["AIRFLOW_CONN_ZUORA_DEFAULT"]),
                           ("zuora_sync_webhook", webhook),
                           ("smtp_default", mail_env["AIRFLOW_CONN_SMTP_DEFAULT"])):
        with open(log, "ab") as out:
            subprocess.run([_bin("airflow"), "connections", "delete", conn_id], env=env, stdout=out, stderr=out)
            subprocess.run([_bin("airflow"), "connections", "add", conn_id, "--conn-json", value], env=env,
                           stdout=out, stderr=out, check=True)


def up(args: argparse.Namespace) -> None:
    directory = Path(args.dir).resolve()
    make_private_dir(directory)
    if any(_running(directory, name) for name in SERVICES):
        raise SystemExit(f"error: the stack in {directory} is already running; run `make down` first")
    print(f"Starting the Salesforce sandbox on https://127.0.0.1:{args.sf_port} ...", flush=True)
    _start("salesforce", [_bin("zuora-sync-sandbox"), "salesforce", "--port", str(args.sf_port), "--data-dir",
                          str(directory / "salesforce"), "--accounts", str(args.accounts), "--seed", str(args.seed),
                          "--env-file", str(directory / "salesforce.env")], directory)
    print(f"Starting the Zuora sandbox on http://127.0.0.1:{args.zuora_port} with a generated tenant of "
          f"{args.accounts} accounts ...", flush=True)
    # Its callouts go to the sync's web app on the Airflow API server, signed with the secret that
    # the zuora_sync_webhook connection holds (real-time sync).
    webhook_secret = _secret_file(directory / "webhook.secret")
    base = f"http://{reachable_host(args.airflow_host)}:{args.airflow_port}"
    _start("zuora", [_bin("zuora-sync-sandbox"), "zuora", "--port", str(args.zuora_port), "--data-dir",
                     str(directory / "zuora"), "--accounts", str(args.accounts), "--seed", str(args.seed),
                     "--callout-url", f"{base}/zuora-sync/events",
                     f"--callout-secret={webhook_secret}",  # "=": a secret may begin with "-"
                     "--env-file", str(directory / "zuora.env")], directory)
    print(f"Starting the mail catcher: SMTP on 127.0.0.1:{args.mail_port}, messages at "
          f"http://127.0.0.1:{args.mail_web_port} ...", flush=True)
    _start("mail", [_bin("zuora-sync-sandbox"), "mail", "--port", str(args.mail_port), "--web-port",
                    str(args.mail_web_port), "--data-dir", str(directory / "mail"), "--env-file",
                    str(directory / "mail.env")], directory)
    sf_env_file, zuora_env_file, mail_env_file = directory / "salesforce.env", directory / "zuora.env", directory / "mail.env"
    _wait("the Salesforce sandbox", lambda: requests.get(
        f"{_read_env(sf_env_file)['SALESFORCE_SANDBOX_URL']}/health",
        verify=_read_env(sf_env_file)["REQUESTS_CA_BUNDLE"], timeout=2).ok, 120, directory, "salesforce")
    _wait("the Zuora sandbox", lambda: requests.get(
        f"{_read_env(zuora_env_file)['ZUORA_SANDBOX_URL']}/health", timeout=2).ok, 900, directory, "zuora")
    _wait("the mail catcher", lambda: requests.get(f"{_read_env(mail_env_file)['MAIL_CATCHER_URL']}health",
                                                   timeout=2).ok, 60, directory, "mail")
    sf_env, zuora_env, mail_env = _read_env(sf_env_file), _read_env(zuora_env_file), _read_env(mail_env_file)
    env_values = airflow_env(directory, args.airflow_port, sf_env, zuora_env, args.airflow_host,
                             worker_log_port=args.worker_log_port, trigger_log_port=args.trigger_log_port)
    home = Path(env_values["AIRFLOW_HOME"])
    make_private_dir(home)  # airflow.db holds the connections, airflow.cfg the key that decrypts them
    passwords = home / "passwords.json"
    if not passwords.exists():
        passwords.write_text(json.dumps({"admin": secrets.token_urlsafe(12)}))
        passwords.chmod(0o600)
    # Only this stack's Airflow settings: inherited ones (a test runner's unit-test mode, another
    # AIRFLOW_HOME) would break the standalone processes.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}, **env_values}
    lines = [f"{key}={shlex.quote(value)}" for key, value in env_values.items() if key != "PATH"]
    (directory / "airflow.env").write_text("# source this to run `airflow` against the local stack\n"
                                           + "\n".join(lines) + "\n")
    print("Preparing Airflow (database, connections) ...", flush=True)
    with open(directory / "airflow.log", "ab") as out:
        subprocess.run([_bin("airflow"), "db", "migrate"], env=env, stdout=out, stderr=out, check=True)
    _add_connections(env, sf_env, zuora_env, directory / "airflow.log", webhook_secret, mail_env)
    print(f"Starting Airflow (standalone), listening on {args.airflow_host} port {args.airflow_port} ...", flush=True)
    _start("airflow", [_bin("airflow"), "standalone"], directory, env)
    password = json.loads(passwords.read_text())["admin"]

    expected = {path.stem for path in (ROOT / "dags").glob("*.py")}  # one DAG a file, named as its file

    def dags_loaded() -> bool:
        """Every DAG of dags/ is in Airflow (not only the first parsed: a user may open any of them);
        an import error stops the wait with Airflow's own words."""
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=5)
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        errors = requests.get(f"{base}/api/v2/importErrors", headers=headers, timeout=5).json()
        if errors.get("total_entries"):
            raise SystemExit("error: a DAG file does not import: " + "; ".join(
                f"{e['filename']}: {e['stack_trace'].strip().splitlines()[-1]}" for e in errors["import_errors"]))
        dags = requests.get(f"{base}/api/v2/dags", params={"limit": 100, "paused": None}, headers=headers, timeout=5)
        return expected <= {d["dag_id"] for d in dags.json()["dags"]}

    _wait("Airflow", dags_loaded, 600, directory, "airflow")
    print(f"""
The stack is up.
  Airflow UI       {base}   (login: admin / {password})
  Zuora Sync page  {base}/plugin/zuora-sync   (status, sync history, rejected records, settings)
  Salesforce       {sf_env['SALESFORCE_SANDBOX_URL']}   (env: {sf_env_file})
  Zuora            {zuora_env['ZUORA_SANDBOX_URL']}   (env: {zuora_env_file})
  Mail catcher     {mail_env['MAIL_CATCHER_URL']}   (session emails; smtp_default points here)
Zuora callouts go to {base}/zuora-sync/events (signed; the zuora_sync_webhook connection).
Trigger a full sync: in the UI, open zuora_full_sync and press Trigger; or
  set -a; source {directory / 'airflow.env'}; set +a
  {_bin('airflow')} dags unpause zuora_full_sync && {_bin('airflow')} dags trigger zuora_full_sync
Stop everything: make down
""", flush=True)


def down(args: argparse.Namespace) -> None:
    """Stop every service with every process it started (its process group): SIGTERM, then
    SIGKILL to whatever is left after ``STOP_GRACE_SECONDS``."""
    directory = Path(args.dir).resolve()
    stopped = []
    for name in reversed(SERVICES):
        pid_file = directory / f"{name}.pid"
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        if pid is None or not _alive(directory, name, pid):
            pid_file.unlink(missing_ok=True)
            continue
        # Each service leads its own process group (``_start``): stop the whole group, children too.
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        if not _gone_within(directory, name, pid, STOP_GRACE_SECONDS):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            _gone_within(directory, name, pid, 10)
        pid_file.unlink(missing_ok=True)
        stopped.append(name)
    print("Stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


def build_parser() -> argparse.ArgumentParser:
    """``up`` and ``down`` with their options."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.stack", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="start both sandboxes and airflow standalone")
    start.add_argument("--dir", default=".sandbox", help="where data, logs and pid files go (default .sandbox)")
    start.add_argument("--accounts", type=int, default=200, help="demo tenant size (default 200)")
    start.add_argument("--seed", type=int, default=1)
    start.add_argument("--airflow-port", type=int, default=8080)
    start.add_argument("--airflow-host", default=DEFAULT_AIRFLOW_HOST,
                       help="where Airflow's API server listens (default 127.0.0.1: this machine only; "
                            "0.0.0.0: every interface)")
    start.add_argument("--sf-port", type=int, default=8443)
    start.add_argument("--zuora-port", type=int, default=8081)
    start.add_argument("--mail-port", type=int, default=1025, help="the mail catcher's SMTP port (default 1025)")
    start.add_argument("--mail-web-port", type=int, default=8025,
                       help="the port of the mail catcher's page with the messages (default 8025)")
    start.add_argument("--worker-log-port", type=int, default=8793,
                       help="the port of the scheduler's task-log server (Airflow's worker_log_server_port, "
                            "default 8793)")
    start.add_argument("--trigger-log-port", type=int, default=8794,
                       help="the port of the triggerer's log server (Airflow's trigger_log_server_port, "
                            "default 8794)")
    stop = commands.add_parser("down", help="stop what `up` started")
    stop.add_argument("--dir", default=".sandbox")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "down":
        down(args)
        return
    try:
        up(args)
    except BaseException:
        print("Starting failed; stopping what was started.", file=sys.stderr, flush=True)
        down(args)
        raise


if __name__ == "__main__":
    main()
