"""Static checks of docker-compose.yaml, Dockerfile and .dockerignore (SPEC §12).

No Docker engine runs where these tests run, so nothing here starts a container. What can be
checked without one is checked against the project's own code: the YAML parses and names every
service the SPEC asks for; the Airflow services share one image and one environment; URLs,
ports, volumes, healthchecks and ``depends_on`` agree with each other; secrets are placeholders
read from the environment; every connection given as an environment variable is one Airflow
accepts; the state store's connection gives a PostgreSQL URL through ``url_from_connection``; the
sandboxes' command lines parse with the sandbox CLI's own parser; the image installs the project
and the Airflow version pinned in pyproject.toml. ``docker compose config`` runs too where the
CLI is installed (skipped otherwise).

Compose's variable interpolation is reproduced here (``$$``, ``${VAR}``, ``${VAR:-default}``,
``${VAR-default}``), so values are checked as Compose would hand them to the containers, both
with every default and with variables set.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import yaml

from compose_file import COMPOSE_FILE, interpolate, load

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"

CORE = {"postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
        "airflow-triggerer", "airflow-init"}
SANDBOX = {"salesforce-sandbox", "zuora-sandbox", "mail-sandbox", "sandbox-connections"}
#: Services built on x-airflow-common: the project's image and Airflow's environment.
AIRFLOW = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer",
           "airflow-init", "airflow-cli", "flower", "sandbox-connections"}
#: Long-running Airflow components and the command each runs.
COMMANDS = {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
            "airflow-dag-processor": "dag-processor", "airflow-worker": "celery worker",
            "airflow-triggerer": "triggerer", "flower": "celery flower"}
ONE_SHOT = {"airflow-init", "sandbox-connections", "airflow-cli"}
SECRET_KEY = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$")


@pytest.fixture(scope="module")
def raw() -> dict:
    """The file as parsed (YAML anchors and merge keys resolved), before interpolation."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    """The file with every variable unset: the defaults."""
    return load()


def services(doc: dict) -> dict:
    return doc["services"]


def environment(service: dict) -> dict:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "write environment as a mapping"
    return env


def command_list(service: dict) -> list[str]:
    command = service.get("command")
    return command.split() if isinstance(command, str) else list(command or [])


def container_port(service: dict, port: int) -> bool:
    published = [str(p).rsplit(":", 1)[-1] for p in service.get("ports", [])]
    return str(port) in published or str(port) in [str(p) for p in service.get("expose", [])]


def conn_from_value(conn_id: str, value: str):
    from airflow.models import Connection

    if value.lstrip().startswith("{"):
        data = json.loads(value)
        assert isinstance(data.get("conn_type"), str) and data["conn_type"], f"{conn_id}: no conn_type in {value}"
        return Connection.from_json(value, conn_id=conn_id)
    connection = Connection(conn_id=conn_id, uri=value)
    assert connection.conn_type, f"{conn_id}: the URI {value!r} names no connection type"
    return connection


# ------------------------------------------------------------------------------------------------
# Services


def test_the_file_parses_and_names_every_service(compose):
    names = set(services(compose))
    missing = (CORE | SANDBOX | {"flower"}) - names
    assert not missing, f"missing services: {sorted(missing)}"
    for name in CORE:
        assert not services(compose)[name].get("profiles"), f"{name} must start without a profile"
    assert services(compose)["flower"]["profiles"] == ["flower"]
    for name in SANDBOX:
        assert services(compose)[name].get("profiles") == ["sandbox"], f"{name} belongs to the sandbox profile"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_airflow_component_runs_its_command(compose, name):
    assert " ".join(command_list(services(compose)[name])) == COMMANDS[name]


def test_every_service_on_the_project_image_is_an_airflow_or_sandbox_service(raw):
    image = raw["x-airflow-common"]["image"]
    on_image = {name for name, svc in services(raw).items() if svc.get("image") == image}
    assert on_image == AIRFLOW | {"salesforce-sandbox", "zuora-sandbox", "mail-sandbox"}


@pytest.mark.parametrize("name", sorted(AIRFLOW))
def test_airflow_services_share_the_common_image_and_environment(raw, name):
    common, service = raw["x-airflow-common"], services(raw)[name]
    assert service["image"] == common["image"] and service["build"] == common["build"]
    env = environment(service)
    for key, value in common["environment"].items():
        assert key in env, f"{name} lacks {key} of x-airflow-common"
        assert env[key] == value, f"{name} overrides {key}"
    if name != "airflow-init":  # runs as root to hand the volumes over, like Airflow's own file
        assert service["user"] == common["user"]
    targets = {str(v).split(":")[1] for v in service["volumes"]}
    assert {str(v).split(":")[1] for v in common["volumes"]} <= targets
    for dependency in ("postgres", "redis"):
        assert service["depends_on"][dependency]["condition"] == "service_healthy"


def test_workers_scale(raw):
    worker = services(raw)["airflow-worker"]
    for key in ("container_name", "hostname", "ports"):
        assert key not in worker, f"airflow-worker has {key}: `--scale airflow-worker=N` would clash"
    assert "replicas" not in (worker.get("deploy") or {})
    assert environment(worker)["DUMB_INIT_SETSID"] == "0"  # warm shutdown of Celery
    assert not any("container_name" in svc for svc in services(raw).values())


def test_published_host_ports_are_unique(compose):
    seen: dict[str, str] = {}
    for name, svc in services(compose).items():
        for mapping in svc.get("ports", []):
            host = str(mapping).rsplit(":", 1)[0]
            assert host not in seen, f"{name} and {seen.get(host)} both publish {host}"
            seen[host] = name


def test_named_volumes_are_declared(raw):
    declared = set(raw.get("volumes") or {})
    for name, svc in services(raw).items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/", "$", "~")):
                assert source in declared, f"{name} mounts the undeclared volume {source}"


# ------------------------------------------------------------------------------------------------
# Healthchecks and start order


def healthcheck_text(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def test_long_running_services_have_healthchecks(compose):
    for name, svc in services(compose).items():
        if name in ONE_SHOT:
            assert "healthcheck" not in svc and svc.get("restart") in (None, "no"), f"{name} runs once"
            continue
        check = svc.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check.get("interval") and check.get("retries"), name
        assert svc.get("restart") in ("always", "unless-stopped"), name


def test_healthchecks_probe_what_each_service_serves(compose):
    svc = services(compose)
    env = environment(svc["airflow-scheduler"])
    assert "pg_isready" in healthcheck_text(svc["postgres"])
    assert "redis-cli ping" in healthcheck_text(svc["redis"])
    assert "http://localhost:8080/api/v2/monitor/health" in healthcheck_text(svc["airflow-apiserver"])
    assert container_port(svc["airflow-apiserver"], 8080)
    assert "http://localhost:8974/health" in healthcheck_text(svc["airflow-scheduler"])
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"  # else nothing listens on 8974
    assert "--job-type DagProcessorJob" in healthcheck_text(svc["airflow-dag-processor"])
    assert "--job-type TriggererJob" in healthcheck_text(svc["airflow-triggerer"])
    # "$${HOSTNAME}" in the file: the shell in the container expands it, not Compose.
    assert 'inspect ping -d "celery@${HOSTNAME}"' in healthcheck_text(svc["airflow-worker"])
    assert "http://localhost:5555/" in healthcheck_text(svc["flower"])
    assert container_port(svc["flower"], 5555)


def test_depends_on_conditions(compose):
    svc = services(compose)
    for name, service in svc.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in svc, f"{name} depends on the unknown service {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in svc[target], f"{name} waits for {target} to be healthy; it has no healthcheck"
            elif condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name} waits for {target} to exit, but it keeps running"
            else:
                pytest.fail(f"{name} -> {target}: condition {condition!r}")
            if not service.get("profiles"):
                assert not svc[target].get("profiles"), f"{name} (no profile) depends on {target} (profile)"
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
                 "airflow-triggerer", "flower", "sandbox-connections"):
        assert svc[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", name
    assert svc["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    for sandbox in ("salesforce-sandbox", "zuora-sandbox"):
        assert svc["sandbox-connections"]["depends_on"][sandbox]["condition"] == "service_healthy"
    assert "depends_on" not in svc["postgres"] and "depends_on" not in svc["redis"]


# ------------------------------------------------------------------------------------------------
# Executor, databases, broker


@pytest.mark.parametrize("env", [{}, {"POSTGRES_PASSWORD": "pw-from-env"}], ids=["defaults", "password-set"])
def test_executor_database_and_broker_agree(env):
    from sqlalchemy.engine import make_url

    doc = load(env)
    svc = services(doc)
    airflow_env = environment(svc["airflow-scheduler"])
    postgres = environment(svc["postgres"])
    assert airflow_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert airflow_env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    assert airflow_env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "true"

    metadata = make_url(airflow_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    backend = airflow_env["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert backend.startswith("db+"), "the Celery result backend is the metadata database (db+postgresql://)"
    results = make_url(backend[len("db+"):])
    for url in (metadata, results):
        assert url.get_backend_name() == "postgresql"
        assert url.host == "postgres" and url.host in svc
        assert (url.port or 5432) == 5432
        assert url.username == postgres["POSTGRES_USER"]
        assert url.password == postgres["POSTGRES_PASSWORD"] == env.get("POSTGRES_PASSWORD", url.password)
        assert url.database == postgres["POSTGRES_DB"]
        # A bare postgresql:// is psycopg 3 to SQLAlchemy 2.1: a worker then fails at start (found by
        # running the file's shape, tests/production/).
        assert url.drivername == "postgresql+psycopg2", f"name the driver: {url.drivername}"

    broker = urlsplit(airflow_env["AIRFLOW__CELERY__BROKER_URL"])
    assert broker.scheme == "redis" and broker.hostname == "redis" and broker.hostname in svc
    assert container_port(svc["redis"], broker.port or 6379)

    execution = urlsplit(airflow_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution.hostname == "airflow-apiserver" and execution.hostname in svc
    assert container_port(svc["airflow-apiserver"], execution.port)
    assert execution.path == "/execution/"


def test_secrets_come_from_the_environment(raw):
    for name, svc in services(raw).items():
        for key, value in environment(svc).items():
            if SECRET_KEY.search(key) and value is not None:
                assert "${" in str(value), f"{name}: {key} is a literal; read it from the environment (${{VAR:-...}})"
            if key.startswith("AIRFLOW_CONN_") and value is not None and str(value).lstrip().startswith("{"):
                data = json.loads(interpolate(str(value), {}))
                raw_data = json.loads(str(value).replace("$$", "$"))  # placeholders kept as text
                if data.get("password"):
                    assert "${" in raw_data["password"], f"{name}: {key} has a literal password"
                for extra_key, extra_value in (raw_data.get("extra") or {}).items():
                    if SECRET_KEY.search(extra_key.upper()):
                        assert "${" in str(extra_value), f"{name}: {key} extra.{extra_key} is a literal"
                    for password in re.findall(r"://[^/@:]*:([^@]*)@", str(extra_value)):
                        assert "${" in password, f"{name}: {key} extra.{extra_key} has a literal password"
    for url_key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        assert "${POSTGRES_PASSWORD" in raw["x-airflow-common"]["environment"][url_key]
    secret_args = [arg for arg in command_list(services(raw)["zuora-sandbox"]) if arg.startswith("--callout-secret")]
    assert secret_args and all("${" in arg for arg in secret_args)


def test_the_fernet_key_default_is_usable():
    """An invalid placeholder would crash Airflow on the first encrypted write; empty means none."""
    value = environment(services(load())["airflow-scheduler"])["AIRFLOW__CORE__FERNET_KEY"]
    if value:
        from cryptography.fernet import Fernet

        Fernet(value.encode())


def test_callouts_are_signed_with_the_webhook_secret():
    """The Zuora sandbox signs with the secret the zuora_sync_webhook connection checks: the same
    variable, so setting ZUORA_CALLOUT_SECRET changes both."""
    for env in ({}, {"ZUORA_CALLOUT_SECRET": "from-the-env"}):
        svc = services(load(env))
        webhook = json.loads(environment(svc["airflow-apiserver"])["AIRFLOW_CONN_ZUORA_SYNC_WEBHOOK"])
        arg = next(a for a in command_list(svc["zuora-sandbox"]) if a.startswith("--callout-secret="))
        assert arg.split("=", 1)[1] == webhook["extra"]["hmac_secret"] == env.get("ZUORA_CALLOUT_SECRET",
                                                                                   webhook["extra"]["hmac_secret"])
        assert webhook["extra"]["signature_header"] == "X-Zuora-Signature"


# ------------------------------------------------------------------------------------------------
# Connections


def env_connections(doc: dict) -> dict[str, str]:
    found = {}
    for svc in services(doc).values():
        for key, value in environment(svc).items():
            if key.startswith("AIRFLOW_CONN_") and value is not None:
                found[key[len("AIRFLOW_CONN_"):].lower()] = value
    return found


def test_every_connection_in_the_file_is_one_airflow_accepts(compose):
    connections = env_connections(compose)
    assert {"zuora_sync_state", "zuora_sync_webhook"} <= set(connections)
    for conn_id, value in connections.items():
        connection = conn_from_value(conn_id, value)
        assert connection.conn_type, conn_id


def test_smtp_default_is_the_mail_catcher_that_make_up_starts_too(compose):
    """The sandbox profile's mail catcher is ``make up``'s own (``zuora-sync-sandbox mail``), and the
    smtp_default it writes for sandbox-connections names its service and SMTP port."""
    from sandbox.cli import build_parser
    from sandbox.stack import SERVICES

    assert "mail" in SERVICES
    svc = services(compose)["mail-sandbox"]
    args = build_parser().parse_args(command_list(svc)[1:])
    script = "\n".join(command_list(services(compose)["sandbox-connections"]))
    assert "conn_from /opt/sandbox/mail.env AIRFLOW_CONN_SMTP_DEFAULT" in script and '"smtp_default:$smtp"' in script
    assert svc["ports"] == ["127.0.0.1:8025:8025"] and args.web_port == 8025  # the page, on this machine only
    # What it writes (its own code, as in the container, without starting it):
    from sandbox.mail import connection_env

    smtp = json.loads(connection_env(args.host, args.port, args.web_port)["AIRFLOW_CONN_SMTP_DEFAULT"])
    assert conn_from_value("smtp_default", json.dumps(smtp)).conn_type == "smtp"
    assert (smtp["host"], smtp["port"]) == ("mail-sandbox", 1025)
    assert container_port(svc, args.port) and args.host == svc["hostname"] == "mail-sandbox"


def test_connections_left_to_the_operator_pass_through_unset(raw):
    """Not given a value in the file: Compose passes them only when they are set (shell or .env),
    so the metadata database (Admin -> Connections) is used otherwise."""
    env = raw["x-airflow-common"]["environment"]
    for key in ("AIRFLOW_CONN_ZUORA_DEFAULT", "AIRFLOW_CONN_SALESFORCE_DEFAULT", "AIRFLOW_CONN_SMTP_DEFAULT",
                "REQUESTS_CA_BUNDLE"):
        assert key in env and env[key] is None, key


@pytest.mark.parametrize("env", [{}, {"POSTGRES_PASSWORD": "pw-from-env"}], ids=["defaults", "password-set"])
def test_state_store_connection_is_a_postgres_url(env, monkeypatch):
    from sqlalchemy.engine import make_url
    from zuora_sync.state import StateStore, url_from_connection

    svc = services(load(env))
    value = environment(svc["airflow-worker"])["AIRFLOW_CONN_ZUORA_SYNC_STATE"]
    url = make_url(url_from_connection(conn_from_value("zuora_sync_state", value)))
    metadata = make_url(environment(svc["airflow-worker"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert url.get_backend_name() == "postgresql"
    url.get_dialect()  # SQLAlchemy knows the dialect (the DB-API driver is imported only on connect)
    # A bare postgresql:// means psycopg 3 to SQLAlchemy 2.1; the metadata DB's driver is in the image.
    assert url.drivername == metadata.drivername == "postgresql+psycopg2"
    assert url.host == metadata.host and url.port in (None, 5432)
    assert url.username == metadata.username and url.password == metadata.password
    assert url.database and url.database != metadata.database, (
        "the state store gets its own database: tasks may not touch Airflow's metadata DB (SPEC §6)")
    # The way tasks and the web app find it: the Airflow connection, read from the environment.
    monkeypatch.setenv("AIRFLOW_CONN_ZUORA_SYNC_STATE", value)
    assert make_url(StateStore.from_airflow().url) == url
    init = "\n".join(command_list(svc["airflow-init"]))
    assert "CREATE DATABASE" in init and "store.migrate()" in init


def test_the_sandbox_env_files_give_connections_that_reach_the_sandboxes(compose, tmp_path):
    """What the sandboxes write (their own connection_env code) names the service names, and the
    Salesforce sandbox's certificate covers that name."""
    from cryptography import x509
    from sandbox.cli import build_parser
    from sandbox.salesforce.server import connection_env as salesforce_env
    from sandbox.tls import ensure_tls
    from sandbox.zuora.server import connection_env as zuora_env

    svc = services(compose)
    sf = build_parser().parse_args(command_list(svc["salesforce-sandbox"])[1:])
    zu = build_parser().parse_args(command_list(svc["zuora-sandbox"])[1:])

    tls = ensure_tls(tmp_path / "tls", sf.host)
    cert = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sf.host in names.get_values_for_type(x509.DNSName)
    bundle = sf.data_dir / tls.bundle.relative_to(tmp_path)

    org = SimpleNamespace(config=SimpleNamespace(username="u", password="p", security_token="t",
                                                 consumer_key="k", consumer_secret="s"))
    written = salesforce_env(org, sf.host, sf.port, bundle)
    connection = conn_from_value("salesforce_default", written["AIRFLOW_CONN_SALESFORCE_DEFAULT"])
    assert connection.conn_type == "salesforce"
    assert connection.extra_dejson["domain"] == f"salesforce-sandbox:{sf.port}/login"
    assert written["REQUESTS_CA_BUNDLE"] == str(bundle) == "/opt/sandbox/salesforce/tls/ca-bundle.pem"

    tenant = SimpleNamespace(config=SimpleNamespace(client_id="c", client_secret="s"))
    connection = conn_from_value("zuora_default", zuora_env(tenant, zu.host, zu.port)["AIRFLOW_CONN_ZUORA_DEFAULT"])
    assert connection.host == f"http://zuora-sandbox:{zu.port}"

    # The Airflow services see the bundle at that same path, and the docs tell to point at it.
    for name in AIRFLOW:
        mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in svc[name]["volumes"]}
        assert mounts.get("/opt/sandbox") == "sandbox-data", name
    assert f"REQUESTS_CA_BUNDLE={bundle}" in DEPLOYMENT_DOC.read_text()


@pytest.mark.parametrize("name", ["salesforce-sandbox", "zuora-sandbox", "mail-sandbox"])
def test_sandbox_command_lines_parse_and_listen_on_their_service_name(compose, name):
    from sandbox.cli import build_parser

    svc = services(compose)[name]
    command = command_list(svc)
    assert command[0] == "zuora-sync-sandbox"
    args = build_parser().parse_args(command[1:])
    assert args.command == name.split("-")[0]
    assert args.host == name == svc["hostname"], "listen on (and advertise) the name other containers use"
    assert container_port(svc, args.port)
    mount = {str(v).split(":")[1]: str(v).split(":")[0] for v in svc["volumes"]}
    assert mount.get("/opt/sandbox") == "sandbox-data"
    for path in (args.data_dir, args.env_file):
        assert str(path).startswith("/opt/sandbox/"), f"{path} is not on the sandbox-data volume"
    script = "\n".join(command_list(services(compose)["sandbox-connections"]))
    assert str(args.env_file) in script, "sandbox-connections reads this env file"


def test_sandboxes_generate_the_same_tenant_and_call_back_the_web_app(compose):
    from sandbox.cli import build_parser
    from zuora_sync.webapp import URL_PREFIX

    svc = services(compose)
    sf = build_parser().parse_args(command_list(svc["salesforce-sandbox"])[1:])
    zu = build_parser().parse_args(command_list(svc["zuora-sandbox"])[1:])
    assert (sf.accounts, sf.seed) == (zu.accounts, zu.seed), "the CRM Account Ids match only for the same tenant"
    callout = urlsplit(zu.callout_url)
    assert callout.hostname == "airflow-apiserver" and container_port(svc["airflow-apiserver"], callout.port)
    assert callout.path == URL_PREFIX + "/events"


# ------------------------------------------------------------------------------------------------
# Staged files


def test_staged_files_live_on_one_volume_at_the_same_path_everywhere(compose, monkeypatch):
    from zuora_sync.settings import Settings, parse_settings

    svc = services(compose)
    staging_url = environment(svc["airflow-init"])["ZUORA_SYNC_STAGING_URL"]
    assert parse_settings({"staging_url": staging_url}).staging_root() == staging_url.rstrip("/")
    parts = urlsplit(staging_url)
    assert parts.scheme == "file", "file:// on a shared volume here; s3:// and the like are documented"
    for name in AIRFLOW:
        mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in svc[name]["volumes"]}
        assert mounts.get(parts.path) == "zuora-sync-staging", f"{name} lacks the staging volume at {parts.path}"
    assert "zuora-sync-staging" in compose["volumes"]
    # Without the Variable, the default staging root is that same path in the image (AIRFLOW_HOME).
    monkeypatch.setenv("AIRFLOW_HOME", "/opt/airflow")
    assert Settings().staging_root() == staging_url.rstrip("/")
    assert parts.path in DOCKERFILE.read_text(), "the Dockerfile creates the mount point owned by airflow"


# ------------------------------------------------------------------------------------------------
# The image


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def test_the_image_is_airflow_at_the_pinned_version():
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = next(dep.split("==", 1)[1] for dep in project["dependencies"] if dep.startswith("apache-airflow=="))
    bases = [arg for op, arg in dockerfile_instructions() if op == "FROM"]
    assert len(bases) == 1
    match = re.fullmatch(r"apache/airflow:(\S+)-python(\d+\.\d+)", bases[0])
    assert match, f"FROM {bases[0]}: expected apache/airflow:<version>-python<X.Y>"
    assert match.group(1) == pinned, f"the image has Airflow {match.group(1)}, pyproject.toml pins {pinned}"
    assert SpecifierSet(project["requires-python"]).contains(match.group(2))


def test_the_image_installs_the_project_with_its_dags_and_plugin(compose):
    steps = dockerfile_instructions()
    user, copied, installed = "airflow", [], False
    for op, arg in steps:
        if op == "USER":
            user = arg.split(":")[0]
        elif op == "COPY":
            copied.append(arg)
        elif op == "RUN" and re.search(r"\bpip install --no-cache-dir\b", arg):
            assert user == "airflow", "the image's pip refuses to run as root"
            assert re.search(r"(^|\s)\.(\s|$)", arg), "pip installs the project (.)"
            assert '"apache-airflow==${AIRFLOW_VERSION}"' in arg, "pip keeps the image's Airflow"
            sources = " ".join(copied)
            assert "pyproject.toml" in sources and "README.md" in sources and "include/" in sources
            installed = True
    assert installed
    env = environment(services(compose)["airflow-worker"])
    for source, folder in (("dags/", env["AIRFLOW__CORE__DAGS_FOLDER"]), ("plugins/", env["AIRFLOW__CORE__PLUGINS_FOLDER"])):
        assert any(arg.split()[-2:] == [source, folder.rstrip("/") + "/"] for arg in copied), f"COPY {source} {folder}/"
    assert (ROOT / "plugins" / "zuora_sync_plugin.py").exists() and list((ROOT / "dags").glob("*.py"))
    build = compose["x-airflow-common"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def dockerignored(path: str, patterns: list[str]) -> bool:
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        if pattern.startswith("**/"):
            tail = pattern[3:]
            if any(fnmatch.fnmatchcase("/".join(parts[i:j]), tail)
                   for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)):
                return True
        elif any(fnmatch.fnmatchcase(candidate, pattern.rstrip("/")) for candidate in candidates):
            return True
    return False


def test_dockerignore_keeps_what_the_image_needs_and_drops_secrets():
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "exceptions (!) are not modelled by this test"
    needed = ["pyproject.toml", "README.md"] + [str(p.relative_to(ROOT)) for folder in ("include", "dags", "plugins")
                                                for p in (ROOT / folder).rglob("*")
                                                if p.is_file() and "__pycache__" not in p.parts
                                                and not any(part.endswith(".egg-info") for part in p.parts)]
    assert any(n.startswith("include/zuora_sync/") for n in needed)
    kept_out = [n for n in needed if dockerignored(n, patterns)]
    assert not kept_out, f".dockerignore leaves out {kept_out[:5]}"
    for secret in (".env", ".sandbox/stack/webhook.secret", ".venv/bin/python"):
        assert dockerignored(secret, patterns), f"{secret} would be sent to the build"


# ------------------------------------------------------------------------------------------------
# The real thing, where it is installed


def test_docker_compose_config_accepts_the_file():
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose CLI is not installed here; the file was checked statically only")
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE_FILE), "--profile", "sandbox", "--profile",
                             "flower", "--profile", "debug", "config", "--quiet"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
