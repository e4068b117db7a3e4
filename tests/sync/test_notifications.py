"""Session emails against a real local SMTP server (aiosmtpd) through Airflow's SMTP provider.

Sessions are real rows of a real state store (SQLite file); the emails go through ``SmtpHook`` and
the ``smtp_default`` connection (an ``AIRFLOW_CONN_SMTP_DEFAULT`` environment variable) to an
aiosmtpd server on a free port, and the tests read what arrived.
"""

from __future__ import annotations

import datetime as dt
import logging
from html.parser import HTMLParser

import pytest
from aiosmtpd.controller import Controller
from conftest import free_port
from smtp_inbox import SENDER, Inbox, smtp_connection
from zuora_sync.notifications import compose, notify_session_end, should_notify
from zuora_sync.settings import EMAIL_CHOICES, Settings
from zuora_sync.state import StateStore

RECIPIENTS = ("ops@example.test", "finance@example.test")
KINDS = ("finished_records", "finished_zero", "with_errors", "failure", "stopped")
#: Which sessions each setting emails about (the decisions documented in zuora_sync.notifications).
EXPECTED = {
    "none": set(),
    "errors_only": {"with_errors", "failure", "stopped"},
    "all_excluding_zero_records": {"finished_records", "with_errors", "failure", "stopped"},
    "all_including_zero_records": set(KINDS),
}


def table_rows(body: str) -> list[list[str]]:
    """The HTML's table rows as lists of cell texts (entities decoded)."""
    rows: list[list[str]] = []
    cell: list[str] | None = None

    class Rows(HTMLParser):
        def handle_starttag(self, tag, attrs):
            nonlocal cell
            if tag == "tr":
                rows.append([])
            elif tag in ("td", "th"):
                cell = []

        def handle_endtag(self, tag):
            nonlocal cell
            if tag in ("td", "th") and cell is not None:
                rows[-1].append("".join(cell).strip())
                cell = None

        def handle_data(self, data):
            if cell is not None:
                cell.append(data)

    Rows().feed(body)
    return rows


@pytest.fixture
def inbox(monkeypatch: pytest.MonkeyPatch):
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(port))
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture
def store(tmp_path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path}/state.db")


def make_session(store: StateStore, kind: str, *, run: str = "", trigger: str = "scheduled",
                 session_type: str | None = None) -> int:
    """A finished session of one representative kind, built through the store's own API."""
    start = dt.datetime(2025, 3, 1, 10, 0, tzinfo=dt.UTC)
    session_type = session_type or ("Incremental" if kind != "stopped" else "Real-time")
    sid = store.start_session(session_type=session_type, scope="accounts",
                              trigger=trigger, dag_id="zuora_incremental_sync", run_id=f"{kind}{run}",
                              window_start=start, window_end=start + dt.timedelta(minutes=30))
    store.add_api_calls(sid, zuora=7, salesforce=12)
    if kind == "finished_records":
        store.record_counts(sid, "Account", extracted=3, upserted=3)
        store.record_counts(sid, "Contact", extracted=2, upserted=1, deleted=1)
        status = store.finish_session(sid)
    elif kind == "finished_zero":
        store.record_counts(sid, "Account", extracted=0)
        status = store.finish_session(sid)
    elif kind == "with_errors":
        store.record_counts(sid, "Account", extracted=20, upserted=8, failed=12)
        store.add_rejected(sid, "Account", [
            (f"A-{i:03d}<x>", "FIELD_CUSTOM_VALIDATION_EXCEPTION",
             f'Row {i}: <b>bad</b> & "quoted" value; Authorization: Bearer tok{i}abcdefgh',
             {"Name": "Acme", "password": "hunter2-in-row"}) for i in range(12)])
        status = store.finish_session(sid)
    elif kind == "failure":
        store.record_counts(sid, "Account", extracted=5)
        status = store.finish_session(sid, error="tasks did not finish: sync_Account")
    elif kind == "stopped":
        store.record_counts(sid, "Account", extracted=5, upserted=2)
        status = store.finish_session(sid, stopped=True, error="Salesforce API requests left today: 400 (reserve 500)")
    else:
        raise ValueError(kind)
    expected = {"finished_records": "Finished", "finished_zero": "Finished", "with_errors": "Finished with Errors",
                "failure": "Failure", "stopped": "Stopped"}[kind]
    assert status == expected
    return sid


# ------------------------------------------------------------------------------ the rules


@pytest.mark.parametrize(("setting", "status", "written", "expected"), [
    ("none", "Failure", 0, False),
    ("none", "Finished", 10, False),
    ("errors_only", "Finished", 10, False),
    ("errors_only", "Finished with Errors", 0, True),
    ("errors_only", "Failure", 0, True),
    ("errors_only", "Stopped", 3, True),
    ("all_excluding_zero_records", "Finished", 0, False),
    ("all_excluding_zero_records", "Finished", 1, True),
    ("all_excluding_zero_records", "Finished with Errors", 0, True),   # everything rejected: still an error
    ("all_excluding_zero_records", "Failure", 0, True),
    ("all_excluding_zero_records", "Stopped", 0, True),
    ("all_including_zero_records", "Finished", 0, True),
    ("all_including_zero_records", "Failure", 0, True),
    ("all_including_zero_records", "Running", 0, False),               # not ended: never
    ("errors_only", "Running", 0, False),
])
def test_should_notify(setting: str, status: str, written: int, expected: bool) -> None:
    assert should_notify(setting, status, written) is expected


def test_should_notify_refuses_an_unknown_setting() -> None:
    with pytest.raises(ValueError, match="errors_only"):
        should_notify("always", "Finished", 1)


# ------------------------------------------------------------------------------ real emails


@pytest.mark.parametrize("setting", EMAIL_CHOICES)
def test_each_setting_emails_exactly_the_right_sessions(setting: str, inbox: Inbox, store: StateStore) -> None:
    settings = Settings(email_notifications=setting, email_recipients=RECIPIENTS)
    sessions = {kind: make_session(store, kind) for kind in KINDS}

    sent = {kind for kind, sid in sessions.items() if notify_session_end(store, sid, settings)}

    assert sent == EXPECTED[setting]
    assert len(inbox.messages) == len(EXPECTED[setting])  # one email per session, to all recipients at once
    arrived = set()
    for rcpt_tos, message in inbox.messages:
        assert sorted(rcpt_tos) == sorted(RECIPIENTS)
        assert message["From"] == SENDER
        sid = next(s for s in sessions.values() if f" session {s} " in message["Subject"])
        arrived.add(next(k for k, s in sessions.items() if s == sid))
    assert arrived == EXPECTED[setting]


def test_manual_and_on_demand_sessions_follow_their_own_setting_all_sessions_by_default(
        inbox: Inbox, store: StateStore, caplog) -> None:
    """The seed: Email Notifications is a setting of Recurring Sync; All (Including Zero Records) is
    the default for on-demand and manual syncs. A quiet manual or on-demand session (Finished, zero
    records) is emailed under the defaults; the same scheduled or backfill session is not."""
    settings = Settings(email_recipients=RECIPIENTS)  # defaults: errors_only / all_including_zero_records
    sessions = {
        "manual": make_session(store, "finished_zero", run="-m", trigger="manual"),
        "manual_enum": make_session(store, "finished_zero", run="-e", trigger="DagRunType.MANUAL"),
        "on_demand": make_session(store, "finished_zero", run="-o", trigger="scheduled", session_type="On-demand"),
        "scheduled": make_session(store, "finished_zero", run="-s", trigger="scheduled"),
        "backfill": make_session(store, "finished_zero", run="-b", trigger="backfill"),
    }
    with caplog.at_level(logging.INFO, logger="zuora_sync.notifications"):
        sent = {name for name, sid in sessions.items() if notify_session_end(store, sid, settings)}
    assert sent == {"manual", "manual_enum", "on_demand"}
    assert len(inbox.messages) == 3
    assert "the email_notifications setting is errors_only" in caplog.text  # why the recurring ones did not
    # The manual setting can be changed like the other; recurring sessions keep theirs.
    quiet = Settings(email_recipients=RECIPIENTS, manual_email_notifications="errors_only",
                     email_notifications="all_including_zero_records")
    assert notify_session_end(store, sessions["manual"], quiet) is False
    assert notify_session_end(store, sessions["scheduled"], quiet) is True


def test_email_content(inbox: Inbox, store: StateStore) -> None:
    make_session(store, "finished_records")
    sid = make_session(store, "with_errors")
    settings = Settings(email_notifications="errors_only", email_recipients=RECIPIENTS)

    assert notify_session_end(store, sid, settings) is True

    [(_, message)] = inbox.messages
    subject = message["Subject"]
    assert "Incremental" in subject and "Finished with Errors" in subject and f"session {sid}" in subject
    assert "8 records synced" in subject and "12 errors" in subject
    assert sorted(a.strip() for a in message["To"].split(",")) == sorted(RECIPIENTS)
    body = message.get_body(("html",)).get_content()
    # Counts per object and API requests.
    rows = table_rows(body)
    assert ["Object", "Extracted", "Upserted", "Deleted", "Failed"] in rows
    assert ["Account", "20", "8", "0", "12"] in rows and ["Total", "20", "8", "0", "12"] in rows
    assert "Zuora 7, Salesforce 12" in body
    assert "2025-03-01 10:00:00 PST" not in body and "2025-03-01 02:00:00 PST" in body  # Zuora's time zone
    # The first ten errors, escaped, and how many more.
    for i in range(10):
        assert f"A-{i:03d}&lt;x&gt;" in body
    assert "A-010" not in body and "A-011" not in body
    assert "and 2 more rejected records" in body
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in body
    assert "Row 0: &lt;b&gt;bad&lt;/b&gt; &amp; &quot;quoted&quot; value" in body
    assert "<b>bad</b>" not in body and "<x>" not in body
    # No secrets: neither the rejected rows' data nor tokens inside messages.
    assert "hunter2" not in body and "tok0abcdefgh" not in body
    assert "Bearer ***" in body


def test_compose_plain_text(store: StateStore) -> None:
    sid = make_session(store, "with_errors")
    subject, text, html = compose(store.get_session(sid), store.rejected_for_session(sid), limit=3)
    assert subject.startswith(f"Zuora sync: Incremental session {sid} Finished with Errors")
    assert "Status:" in text and "Finished with Errors" in text
    assert "Window:" in text and "2025-03-01 10:00:00 UTC to 2025-03-01 10:30:00 UTC" in text
    assert "Account  20 / 8 / 0 / 12" in text and "Total    20 / 8 / 0 / 12" in text
    assert "API requests: Zuora 7, Salesforce 12" in text
    assert "First 3 of 12 rejected records:" in text
    assert "Account A-002<x>: FIELD_CUSTOM_VALIDATION_EXCEPTION" in text and "A-003" not in text
    assert "and 9 more rejected records" in text
    assert "hunter2" not in text and "tok1abcdefgh" not in text
    assert "&lt;" not in text and "<x>" not in html


def test_failure_and_stopped_emails_give_the_reason(store: StateStore) -> None:
    failure = make_session(store, "failure")
    stopped = make_session(store, "stopped")
    _, text, html = compose(store.get_session(failure), store.rejected_for_session(failure))
    assert "Reason:" in text and "tasks did not finish: sync_Account" in text and "rejected" not in text
    assert ["Reason", "tasks did not finish: sync_Account"] in table_rows(html) and "rejected" not in html
    subject, text, _ = compose(store.get_session(stopped), [])
    assert "Real-time" in subject and "Stopped" in subject and "2 records synced" in subject
    assert "Salesforce API requests left today: 400 (reserve 500)" in text


def test_works_with_an_airflow_task_logger(inbox: Inbox, store: StateStore) -> None:
    from airflow.sdk import BaseOperator

    sid = make_session(store, "finished_zero")
    settings = Settings(email_notifications="all_including_zero_records", email_recipients=RECIPIENTS[:1])
    assert notify_session_end(store, sid, settings, log=BaseOperator(task_id="end_session").log) is True
    [(rcpt_tos, message)] = inbox.messages
    assert rcpt_tos == list(RECIPIENTS[:1])
    assert "Finished — 0 records synced" in message["Subject"]
    assert "No objects were processed" not in message.get_body(("html",)).get_content()


def test_no_recipients_logs_and_sends_nothing(inbox: Inbox, store: StateStore, caplog) -> None:
    sid = make_session(store, "failure")
    settings = Settings(email_notifications="all_including_zero_records", email_recipients=())
    with caplog.at_level(logging.WARNING, logger="zuora_sync.notifications"):
        assert notify_session_end(store, sid, settings) is False
    assert inbox.messages == []
    assert "no email_recipients" in caplog.text


def test_unreachable_smtp_server_is_logged_never_raised(store: StateStore, monkeypatch, caplog) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(free_port()))  # nothing listens there
    sid = make_session(store, "failure")
    settings = Settings(email_notifications="errors_only", email_recipients=RECIPIENTS)
    log = logging.getLogger("test.end_task")
    with caplog.at_level(logging.INFO, logger="test.end_task"):
        assert notify_session_end(store, sid, settings, log=log) is False
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "could NOT be sent" in record.getMessage() and "smtp_default" in record.getMessage()
    assert "tasks did not finish" in record.getMessage()  # the summary is not lost: it is in the log


def test_missing_connection_and_missing_session_are_logged(store: StateStore, monkeypatch, caplog) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    sid = make_session(store, "failure")
    settings = Settings(email_notifications="errors_only", email_recipients=RECIPIENTS)
    with caplog.at_level(logging.INFO, logger="zuora_sync.notifications"):
        assert notify_session_end(store, sid, settings, smtp_conn_id="no_such_smtp") is False
        assert notify_session_end(store, 9999, settings) is False
    assert "no_such_smtp" in caplog.text
    assert "could not prepare the session email" in caplog.text
