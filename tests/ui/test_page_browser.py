"""The Zuora Sync page in a real browser, inside the Airflow UI, against the whole stack.

``python -m sandbox.stack up`` (what ``make up`` does) starts both sandboxes and ``airflow
standalone``; Chromium from Debian's packages (``/usr/bin/chromium``, installed by ``make test``),
driven by Playwright, then does what an operator does:

- a visitor who is not logged in is sent to Airflow's login, and comes back to the page after it;
- logs in through Airflow's login form and opens the page from Airflow's navigation;
- sees the full sync (triggered through the REST API) appear as a finished session, by itself,
  with the counts the state store holds, per session and per object;
- downloads the session's rejected records as CSV and finds the state store's rows in it;
- changes a real-time setting, and sees a wrong value refused (nothing written); the advice on
  fewer than 10 events, the scheduled sync frequency (daily: the incremental DAG's schedule follows),
  and why the admin, who has no email address, is not added to the recipients;
- switches the sync mode to Real-time on the page: the two DAGs are paused and unpaused, the
  real-time DAG's first session is a full sync that starts at once (its sensor's reason:
  ``mode_change``), and its email reaches ``make up``'s mail catcher;
- with real-time sync on, changes accounts in Zuora and watches "N more data change events ...
  until the next sync" fall as the callouts arrive, and the pending events listed newest first;
  then switches the mode back to None;
- follows a session's link to its DAG run page in the Airflow UI.

A second test opens Airflow's own Trigger dialogs: the full sync's ``objects`` field is a pick list
of the mapping's objects (a triggered run's conf holds the picked ones), and the cleanup's form
names its scopes and warns about Zuora Quotes.

Keyboard only where it matters: the session is opened, the tabs switched and the form saved with
keys. Screenshots go to the test's temporary directory; with ``ZUORA_SYNC_UPDATE_SCREENSHOTS=1``
they also replace the ones in ``docs/images`` that the README shows.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from conftest import ROOT, free_port, read_env_file

CHROMIUM = Path("/usr/bin/chromium")
DOCS_IMAGES = ROOT / "docs" / "images"
ACCOUNTS = 30
SEED = 5



@dataclass
class Stack:
    directory: Path
    base: str
    password: str
    headers: dict[str, str]
    zuora_url: str
    zuora_headers: dict[str, str]

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.base + path, headers=self.headers, timeout=60, **kwargs)

    def log(self) -> str:
        return (self.directory / "airflow.log").read_text(errors="replace")[-6000:]

    def store(self):
        from zuora_sync.state import StateStore

        return StateStore(f"sqlite:///{self.directory / 'airflow' / 'zuora_sync' / 'state.db'}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("page-stack") / "stack"
    ports = {"airflow": free_port(), "sf": free_port(), "zuora": free_port(), "mail": free_port(),
             "mail_web": free_port(), "worker_log": free_port(), "trigger_log": free_port()}
    up = subprocess.run(
        [sys.executable, "-m", "sandbox.stack", "up", "--dir", str(directory), "--accounts", str(ACCOUNTS),
         "--seed", str(SEED), "--airflow-port", str(ports["airflow"]), "--sf-port", str(ports["sf"]),
         "--zuora-port", str(ports["zuora"]), "--mail-port", str(ports["mail"]),
         "--mail-web-port", str(ports["mail_web"]), "--worker-log-port", str(ports["worker_log"]),
         "--trigger-log-port", str(ports["trigger_log"])],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        base = f"http://127.0.0.1:{ports['airflow']}"
        password = json.loads((directory / "airflow" / "passwords.json").read_text())["admin"]
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password},
                              timeout=30).json()["access_token"]
        zuora_env = read_env_file(directory / "zuora.env")
        zuora_conn = json.loads(zuora_env["AIRFLOW_CONN_ZUORA_DEFAULT"])
        zuora_token = requests.post(f"{zuora_env['ZUORA_SANDBOX_URL']}/oauth/token", timeout=30, data={
            "grant_type": "client_credentials", "client_id": zuora_conn["login"],
            "client_secret": zuora_conn["password"]}).json()["access_token"]
        yield Stack(directory, base, password, {"Authorization": f"Bearer {token}"}, zuora_env["ZUORA_SANDBOX_URL"],
                    {"Authorization": f"Bearer {zuora_token}"})
    finally:
        subprocess.run([sys.executable, "-m", "sandbox.stack", "down", "--dir", str(directory)], cwd=ROOT,
                       capture_output=True, timeout=180)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Not skipped when missing: `make test` installs Debian's chromium package.
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install -y chromium (make test does)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Any:
    """``shots(page, name)``: a screenshot of the window (into docs/images too when asked)."""
    update = os.environ.get("ZUORA_SYNC_UPDATE_SCREENSHOTS") == "1"

    def take(page: Any, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path))
        if update:
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_IMAGES / path.name)
        return path

    return take


def wait_for(what: str, check: Any, timeout: float, log: Any) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s\n{log()}")


def fmt(n: int) -> str:
    """A count as the page shows it (en-US grouping)."""
    return f"{n:,}"


@pytest.mark.slow
def test_the_zuora_sync_page_in_the_airflow_ui(stack: Stack, browser: Any, shots: Any, tmp_path: Path):
    # While the browser logs in: a full sync, triggered; and the product catalog sync (another
    # scope: they run side by side), unpaused, so the scheduler starts its latest daily run.
    assert stack.api("PATCH", "/api/v2/dags/zuora_full_sync", json={"is_paused": False}).ok
    run = stack.api("POST", "/api/v2/dags/zuora_full_sync/dagRuns", json={"logical_date": None})
    assert run.ok, run.text
    run_id = run.json()["dag_run_id"]
    assert stack.api("PATCH", "/api/v2/dags/zuora_product_catalog_sync", json={"is_paused": False}).ok

    # 1. Not logged in: the page sends the browser to Airflow's login, its data answers 401; after
    #    logging in there, the browser is back on the page.
    stranger = browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-US")
    page = stranger.new_page()
    page.goto(f"{stack.base}/zuora-sync/ui/")
    expect(page).to_have_url(re.compile(r"/auth/login\?next=%2Fzuora-sync%2Fui%2F$"))
    for path in ("/zuora-sync/sessions", "/zuora-sync/sessions/1/rejected.csv", "/zuora-sync/pending-events",
                 "/zuora-sync/api-usage", "/zuora-sync/status", "/zuora-sync/ui/assets/page.js"):
        assert page.request.get(stack.base + path).status == 401, path
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(stack.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{stack.base}/zuora-sync/ui/")
    expect(page.get_by_role("heading", name="Zuora Sync", level=1)).to_be_visible()
    stranger.close()

    # 2. Log in through the Airflow UI and open the page from its navigation.
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-US", accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(stack.base + "/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(stack.password)
    page.get_by_role("button", name="Sign in").click()
    nav = page.get_by_role("link", name="Zuora Sync")
    expect(nav).to_be_visible(timeout=30_000)
    nav.click()
    expect(page).to_have_url(re.compile(r"/plugin/zuora-sync"))
    frame = page.frame_locator('iframe[title="Zuora Sync"]')
    expect(frame.get_by_role("heading", name="Zuora Sync", level=1)).to_be_visible()
    expect(frame.locator("#mode")).to_have_text("None")

    # 3. The syncs end; the page shows their sessions by itself (live refresh), with their counts.
    def ended(dag_id: str) -> bool:
        runs = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]
        return len(runs) == 1 and runs[0]["state"] in ("success", "failed")

    wait_for("the full sync", lambda: ended("zuora_full_sync"), 300, stack.log)
    wait_for("the product catalog sync", lambda: ended("zuora_product_catalog_sync"), 300, stack.log)
    store = stack.store()
    (session,) = store.list_sessions(session_type="Full")
    (catalog,) = store.list_sessions(session_type="Product Catalog")
    assert session["status"] == "Finished with Errors" and session["rejected"] > 0, session
    assert catalog["status"] in ("Finished", "Finished with Errors"), catalog
    expect(frame.locator(f'#sessions tbody tr[data-session-id="{catalog["id"]}"]')).to_contain_text(
        "Product Catalog", timeout=20_000)
    row = frame.locator(f'#sessions tbody tr[data-session-id="{session["id"]}"]')
    expect(row).to_contain_text("Finished with Errors", timeout=20_000)
    expect(row).to_contain_text("Full")
    for name, key in (("extracted", "extracted"), ("upserted", "upserted"), ("deleted", "deleted"),
                      ("rejected", "failed")):
        expect(row.locator(f'[data-count="{name}"]')).to_have_text(fmt(session["totals"][key]))
    expect(row.locator('[data-count="changes"]')).to_have_text(
        " / ".join(fmt(session["totals"][k]) for k in ("created", "updated", "unchanged", "removed")))
    expect(row).to_contain_text(f'{fmt(session["api_calls"]["zuora"])} / {fmt(session["api_calls"]["salesforce"])}')
    expect(frame.locator("#sessions tbody tr")).to_have_count(2)
    shots(page, "zuora-sync-page")
    # The filters: by type, then by status (none of these sessions failed), then all again.
    frame.get_by_label("Type", exact=True).select_option("Product Catalog")
    frame.get_by_role("button", name="Apply filters").click()
    expect(frame.locator("#sessions tbody tr")).to_have_count(1)
    expect(frame.locator(f'#sessions tbody tr[data-session-id="{catalog["id"]}"]')).to_be_visible()
    frame.get_by_label("Type", exact=True).select_option("")
    frame.get_by_label("Status", exact=True).select_option("Failure")
    frame.get_by_role("button", name="Apply filters").click()
    expect(frame.locator("#sessions tbody")).to_contain_text("No sessions match these filters.")
    frame.get_by_role("button", name="Reset").click()
    expect(frame.locator("#sessions tbody tr")).to_have_count(2)

    # 4. The session, opened with the keyboard: counts per object, rejected records, the CSV.
    row.get_by_role("button", name=f"Open session {session['id']}").focus()
    page.keyboard.press("Enter")
    expect(frame.locator("#detail-title")).to_be_focused()
    expect(frame.locator("#detail-title")).to_have_text(f"Session #{session['id']}: Full, Finished with Errors")
    for obj, counts in session["objects"].items():
        object_row = frame.locator(f'#detail-objects tbody tr[data-object="{obj}"]')
        for key in ("extracted", "upserted", "deleted", "failed", "created", "updated", "unchanged", "removed"):
            expect(object_row.locator(f'[data-count="{key}"]')).to_have_text(fmt(counts[key]))
    expect(frame.locator("#detail-changes-note")).to_contain_text("unchanged: rows not sent")
    stored = list(store.rejected_for_session(session["id"]))
    expect(frame.locator("#rejected tbody tr")).to_have_count(min(len(stored), 100))
    expect(frame.locator("#rejected-summary")).to_contain_text(f"{fmt(len(stored))} rejected record")
    first = stored[0]
    expect(frame.locator("#rejected tbody tr").first).to_contain_text(first["error_code"])
    shots(page, "zuora-sync-rejected")
    with page.expect_download() as download_info:
        frame.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    assert download.suggested_filename == f"zuora-sync-session-{session['id']}-rejected.csv"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with open(saved, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(stored)
    assert [(r["object"], r["external_id"], r["error_code"], r["message"]) for r in rows] == [
        (s["object"], s["external_id"] or "", s["error_code"], s["message"]) for s in stored]
    assert all(r["session_id"] == str(session["id"]) and r["salesforce_object"].endswith("__c") for r in rows)
    assert all(json.loads(r["record"]) == s["row"] for r, s in zip(rows, stored, strict=True))
    # Salesforce's own words: the generated tenant's invalid CRM Ids are refused as such.
    assert {r["error_code"] for r in rows} & {"INVALID_CROSS_REFERENCE_KEY", "MALFORMED_ID", "INVALID_ID_FIELD",
                                             "FIELD_INTEGRITY_EXCEPTION"}, {r["error_code"] for r in rows}
    frame.get_by_role("button", name="Back to sync history").click()
    expect(row.get_by_role("button", name=f"Open session {session['id']}")).to_be_focused()

    # 5. The charts: one bar pair per session, API requests per day against the allowance.
    frame.get_by_role("tab", name="Charts").click()
    expect(frame.locator("#chart-records svg rect.synced")).to_have_count(2)
    expect(frame.locator("#allowance-note")).to_contain_text("API requests a day", timeout=30_000)
    expect(frame.locator("#chart-usage svg rect.usage")).to_have_count(30)
    shots(page, "zuora-sync-charts")

    # 6. Settings, by keyboard: a wrong value is refused (nothing written), a right one saved.
    frame.get_by_role("tab", name="Charts").focus()
    page.keyboard.press("ArrowRight")
    expect(frame.get_by_role("tab", name="Sync settings")).to_be_focused()
    expect(frame.get_by_role("tab", name="Sync settings")).to_have_attribute("aria-selected", "true")
    events_select = frame.get_by_label("Maximum data change events before sync")
    expect(events_select.locator("option")).to_have_text(
        ["1", "5", "10", "20", "30", "40", "50", "100", "200", "300", "400", "500"])
    # The seed's advice, in the form: said always, stressed when fewer than 10 are chosen.
    expect(frame.locator("#s-max-events-hint")).to_contain_text(
        "fewer than 10 events per sync uses more Salesforce API requests")
    expect(frame.locator("#s-max-events-warning")).to_be_hidden()
    events_select.select_option("5")
    expect(frame.locator("#s-max-events-warning")).to_be_visible()
    expect(frame.locator("#s-max-events-warning")).to_contain_text("Fewer than 10 events per sync uses more Salesforce API requests")
    # The admin of `make up` has no email address (SimpleAuthManager users have none): told, not added.
    expect(frame.get_by_label(re.compile("Add me"))).to_be_disabled()
    expect(frame.locator("#s-add-me-note")).to_have_text(
        "Your Airflow user (admin) has no email address: put yours in the recipients to get the emails.")
    expect(frame.get_by_label("Email notifications: manual and on-demand syncs")).to_have_value(
        "all_including_zero_records")
    frequency = frame.get_by_label("Scheduled sync frequency", exact=True)
    expect(frequency.locator("option")).to_have_text(["Every 2 hours", "Daily (00:00 UTC)"])
    minutes = frame.get_by_label("Maximum minutes between syncs")
    expect(minutes).to_have_value("120")
    minutes.fill("0")
    minutes.press("Enter")
    expect(frame.locator("#s-max-minutes-error")).to_have_text("Must be a whole number of at least 1 and at most 10080, got 0")
    expect(minutes).to_have_attribute("aria-invalid", "true")
    expect(minutes).to_be_focused()
    recipients = frame.get_by_label("Email recipients")
    recipients.fill("ops@example.com, not-an-address")
    minutes.fill("60")
    minutes.press("Enter")
    expect(frame.locator("#s-recipients-error")).to_contain_text("not an address: not-an-address")
    shots(page, "zuora-sync-settings")
    assert stack.api("GET", "/zuora-sync/settings").json()["source"] == "defaults", "nothing may be written"
    recipients.fill("ops@example.com")
    events_select.select_option("50")
    frequency.select_option("daily")
    frame.get_by_role("button", name="Save settings").press("Enter")
    expect(frame.locator("#settings-message")).to_contain_text("Saved")
    expect(frame.locator("#settings-source")).to_contain_text("Stored in the Airflow Variable zuora_sync_settings")
    saved_settings = stack.api("GET", "/zuora-sync/settings").json()["settings"]
    assert (saved_settings["max_events_before_sync"], saved_settings["max_minutes_between_syncs"],
            saved_settings["email_recipients"], saved_settings["scheduled_sync_frequency"]) == (
        50, 60, ["ops@example.com"], "daily")
    # The API refuses what the form would not send.
    refused = stack.api("PUT", "/zuora-sync/settings", json={"max_events_before_sync": 7})
    assert refused.status_code == 400 and refused.json()["allowed"]["max_events_before_sync"][6] == 50

    # 7. The sync mode, chosen on the page: Real-time. The two DAGs are switched, and the real-time
    #    DAG's first session is a full sync that starts at once (Zuora 360's Turbo Sync rule).
    frame.get_by_role("radio", name=re.compile(r"^\s*Real-time")).check()
    frame.get_by_role("button", name="Change sync mode").click()
    expect(frame.locator("#mode-message")).to_have_text(
        "The sync mode is Real-time. Its first session is a full sync, and it starts now.")
    expect(frame.locator("#mode")).to_have_text("Real-time", timeout=20_000)
    paused = {d: stack.api("GET", f"/api/v2/dags/{d}").json()["is_paused"]
              for d in ("zuora_incremental_sync", "zuora_realtime_sync")}
    assert paused == {"zuora_incremental_sync": True, "zuora_realtime_sync": False}

    def realtime_full_sync() -> dict | None:
        newest = store.list_sessions(limit=1)[0]
        return newest if newest["dag_id"] == "zuora_realtime_sync" and newest["ended_at"] else None

    turbo = wait_for("the real-time DAG's full sync", realtime_full_sync, 300, stack.log)
    assert (turbo["session_type"], turbo["status"]) == ("Full", "Finished with Errors")  # invalid CRM Ids
    (rt_run,) = [r for r in stack.api("GET", "/api/v2/dags/zuora_realtime_sync/dagRuns").json()["dag_runs"]
                 if r["dag_run_id"] == turbo["run_id"]]
    waited = stack.api("GET", f"/api/v2/dags/zuora_realtime_sync/dagRuns/{requests.utils.quote(rt_run['dag_run_id'], safe='')}"
                              "/taskInstances/wait_for_changes/xcomEntries/return_value",
                       params={"deserialize": True}).json()["value"]
    waited = json.loads(waited) if isinstance(waited, str) else waited
    assert waited["reason"] == "mode_change", waited  # not 50 events, not the 60 minutes
    # Its email (errors only: it has rejected records) reached make up's mail catcher.
    catcher = read_env_file(stack.directory / "mail.env")["MAIL_CATCHER_URL"]
    mail = wait_for("the session email", lambda: [m for m in requests.get(f"{catcher}api/messages", timeout=10).json()[
        "messages"] if f"session {turbo['id']} " in m["subject"]], 60, stack.log)
    assert mail[0]["to"] == "ops@example.com" and "Finished with Errors" in mail[0]["subject"]

    # Each change in Zuora is a callout, and the figure falls with it.
    message = frame.locator("#next-sync-message")
    expect(message).to_have_text(re.compile(r"^50 more data change events, or at most \d+ minutes, until the next sync$"),
                                 timeout=20_000)
    accounts = requests.post(f"{stack.zuora_url}/v1/action/query", headers=stack.zuora_headers, timeout=30,
                             json={"queryString": "select Id, Name from Account"}).json()["records"][:3]
    for n, account in enumerate(accounts, start=1):
        answer = requests.post(f"{stack.zuora_url}/v1/action/update", headers=stack.zuora_headers, timeout=30,
                               json={"type": "Account", "objects": [{"Id": account["Id"], "Name": f"Page test {n}"}]})
        assert answer.ok and answer.json()[0]["Success"], answer.text
        expect(message).to_have_text(re.compile(rf"^{50 - n} more data change events, or at most \d+ minutes"),
                                     timeout=20_000)
        expect(frame.locator("#pending-count")).to_have_text(str(n))
    assert store.pending_event_count() == 3
    frame.get_by_role("tab", name="Pending events").click()
    expect(frame.locator("#events tbody tr")).to_have_count(3)
    received = frame.locator("#events tbody tr td:nth-child(4)").all_inner_texts()
    assert received == [a["Id"] for a in reversed(accounts)], "newest first"
    shots(page, "zuora-sync-events")
    # Back to None, from the status bar's "Change".
    frame.get_by_role("button", name="Change the sync mode").click()
    expect(frame.get_by_role("radio", name=re.compile(r"^\s*Real-time"))).to_be_focused()
    frame.get_by_role("radio", name=re.compile(r"^\s*None")).check()
    frame.get_by_role("button", name="Change sync mode").click()
    expect(frame.locator("#mode-message")).to_have_text("The sync mode is None.")
    expect(frame.locator("#mode")).to_have_text("None", timeout=20_000)
    assert stack.api("GET", "/api/v2/dags/zuora_realtime_sync").json()["is_paused"] is True
    # The daily schedule chosen in step 6 is the incremental DAG's, once Airflow parsed its file again.
    wait_for("the daily schedule", lambda: "0 0 * * *" in json.dumps(
        stack.api("GET", "/api/v2/dags/zuora_incremental_sync/details").json()), 180, stack.log)

    # 8. From a session to its DAG run in the Airflow UI.
    frame.get_by_role("tab", name="Sync history").click()
    frame.get_by_role("link", name=f"Airflow DAG run of session {session['id']}").click()
    expect(page).to_have_url(re.compile(rf"/dags/zuora_full_sync/runs/{re.escape(requests.utils.quote(run_id, safe=''))}$"))
    expect(page.get_by_text(run_id).first).to_be_visible()
    assert not errors, errors
    context.close()


@pytest.mark.slow
def test_airflows_trigger_forms_offer_the_objects_as_a_pick_list_and_warn_before_a_catalog_cleanup(
        stack: Stack, browser: Any, shots: Any):
    """Airflow 3.3's own Trigger dialog, in Chromium: ``objects`` is a multi-select whose options are
    the mapping's objects (labelled with their Salesforce objects), and what is picked is the run's
    conf; the cleanup's scopes carry Zuora 360's names and the Zuora Quotes warning."""
    from zuora_sync.mapping import load_mapping

    context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
    page = context.new_page()
    page.goto(stack.base + "/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(stack.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Zuora Sync")).to_be_visible(timeout=30_000)

    page.goto(stack.base + "/dags/zuora_full_sync")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    objects = dialog.get_by_role("combobox", name="Select one or multiple values")
    objects.click()
    mapping = load_mapping()
    names = mapping.scopes["accounts"]
    expect(page.get_by_role("option")).to_have_text([f"{n} ({mapping.get(n).salesforce})" for n in names])
    page.get_by_role("option", name="Subscription (Zuora__Subscription__c)").click()
    objects.click()
    page.get_by_role("option", name="CustomerAccount (Zuora__CustomerAccount__c)").click()
    dialog.get_by_role("heading", name=re.compile("Trigger Dag")).click()  # closes the menu (Escape would close the dialog)
    dialog.locator("label").filter(has=page.locator('input[name="element_dry_run"]')).click()
    expect(dialog.locator('input[name="element_dry_run"]')).to_be_checked()
    # Force (send every record, whatever its hash) is offered, off by default.
    expect(dialog.locator('input[name="element_force"]')).not_to_be_checked()
    shots(page, "trigger-form-objects")
    before = {r["dag_run_id"] for r in stack.api("GET", "/api/v2/dags/zuora_full_sync/dagRuns").json()["dag_runs"]}
    dialog.get_by_role("button", name="Trigger").click()

    def new_run() -> dict | None:
        runs = stack.api("GET", "/api/v2/dags/zuora_full_sync/dagRuns").json()["dag_runs"]
        return next((r for r in runs if r["dag_run_id"] not in before), None)

    run = wait_for("the triggered run", new_run, 60, stack.log)
    assert run["conf"] == {"objects": ["Subscription", "CustomerAccount"], "dry_run": True, "force": False}, run["conf"]

    page.goto(stack.base + "/dags/zuora_cleanup")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Accounts & Related Objects")
    expect(dialog).to_contain_text("a Product Catalog cleanup is safe only with Zuora Quotes 3.x or later")
    expect(dialog).to_contain_text("Quotes built on the current catalog in Salesforce may not work properly")
    expect(dialog).to_contain_text("a run with dry run off and this unticked fails, deleting nothing")
    dialog.get_by_role("combobox").first.click()
    expect(page.get_by_role("option")).to_have_text(["Accounts & Related Objects", "Product Catalog"])
    shots(page, "trigger-form-cleanup")
    context.close()
    stack.api("PATCH", f"/api/v2/dags/zuora_full_sync/dagRuns/{requests.utils.quote(run['dag_run_id'], safe='')}",
              json={"state": "failed"})  # a dry run the test needs no more: stop it
