"""The whole stack as a user runs it: ``python -m sandbox.stack up`` (what ``make up`` does) starts
both sandboxes and ``airflow standalone`` (scheduler, triggerer, API server); a full sync is
triggered through Airflow's REST API and must succeed, and the records must be in Salesforce.
``make down`` stopping everything is checked when the shared stack stops (``conftest.py``).

What the Airflow UI shows of that run is read back through the same REST API the UI uses: the
assets and their events (lineage), the run's note (the session finished with errors, as the
tenant's invalid CRM Ids make it), each task's link to its session, and the Zuora connection
type's form and Test button. A browser (Debian's Chromium, driven by Playwright) follows a task's
link to the session, inside the Airflow UI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.slow
def test_full_sync_under_airflow_standalone(standalone):
    assert "The stack is up." in standalone.up_output and "login: admin /" in standalone.up_output
    airflow = standalone.airflow
    airflow.set_paused("zuora_full_sync", False)
    run_id = airflow.trigger("zuora_full_sync")
    assert standalone.wait_for_run("zuora_full_sync", run_id) == "success", standalone.log()
    sf = standalone.salesforce()
    assert sf.query("SELECT COUNT() FROM Zuora__CustomerAccount__c")["totalSize"] > 20
    assert sf.query("SELECT COUNT() FROM Zuora__Subscription__c")["totalSize"] > 20

    store = standalone.state_store()
    session = store.get_session(next(s["id"] for s in store.list_sessions(limit=50) if s["run_id"] == run_id))
    assert session["status"] == "Finished with Errors" and session["rejected"] > 0
    check_lineage(airflow, run_id, session)
    link = check_run_note_and_links(airflow, run_id, session)
    follow_the_link_in_a_browser(standalone, link, session)


def check_lineage(airflow, run_id: str, session: dict) -> None:
    """Assets page: every object the sync reads and writes, and this run's events with its counts."""
    from zuora_sync.mapping import load_mapping

    objects = load_mapping().scope_objects("accounts")
    listed = set()
    for scheme in ("salesforce://", "zuora://"):
        answer = airflow.call("GET", "/api/v2/assets", params={"uri_pattern": scheme, "limit": 100})
        answer.raise_for_status()
        listed |= {a["uri"] for a in answer.json()["assets"]}
    assert {f"salesforce://salesforce_default/{o.salesforce}" for o in objects} <= listed, listed
    assert {f"zuora://zuora_default/{o.table}" for o in objects} <= listed, listed
    answer = airflow.call("GET", "/api/v2/assets/events", params={
        "source_dag_id": "zuora_full_sync", "source_run_id": run_id, "limit": 100})
    answer.raise_for_status()
    events = {(e["source_task_id"], e["uri"]): e["extra"] for e in answer.json()["asset_events"]}
    assert len(events) == 3 * len(objects), sorted(events)
    for obj in objects:
        counts = session["objects"][obj.name]
        extract = events[(f"extract_{obj.name}", f"zuora://zuora_default/{obj.table}")]
        assert extract["session_id"] == session["id"] and extract["data_query_job"]
        load = events[(f"load_{obj.name}", f"salesforce://salesforce_default/{obj.salesforce}")]
        assert load["extracted"] == counts["extracted"]  # the load reads the rows (pipelined)
        delete = events[("delete_removed", f"salesforce://salesforce_default/{obj.salesforce}")]
        assert (load["upserted"], delete["removed"]) == (counts["upserted"], counts["deleted"]), obj.name
        assert load["rejected"] + delete["rejected"] == counts["failed"], obj.name


def check_run_note_and_links(airflow, run_id: str, session: dict) -> str:
    """The run is green with a note saying Finished with Errors; a task's link opens its session."""
    run = airflow.call("GET", f"/api/v2/dags/zuora_full_sync/dagRuns/{run_id}").json()
    page = f"{airflow.base}/plugin/zuora-sync/zuora-sync/ui/?session={session['id']}"
    assert run["state"] == "success"
    assert run["note"].startswith(f"**Zuora sync: Finished with Errors** — [session {session['id']}]({page}) (Full): "
                                  f"{session['rejected']:,} record{'' if session['rejected'] == 1 else 's'} "
                                  "rejected by Salesforce"), run["note"]
    for task_id in ("begin_session", "load_Subscription", "end_session"):
        links = airflow.call("GET", f"/api/v2/dags/zuora_full_sync/dagRuns/{run_id}/taskInstances/{task_id}/links")
        assert links.json()["extra_links"] == {"Zuora Sync session": page}, (task_id, links.text)
    return page


def follow_the_link_in_a_browser(standalone, link: str, session: dict) -> None:
    """The link, opened by someone not logged in yet: Airflow's login, then the Airflow UI with the
    Zuora Sync page in it, showing the session (the page honours ``?session=``)."""
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install -y chromium (make test does)"
    password = json.loads((standalone.directory / "airflow" / "passwords.json").read_text())["admin"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="en-US")
            page.goto(link)
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            frame = page.frame_locator('iframe[title="Zuora Sync"]')
            expect(frame.locator("#detail-title")).to_have_text(
                f"Session #{session['id']}: Full, Finished with Errors", timeout=30_000)
            expect(frame.locator("#rejected-summary")).to_contain_text(f"{session['rejected']:,} rejected record")
        finally:
            browser.close()


@pytest.mark.slow
def test_the_zuora_connection_type_in_admin_connections(standalone):
    """The form Admin → Connections builds for type Zuora, and its Test button on ``zuora_default``
    (made by ``make up`` with that type): it connects, and a wrong secret fails without showing it."""
    airflow = standalone.airflow
    forms = airflow.call("GET", "/ui/connections/hook_meta")
    forms.raise_for_status()
    zuora = next(form for form in forms.json() if form["connection_type"] == "zuora")
    assert zuora["hook_name"] == "Zuora" and zuora["standard_fields"]["host"]["title"] == "REST base URL"
    assert set(zuora["extra_fields"]) == {"entity_id", "timeout", "poll_interval"}
    stored = airflow.call("GET", "/api/v2/connections/zuora_default").json()
    assert stored["conn_type"] == "zuora"

    tested = airflow.call("POST", "/api/v2/connections/test", json={"connection_id": "zuora_default",
                                                                     "conn_type": "zuora"})
    assert tested.json() == {"status": True, "message": f"Connected to Zuora at {standalone.zuora_url}"}, tested.text
    wrong = "Wrong-Secret-0123456789"
    refused = airflow.call("POST", "/api/v2/connections/test", json={"connection_id": "zuora_default",
                                                                      "conn_type": "zuora", "password": wrong}).json()
    assert refused["status"] is False and "401" in refused["message"], refused
    assert "Invalid client id or client secret" in refused["message"] and wrong not in refused["message"]


@pytest.mark.slow
def test_a_run_marked_failed_mid_session_does_not_hold_the_next_one_back(standalone):
    """Marking a run failed in the middle of its session (the UI's "Mark run as failed", here its
    REST call) kills its tasks and skips ``end_session``: the session never releases its lock.
    The next run takes it over at once, not after the six-hour lease, and records the stranded
    session as a Failure."""
    airflow, store = standalone.airflow, standalone.state_store()
    dag_id = "zuora_full_sync"
    faults = standalone.salesforce_env["SALESFORCE_SANDBOX_URL"] + "/__admin/faults"
    ca = standalone.salesforce_env["REQUESTS_CA_BUNDLE"]
    # Salesforce holds each Bulk job 20 s: the session is surely still loading when the run is marked.
    requests.post(faults, json={"kind": "bulk_delay", "seconds": 20}, verify=ca, timeout=60).raise_for_status()
    airflow.set_paused(dag_id, False)
    try:
        stranded_run = airflow.trigger(dag_id)
        standalone.wait_for("a load of the session running", lambda: airflow.task_state(
            dag_id, stranded_run, "load_CustomerAccount") == "running", 300, every=0.5)
        mark_failed(airflow, dag_id, stranded_run)
        requests.delete(faults, verify=ca, timeout=60).raise_for_status()
        holder = f"{dag_id}/{stranded_run}"
        holders = store.lock_holders()
        assert holders == {"accounts": holder}, (holders, airflow.run_state(dag_id, stranded_run),
                                                 store.list_sessions(limit=3))  # nothing released it

        next_run = airflow.trigger(dag_id)
        assert standalone.wait_for_run(dag_id, next_run, timeout=600) == "success", standalone.log()
    finally:
        requests.delete(faults, verify=ca, timeout=60)
        standalone.pause_when_idle(dag_id)
    # Mostly "failed"; sometimes "success": on SQLite the scheduler can read the run as running just
    # before the mark, then find every task ended (the end task skipped by the mark) and set success.
    ended = airflow.run_state(dag_id, stranded_run)
    assert ended in ("failed", "success"), ended
    sessions = {s["run_id"]: s for s in store.list_sessions(limit=50)}
    stranded = sessions[stranded_run]
    assert stranded["status"] == "Failure", stranded
    assert stranded["error"].startswith(f"interrupted: its DAG run ended ({ended}) without the session ending"), stranded
    assert sessions[next_run]["status"] in ("Finished", "Finished with Errors")
    assert store.lock_holders() == {}
    assert f"its DAG run has ended ({ended})" in airflow.task_log(dag_id, next_run, "begin_session")


def mark_failed(airflow, dag_id: str, run_id: str, attempts: int = 5) -> None:
    """The UI's "Mark run as failed"; again when Airflow answers 5xx (its metadata database is one
    SQLite file the scheduler writes all the time: "database is locked"). Marking is idempotent."""
    for attempt in range(attempts):
        marked = airflow.call("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})
        if marked.status_code == 200:
            return
        assert marked.status_code >= 500, marked.text  # anything else is an answer, not a busy database
        time.sleep(1 + attempt)
    pytest.fail(f"{run_id} could not be marked failed in {attempts} attempts: {marked.text}")
