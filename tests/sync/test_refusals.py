"""``zuora_sync.refusals``: which rows Salesforce refused before it would refuse again as they are.

The messages are Salesforce's own wording (Bulk API 2.0 ``failedResults``), as the sandbox writes them."""

from __future__ import annotations

from zuora_sync.refusals import Refusals

COLUMNS = ["Zuora__External_Id__c", "Name", "Zuora__Account__c", "Zuora__CustomerAccount__r.Zuora__External_Id__c"]
MISSING = ("Foreign key external ID: {} not found for field Zuora__External_Id__c in entity Zuora__CustomerAccount__c")


def row(key: str, name: str = "n", crm: str = "#N/A", parent: str = "") -> dict[str, str]:
    return dict(zip(COLUMNS, [key, name, crm, parent]))


def cells(key: str, name: str = "n", crm: str = "#N/A", parent: str = "") -> list[str]:
    return [key, name, crm, parent]


def refusals(refused: dict, parents_refused: set[str] | None = None) -> Refusals:
    still = {"zuora__customeraccount__c": parents_refused if parents_refused is not None else set()}
    return Refusals(refused, COLUMNS, lambda sobject: still.get(sobject.lower()))


def test_a_malformed_id_is_refused_again_while_the_row_is_unchanged() -> None:
    r = refusals({"a1": ("MALFORMED_ID", "CRM Id: id value of incorrect type: 12x", row("a1", crm="12x"))})
    assert r.settled("a1", cells("a1", crm="12x"))
    assert not r.settled("a1", cells("a1", crm="0015g00000AbCdEAAV"))   # the CRM Id was fixed: sent
    assert not r.settled("a1", cells("a1", name="other", crm="12x"))    # any value changed: sent
    assert not r.settled("a2", cells("a2"))                             # never refused


def test_a_child_of_a_parent_still_refused_waits_for_it() -> None:
    refused = {"p1": ("INVALID_FIELD", MISSING.format("ACC1"), row("p1", parent="ACC1"))}
    assert refusals(refused, {"acc1"}).settled("p1", cells("p1", parent="ACC1"))
    assert not refusals(refused, set()).settled("p1", cells("p1", parent="ACC1"))     # the parent is in now
    assert not refusals(refused, {"acc1"}).settled("p1", cells("p1", parent="ACC2"))  # another parent


def test_a_missing_target_that_is_not_a_mapped_object_is_retried() -> None:
    message = "Foreign key external ID: X not found for field Ext__c in entity Unmapped__c"
    r = refusals({"p1": ("INVALID_FIELD", message, row("p1"))}, {"x"})
    assert not r.settled("p1", cells("p1"))


def test_reasons_that_may_lie_in_salesforce_are_always_retried() -> None:
    for code, message in [("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"),
                          ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Not this name"),
                          ("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record"),
                          ("STRING_TOO_LONG", "Name: data value too large")]:
        assert not refusals({"a1": (code, message, row("a1"))}).settled("a1", cells("a1")), code


def test_a_row_is_unchanged_when_its_values_are_the_refused_ones_whatever_the_reason() -> None:
    r = refusals({"a1": ("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", row("a1", crm="001x"))})
    assert r.unchanged("a1", cells("a1", crm="001x")) and not r.settled("a1", cells("a1", crm="001x"))
    assert not r.unchanged("a1", cells("a1", crm="001y")) and not r.unchanged("a2", cells("a2"))
