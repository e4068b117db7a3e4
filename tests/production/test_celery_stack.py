"""The production shape of docker-compose.yaml, run for real: CeleryExecutor, PostgreSQL, Redis,
two Celery workers and shared staging (``celery_stack.py`` starts it as local processes).

One test in five phases, in order, on one stack (``conftest.py``), against a 2,000-account tenant:

1. every Airflow process runs with its service's environment from the compose file, changed only
   where a container and a local process must differ, plus the test's documented settings;
2. ``zuora_full_sync``, staging on the shared ``file://`` volume: its tasks run on both workers;
   while its first load's Bulk job is in progress, that worker is SIGKILLed with its whole process
   tree; the task is retried on the other worker, the killed worker restarts (Compose's
   ``restart: always``), and Salesforce then equals Zuora record by record (the independent
   oracle, ``tests/zuora_oracle.py``): nothing lost, nothing duplicated; the staged files, on the
   shared volume while the session runs, are gone once it ends;
3. staging moved to ``s3://`` (an S3-compatible server, through ``ObjectStoragePath`` and the
   ``aws_default`` connection); a batch of changes in Zuora chosen to hit every sync rule
   (``tests/sync/test_oracle.py``); ``zuora_incremental_sync``; the oracle again; every object was
   staged in the bucket and removed from it when the session ended;
4. ``zuora_realtime_sync`` unpaused: its mode-change full sync, then Zuora's signed callouts to the
   API server start a real-time session; the oracle again;
5. no secret of the deployment appears in any service's or task's log.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest

from .celery_stack import ADDRESSES, AIRFLOW_SERVICES, IMAGE_PATHS, S3_BUCKET, TEST_SETTINGS, WORKER, CeleryStack

TZ = ZoneInfo("America/Los_Angeles")  # the sync's default zuora_time_zone, the sandbox tenant's
FULL, INCREMENTAL, REALTIME = "zuora_full_sync", "zuora_incremental_sync", "zuora_realtime_sync"
SCOPE = "accounts"
GOOD_ENDINGS = ("Finished", "Finished with Errors")  # the tenant has deliberately invalid CRM Ids
#: Keys a process gets besides its service's compose environment: what a container gives by itself.
CONTAINER_KEYS = {"HOSTNAME", "AIRFLOW_HOME", "AIRFLOW__CORE__HOSTNAME_CALLABLE", "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
                  "AIRFLOW__API__HOST", "AIRFLOW__API__PORT", "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST",
                  "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT", "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
                  "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"}

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


# -- Airflow's REST API -----------------------------------------------------------------------------------


def task_instances(stack: CeleryStack, dag_id: str, run_id: str) -> list[dict]:
    answer = stack.airflow.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    answer.raise_for_status()
    return answer.json()["task_instances"]


def tries(stack: CeleryStack, dag_id: str, run_id: str, task_id: str) -> list[dict]:
    answer = stack.airflow.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")
    answer.raise_for_status()
    return sorted(answer.json()["task_instances"], key=lambda t: t["try_number"])


def run_to_end(stack: CeleryStack, dag_id: str, run_id: str, timeout: float = 420) -> dict:
    """The run once it has ended; it must have succeeded, with every task successful."""
    stack.wait_for(f"{dag_id} run {run_id} ending",
                   lambda: stack.airflow.run_state(dag_id, run_id) in ("success", "failed"), timeout, every=2)
    tis = task_instances(stack, dag_id, run_id)
    failed = {ti["task_id"]: ti["state"] for ti in tis if ti["state"] != "success"}
    assert stack.airflow.run_state(dag_id, run_id) == "success" and not failed, (failed, stack.tails())
    return {ti["task_id"]: ti for ti in tis}


def workers_of(tis: dict[str, dict]) -> dict[str, list[str]]:
    """Worker hostname → the tasks it ran (their final, successful tries)."""
    ran: dict[str, list[str]] = {}
    for task_id, ti in tis.items():
        ran.setdefault(ti["hostname"], []).append(task_id)
    return ran


# -- Salesforce vs Zuora, record by record -------------------------------------------------------------------


def oracle_differences(stack: CeleryStack, oracle: Any, require_deleted: dict | None = None) -> tuple[Any, list]:
    """What Salesforce must hold, from Zuora by SPEC §3's rules (never through the sync's mapping),
    and every difference from what it holds: missing, extra, duplicate, wrong value, rejected
    records not recorded as rejected."""
    from zuora_oracle import SCOPES

    expectation = oracle.expect(SCOPE)
    store = stack.state_store()
    rejected = {obj: set(store.open_rejected_ids(SCOPE, obj)) for obj in SCOPES[SCOPE]}
    differences = oracle.compare(expectation, require_deleted=require_deleted, open_rejected=rejected)
    differences += oracle.unrecorded_rejections(expectation, rejected)
    return expectation, differences


def assert_no_differences(differences: list, stage: str, tmp_path: Path) -> None:
    from zuora_oracle import summarize

    listing = tmp_path / f"differences-{re.sub(r'[^a-z]+', '-', stage.lower())}.txt"
    listing.write_text("".join(f"{d}\n" for d in differences))
    assert not differences, f"{stage} (every difference: {listing}): {summarize(differences, examples=2)}"


def last_session(stack: CeleryStack, dag_id: str, run_id: str) -> dict:
    for row in stack.state_store().list_sessions(limit=20):
        if row["dag_id"] == dag_id and row["run_id"] == run_id:
            return row
    raise AssertionError(f"no session recorded for {dag_id} {run_id}")


# -- 1. the compose file's environment -----------------------------------------------------------------------


def every_airflow_process_runs_with_its_compose_environment(stack: CeleryStack) -> None:
    """The environment each process was started with (``/proc/PID/environ`` is no witness: Airflow's
    setproctitle writes over it): each key of the service's environment in the compose file (with
    the .env) is there, and its value is the file's once the local addresses and paths are turned
    back into the compose network's and the containers' (an independent inverse of ``localize``);
    the only other Airflow settings are a container's own and TEST_SETTINGS. That they are in
    force shows in what the stack does: the FAB login, tasks on the Celery workers, the databases."""
    back = {f"127.0.0.1:{stack.ports[service]}": f"{service}:{port}" for service, port in ADDRESSES.items()}
    back.update({str(local): container for container, local in IMAGE_PATHS.items()})
    back.update({str(local): container for container, local in stack.volumes.items()})
    for key in TEST_SETTINGS:
        for service in stack.compose["services"].values():
            assert key not in (service.get("environment") or {}), f"the compose file sets {key}: no test override"
    services = {name: name for name in AIRFLOW_SERVICES} | {name: WORKER for name in stack.worker_names()}
    assert len(services) == len(AIRFLOW_SERVICES) + 2
    for name, service in services.items():
        running = stack.services[name].env
        compose = stack.compose["services"][service]["environment"]
        for key, value in compose.items():
            if value is None and key not in stack.dotenv:
                assert key not in running, f"{name}: {key} is passed through only when set"
                continue
            want = stack.dotenv[key] if value is None else str(value)
            have = running.get(key)
            assert have is not None, f"{name} lacks {key}"
            for local in sorted(back, key=len, reverse=True):
                have = have.replace(local, back[local])
            assert have == want, f"{name}: {key} is {running[key]!r}, the compose file says {want!r}"
        extra = {key for key in running if key.startswith(("AIRFLOW", "_AIRFLOW")) and key not in compose}
        assert extra <= CONTAINER_KEYS | set(TEST_SETTINGS), f"{name}: unexplained settings {extra - CONTAINER_KEYS}"
        assert running["HOSTNAME"] == name and running["AIRFLOW_HOME"].endswith(f"/containers/{name}")
        assert running["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # Separate working directories and AIRFLOW_HOMEs; the logs on the shared airflow-logs volume.
    homes = {stack.services[name].cwd for name in services}
    assert len(homes) == len(services)
    # airflow-init's script: the state store's own database, migrated; the settings Variable with the
    # file's staging_url default (on the zuora-sync-staging volume).
    assert stack.state_store().schema_revision()
    settings = stack.airflow.call("GET", "/zuora-sync/settings").json()
    staging = stack.compose["services"]["airflow-init"]["environment"]["ZUORA_SYNC_STAGING_URL"]
    assert settings["source"] == "variable" and settings["settings"]["staging_url"] == stack.localize(staging)
    assert urlsplit(staging).path in stack.volumes, "the default staging_url is the shared volume's mount point"
    # sandbox-connections' script wrote the sandboxes' connections into the metadata database.
    for conn_id in ("salesforce_default", "zuora_default", "smtp_default"):
        assert stack.airflow.call("GET", f"/api/v2/connections/{conn_id}").ok, conn_id


# -- 2. a full sync over two workers, one of them killed mid-load --------------------------------------------


def loading(stack: CeleryStack, run_id: str, sf: Any, known: set[str]) -> tuple[dict, dict] | None:
    """A load task of the run that is running, and its Bulk job (not one of ``known``) that
    Salesforce is processing."""
    from zuora_sync.mapping import load_mapping

    mapping = load_mapping()
    for ti in task_instances(stack, FULL, run_id):
        if ti["task_id"].startswith("load_") and ti["state"] == "running" and ti["hostname"]:
            sobject = mapping.get(ti["task_id"][len("load_"):]).salesforce
            for job in sf.restful("jobs/ingest")["records"]:
                if job["object"] == sobject and job["state"] in ("UploadComplete", "InProgress") \
                        and job["id"] not in known:
                    return ti, job
    return None


def full_sync_spreads_over_both_workers_and_survives_one_killed_mid_load(stack: CeleryStack, tmp_path: Path) -> None:
    from zuora_oracle import ZuoraOracle

    airflow = stack.airflow
    sf = stack.salesforce.login()
    assert len(stack.worker_names()) == 2
    # Bulk jobs wait 3 s InProgress until the kill: a window in which a load is surely mid-job.
    stack.salesforce.admin("POST", "faults", {"kind": "bulk_delay", "seconds": 3})
    try:
        known = {job["id"] for job in sf.restful("jobs/ingest")["records"]}
        airflow.set_paused(FULL, False)
        run_id = airflow.trigger(FULL)
        killed_ti, job = stack.wait_for("a load task with its Bulk job in progress",
                                        lambda: loading(stack, run_id, sf, known), 300, every=0.2)
        victim = killed_ti["hostname"]
        survivor = next(name for name in stack.worker_names() if name != victim)
        pids = stack.kill_worker(victim)
        stack.mark(f"killed {victim} during {killed_ti['task_id']}")
        # Mid-session, the extracts' staged files are on the shared volume.
        staged = Path(stack.localize("/opt/airflow/zuora_sync/staging")) / FULL
        staged_then = {p.parent.name for p in staged.rglob("selection.json")}
    finally:
        stack.salesforce.admin("DELETE", "faults")
    assert len(pids) > 3, f"the worker's tree was {pids}: no pool, supervisor and task?"
    task_id = killed_ti["task_id"]
    # Salesforce goes on with the job the dead worker had closed: its rows land.
    stack.wait_for("the killed load's Bulk job finishing",
                   lambda: sf.restful(f"jobs/ingest/{job['id']}")["state"] in ("JobComplete", "Failed", "Aborted"), 120)
    finished = sf.restful(f"jobs/ingest/{job['id']}")
    assert finished["state"] == "JobComplete" and finished["numberRecordsProcessed"] > 0, finished
    # No heartbeat: the scheduler fails the task instance and it is retried, on the surviving worker
    # (the only one left), then the killed worker comes back, as `restart: always` brings it.
    retried = stack.wait_for(f"{task_id} retried", lambda: next(
        (t for t in tries(stack, FULL, run_id, task_id)
         if t["try_number"] == 2 and t["state"] in ("running", "success")), None), 240, every=1)
    stack.mark(f"{task_id} retried on {retried['hostname']}")
    stack.start_worker(int(victim.rsplit("-", 1)[1]))
    stack.wait_healthy(WORKER, 180, victim)
    tis = run_to_end(stack, FULL, run_id)
    stack.mark("full sync ended")
    attempts = tries(stack, FULL, run_id, task_id)
    assert [(t["try_number"], t["hostname"]) for t in attempts] == [(1, victim), (2, survivor)], attempts
    assert attempts[0]["state"] != "success" and attempts[1]["state"] == "success" and retried["hostname"] == survivor
    ran = workers_of(tis)
    assert set(ran) == {victim, survivor}, f"every task should run on one of the two workers: {ran}"
    assert all(len(tasks) >= 2 for tasks in ran.values()), f"the tasks were not spread over both workers: {ran}"
    session = last_session(stack, FULL, run_id)
    assert session["session_type"] == "Full" and session["status"] in GOOD_ENDINGS, session
    # The staged files were on the shared volume, not in a worker's own AIRFLOW_HOME; the session
    # removed them when it ended.
    assert "CustomerAccount" in staged_then, staged_then
    assert not any(staged.iterdir()), f"staged files left after the session: {list(staged.rglob('*'))[:10]}"
    for name in stack.worker_names():
        assert not (stack.services[name].cwd / "zuora_sync").exists(), f"{name} staged files in its own home"
    # Salesforce equals Zuora: nothing the killed try sent is lost or doubled.
    oracle = ZuoraOracle(stack.zuora.sdk_client(), sf, tenant_tz=TZ)
    expectation, differences = oracle_differences(stack, oracle)
    assert len(expectation.records["CustomerAccount"]) > 1000 and expectation.must_be_rejected["CustomerAccount"]
    stack.mark("full sync compared")
    assert_no_differences(differences, "after the full sync with a killed worker", tmp_path)
    airflow.set_paused(FULL, True)


# -- 3. an incremental sync, staging on s3:// -----------------------------------------------------------------


def incremental_sync_with_staging_on_s3(stack: CeleryStack, tmp_path: Path) -> None:
    from test_oracle import Zuora, apply_changes, catalog_setup, check_batch_in_expectation
    from zuora_oracle import ZuoraOracle

    airflow = stack.airflow
    connection = airflow.call("POST", "/api/v2/connections", json=stack.aws_connection())
    assert connection.status_code == 201, connection.text
    staging = f"s3://aws_default@{S3_BUCKET}/zuora-sync/staging"
    saved = airflow.call("PUT", "/zuora-sync/settings", json={"staging_url": staging})
    assert saved.status_code == 200 and saved.json()["settings"]["staging_url"] == staging, saved.text

    sf = stack.salesforce.login()
    sdk = stack.zuora.sdk_client()
    oracle = ZuoraOracle(sdk, sf, tenant_tz=TZ)
    zuora = Zuora(sdk)
    before = oracle.expect(SCOPE)
    batch = apply_changes(zuora, sf, before, oracle.read_tenant(SCOPE), catalog_setup(zuora, 1), 1)

    stack.mark("change batch applied")
    airflow.set_paused(INCREMENTAL, False)
    try:
        run_id = airflow.trigger(INCREMENTAL)
        tis = run_to_end(stack, INCREMENTAL, run_id)
        stack.mark("incremental sync ended")
    finally:
        airflow.set_paused(INCREMENTAL, True)
    assert len(workers_of(tis)) == 2, f"one worker ran everything: {workers_of(tis)}"
    session = last_session(stack, INCREMENTAL, run_id)
    assert session["session_type"] == "Incremental" and session["status"] in GOOD_ENDINGS, session
    # Every object was staged in the bucket (its versions say so), and the session removed it all when it ended.
    prefix = f"zuora-sync/staging/{INCREMENTAL}/"
    manifests = {key.rsplit("/", 2)[-2] for key in s3_versions(stack, prefix) if key.endswith("/manifest.json")}
    assert manifests == {t[len("extract_"):] for t in tis if t.startswith("extract_")}, manifests
    assert s3_keys(stack, prefix) == []
    directory = airflow.xcom(INCREMENTAL, run_id, "extract_CustomerAccount")["directory"]
    assert directory.startswith(f"s3://aws_default@{S3_BUCKET}/zuora-sync/staging/{INCREMENTAL}/"), directory

    after, differences = oracle_differences(stack, oracle)
    stack.mark("incremental sync compared")
    problems = check_batch_in_expectation(batch, after)
    assert not problems, "the change batch did not do what it meant to:\n" + "\n".join(problems)
    assert_no_differences(differences, "after the changes and an incremental sync (s3:// staging)", tmp_path)


def s3_keys(stack: CeleryStack, prefix: str) -> list[str]:
    pages = stack.s3().get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def s3_versions(stack: CeleryStack, prefix: str) -> set[str]:
    """Every key ever written under ``prefix`` (the bucket is versioned), removed since or not."""
    pages = stack.s3().get_paginator("list_object_versions").paginate(Bucket=S3_BUCKET, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Versions", [])}


# -- 4. real-time sync: Zuora's callouts to the API server -----------------------------------------------------


def realtime_run(stack: CeleryStack, index: int, state: str, timeout: float) -> dict:
    """The ``index``-th real-time run (0-based) once its ``wait_for_changes`` is ``state`` or the run ended."""
    def found():
        runs = stack.airflow.runs(REALTIME)
        if len(runs) <= index:
            return None
        run = runs[index]
        if state == "ended":
            return run if run["state"] in ("success", "failed") else None
        return run if stack.airflow.task_state(REALTIME, run["dag_run_id"], "wait_for_changes") == state else None

    return stack.wait_for(f"real-time run {index + 1} {state}", found, timeout, every=1)


def zuora_call(stack: CeleryStack, method: str, path: str, body: Any) -> Any:
    from sync_harness import zuora_call as call

    return call(stack.zuora, method, path, body)


def a_real_time_session_started_by_callouts(stack: CeleryStack, tmp_path: Path) -> None:
    from zuora_oracle import ZuoraOracle

    airflow = stack.airflow
    stack.zuora.admin("POST", "callouts", {"retry_interval_seconds": 2})  # not Zuora's 30 minutes
    saved = airflow.call("PUT", "/zuora-sync/settings", json={
        "max_events_before_sync": 5, "max_minutes_between_syncs": 600, "trigger_poll_seconds": 2})
    assert saved.status_code == 200, saved.text
    airflow.set_paused(REALTIME, False)
    try:
        # Its first session follows a change of the sync mode: a full sync.
        first = realtime_run(stack, 0, "ended", 420)
        run_to_end(stack, REALTIME, first["dag_run_id"])
        stack.mark("real-time mode's full sync ended")
        assert airflow.xcom(REALTIME, first["dag_run_id"], "begin_session")["session_type"] == "Full"
        second = realtime_run(stack, 1, "deferred", 180)  # waiting in the triggerer
        status = airflow.call("GET", "/zuora-sync/status").json()
        assert status["mode"]["mode"] == "Real-time" and status["next_sync"]["message"].startswith(
            "5 more data change events"), status
        accounts = [a for a in zuora_call(stack, "POST", "/v1/action/query", {
            "queryString": "select Id, Name, CrmId from Account where Status = 'Active'"})["records"] if a.get("CrmId")]
        for n, account in enumerate(accounts[:5]):
            answer = zuora_call(stack, "POST", "/v1/action/update", {
                "type": "Account", "objects": [{"Id": account["Id"], "Name": f"Real-time on Celery {n}"}]})
            assert answer[0]["Success"], answer
        tis = run_to_end(stack, REALTIME, realtime_run(stack, 1, "ended", 420)["dag_run_id"])
        stack.mark("real-time session ended")
        fired = airflow.xcom(REALTIME, second["dag_run_id"], "wait_for_changes")
        assert fired["reason"] == "events" and fired["pending_events"] >= 5, fired
        assert airflow.xcom(REALTIME, second["dag_run_id"], "begin_session")["session_type"] == "Real-time"
        assert len(workers_of(tis)) == 2, f"one worker ran everything: {workers_of(tis)}"
    finally:
        airflow.set_paused(REALTIME, True)
    sf = stack.salesforce.login()
    renamed = sf.query("SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Name LIKE 'Real-time on Celery %'")
    assert renamed["totalSize"] >= 1
    _, differences = oracle_differences(stack, ZuoraOracle(stack.zuora.sdk_client(), sf, tenant_tz=TZ))
    stack.mark("real-time session compared")
    assert_no_differences(differences, "after a real-time session", tmp_path)


# -- 5. secrets ---------------------------------------------------------------------------------------------------


def no_secret_in_any_log(stack: CeleryStack) -> None:
    secrets = stack.secrets()
    dotenv = (stack.base / ".env").read_text()  # where they are: the scan below does find them
    assert all(secrets[key] in dotenv for key in secrets if key in stack.dotenv) and len(secrets) >= 9
    logs = stack.log_files()
    assert any("attempt=" in p.name for p in logs), "no task log on the airflow-logs volume"
    found = []
    for path in logs:
        text = path.read_text(errors="replace")
        found += [f"{what} in {path}" for what, value in secrets.items() if value in text]
    assert not found, "\n".join(found)


# -- the test -------------------------------------------------------------------------------------------------


def test_the_compose_shape_on_two_celery_workers(celery_stack, tmp_path):
    """The module's five phases, in order, on one stack. One test: each phase needs the one before,
    and a test runner that spreads tests over processes must not split them (each would start a
    stack of its own)."""
    every_airflow_process_runs_with_its_compose_environment(celery_stack)
    full_sync_spreads_over_both_workers_and_survives_one_killed_mid_load(celery_stack, tmp_path)
    incremental_sync_with_staging_on_s3(celery_stack, tmp_path)
    a_real_time_session_started_by_callouts(celery_stack, tmp_path)
    no_secret_in_any_log(celery_stack)
