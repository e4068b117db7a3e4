"""The rules behind the assets' URIs, the run notes and the session links, without a DAG run.

The DAG runs that use them are in ``test_sync_end_to_end.py`` (``dag.test()``) and
``tests/stack/test_standalone.py`` (``airflow standalone``, read back through the REST API).
"""

from __future__ import annotations

import pytest

from zuora_sync.lineage import salesforce_asset, salesforce_org, zuora_asset, zuora_tenant
from zuora_sync.links import session_page_url
from zuora_sync.run_notes import MARKER, MAX_NOTE, merge_note, session_note


def test_asset_uris_are_kept_as_written_by_airflow():
    """Airflow 3.3 has no handler for these schemes: the URI must survive its sanitising unchanged."""
    assert salesforce_asset("Zuora__Subscription__c").uri == "salesforce://salesforce_default/Zuora__Subscription__c"
    assert zuora_asset("subscription").uri == "zuora://zuora_default/subscription"
    assert salesforce_asset("Product2", "acme.my.salesforce.com").uri == "salesforce://acme.my.salesforce.com/Product2"


def test_the_org_and_tenant_come_from_airflows_configuration(monkeypatch):
    monkeypatch.setenv("AIRFLOW__ZUORA_SYNC__SALESFORCE_ORG", "acme.my.salesforce.com")
    monkeypatch.setenv("AIRFLOW__ZUORA_SYNC__ZUORA_TENANT", "rest.na.zuora.com")
    assert (salesforce_org(), zuora_tenant()) == ("acme.my.salesforce.com", "rest.na.zuora.com")
    for bad in ("user:secret@host", "host/path", "a b", "host?x=1"):
        monkeypatch.setenv("AIRFLOW__ZUORA_SYNC__SALESFORCE_ORG", bad)
        with pytest.raises(ValueError, match=r"\[zuora_sync\] salesforce_org"):
            salesforce_org()


def test_the_session_link_opens_the_page_inside_the_airflow_ui():
    assert session_page_url(12, "http://127.0.0.1:8080/") == \
        "http://127.0.0.1:8080/plugin/zuora-sync/zuora-sync/ui/?session=12"
    # Behind a path prefix the iframe's own path carries the prefix too.
    assert session_page_url(7, "https://example.com/airflow") == \
        "https://example.com/airflow/plugin/zuora-sync/airflow/zuora-sync/ui/?session=7"
    assert session_page_url(None, "") == "/plugin/zuora-sync/zuora-sync/ui/"


def session(status: str, **more) -> dict:
    return {"id": 12, "status": status, "session_type": "Full", "rejected": 0, "objects": {}, "error": None, **more}


def test_a_note_only_when_the_session_did_not_simply_finish():
    url = "http://x/plugin/zuora-sync/zuora-sync/ui/?session=12"
    assert session_note(session("Finished"), url) == ""
    assert session_note(session("Running"), url) == ""
    note = session_note(session("Finished with Errors", rejected=1235, objects={
        "CustomerAccount": {"failed": 1234}, "Subscription": {"failed": 1}, "Invoice": {"failed": 0}}), url)
    assert note == (f"{MARKER}Finished with Errors** — [session 12]({url}) (Full): 1,235 records rejected by "
                    "Salesforce: CustomerAccount 1,234, Subscription 1. Their codes and messages are on the Zuora "
                    "Sync page. They are retried as soon as a retry can succeed.")
    stopped = session_note(session("Stopped", error="Salesforce API requests left today: 10, below the reserve"), url)
    assert stopped.endswith(": Salesforce API requests left today: 10, below the reserve. The next session resumes.")
    long = session_note(session("Failure", error="x" * 5000), url)
    assert len(long) <= MAX_NOTE and long.endswith("x… The next session picks the changes up.")


def test_a_persons_note_stays_and_the_syncs_paragraph_is_replaced_not_repeated():
    first = f"{MARKER}Finished with Errors** — session 1"
    second = f"{MARKER}Stopped** — session 2"
    assert merge_note(None, first) == first
    assert merge_note(None, "") is None
    assert merge_note("Checked by Ana.", first) == f"Checked by Ana.\n\n{first}"
    assert merge_note(f"Checked by Ana.\n\n{first}", second) == f"Checked by Ana.\n\n{second}"
    assert merge_note(first, "") is None  # cleared and rerun: the session finished this time
    assert merge_note(f"Checked by Ana.\n\n{first}", None) == "Checked by Ana."
    assert len(merge_note("y" * 900, second + "z" * 500)) <= MAX_NOTE
