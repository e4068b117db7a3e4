"""The sync's web app as the Airflow API server runs it, in a subprocess: for the web app's and
the page's tests.

``uvicorn zuora_sync.webapp.app:app`` with ``_AIRFLOW_PROCESS_CONTEXT=server`` and an Airflow home
of its own (a migrated metadata database, the SimpleAuthManager with one user of each of its roles
(:data:`USERS`: ``admin``, ``op``, ``user``, ``viewer``), a known ``[api_auth] jwt_secret``), its
state store an SQLite file (or any SQLAlchemy URL) the test reads and fills through ``StateStore``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from conftest import ROOT, free_port

JWT_SECRET = "jwt-secret-for-the-webapp-tests-" + "p" * 48   # >= 64 bytes: no PyJWT key-length warning
ADMIN_PASSWORD = "admin-pass-for-tests"
#: The SimpleAuthManager's users: name → (role, password); one of each of its roles.
USERS = {
    "admin": ("admin", ADMIN_PASSWORD),
    "op": ("op", "op-pass-for-tests"),
    "user": ("user", "user-pass-for-tests"),
    "viewer": ("viewer", "viewer-pass-for-tests"),
}


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an Airflow API server process (none of the test runner's AIRFLOW_* vars)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "_AIRFLOW_PROCESS_CONTEXT"}
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({name: password for name, (_, password) in USERS.items()}))
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{name}:{role}" for name, (role, _) in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "_AIRFLOW_PROCESS_CONTEXT": "server",  # what airflow.api_fastapi.main sets in the API server
        **extra,
    })
    return env


def airflow_python(env: dict[str, str], code: str, timeout: float = 180) -> str:
    """Run Python in an Airflow process with ``env``; returns its last stdout line."""
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def migrate_airflow_home(home: Path) -> None:
    (home / "dags").mkdir(parents=True, exist_ok=True)
    result = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
                            env=airflow_env(home), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def make_token(home: Path) -> str:
    """An Airflow JWT for ``admin``, signed by Airflow's own auth manager."""
    return make_tokens(home)["admin"]


def make_tokens(home: Path) -> dict[str, str]:
    """An Airflow JWT for each of :data:`USERS`, from the SimpleAuthManager's own login (name,
    password and role checked against its configuration, as ``POST /auth/token`` does)."""
    logins = {name: password for name, (_, password) in USERS.items()}
    return json.loads(airflow_python(airflow_env(home), (
        "import json\n"
        "from airflow.api_fastapi.app import create_auth_manager\n"
        "from airflow.api_fastapi.auth.managers.simple.datamodels.login import LoginBody\n"
        "from airflow.api_fastapi.auth.managers.simple.services.login import SimpleAuthManagerLogin\n"
        "create_auth_manager()\n"
        f"logins = {logins!r}\n"
        "print(json.dumps({name: SimpleAuthManagerLogin.create_token(LoginBody(username=name, password=password))\n"
        "                  for name, password in logins.items()}))\n")))


@dataclass
class WebApp:
    process: subprocess.Popen
    port: int
    log_path: Path
    state_url: str
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        return f"{self.url}/events"

    @property
    def state_db(self) -> Path:
        """The SQLite file of the state store (an SQLite store only)."""
        assert self.state_url.startswith("sqlite:///"), self.state_url
        return Path(self.state_url[len("sqlite:///"):])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_webapp(directory: Path, home: Path, state_url: str | None = None, *,
                 webhook: dict[str, Any] | None = None, **extra_env: str) -> WebApp:
    """``uvicorn zuora_sync.webapp.app:app`` on a free port; its state store at ``state_url`` (a
    SQLAlchemy URL), by default an SQLite file in ``directory``; ``webhook``: the
    ``zuora_sync_webhook`` connection (an environment variable), none by default."""
    directory.mkdir(parents=True, exist_ok=True)
    state_url = state_url or f"sqlite:///{directory / 'state.db'}"
    connection = {"conn_type": "generic", "extra": {"sqlalchemy_url": state_url}}
    env = airflow_env(home, AIRFLOW_CONN_ZUORA_SYNC_STATE=json.dumps(connection), **extra_env)
    if webhook is not None:
        env["AIRFLOW_CONN_ZUORA_SYNC_WEBHOOK"] = json.dumps(webhook)
    port = free_port()
    log_path = directory / "webapp.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "zuora_sync.webapp.app:app", "--host", "127.0.0.1", "--port", str(port),
             "--no-access-log"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    app = WebApp(process, port, log_path, state_url, env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the web app exited with {process.returncode}: {app.log()[-3000:]}")
        try:
            if requests.get(f"{app.url}/openapi.json", timeout=2).ok:
                return app
        except requests.RequestException:
            pass
        time.sleep(0.1)
    app.stop()
    raise RuntimeError(f"the web app did not start: {app.log()[-3000:]}")
