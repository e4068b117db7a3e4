"""Optional lookups (``zuora_sync.lookups``): which refused rows go again with a lookup emptied."""

from __future__ import annotations

from dataclasses import dataclass, field

from zuora_sync.lookups import Lookup, missing_foreign_key, split_missing_lookups

OWNER = Lookup("Zuora__InvoiceOwner__r.Zuora__External_Id__c", "Zuora__CustomerAccount__c", required=False)
ACCOUNT = Lookup("Zuora__CustomerAccount__r.Zuora__External_Id__c", "Zuora__CustomerAccount__c", required=False)
PAYMENT = Lookup("Zuora__Payment__r.Zuora__External_Id__c", "Zuora__Payment__c", required=True)
INVOICE = Lookup("Zuora__Invoice__r.Zuora__External_Id__c", "Zuora__ZInvoice__c", required=False)


@dataclass
class Refused:
    message: str
    row: dict[str, str] = field(default_factory=dict)
    external_id: str | None = None


def not_found(value: str, entity: str, field_name: str = "Zuora__External_Id__c") -> str:
    # Salesforce's own words, as Bulk API 2.0's failedResults carry them (the loader may add the fields).
    return f"Foreign key external ID: {value} not found for field {field_name} in entity {entity} (fields: X)"


def test_salesforce_s_message_names_the_missing_key():
    assert missing_foreign_key(not_found("2c9 1", "Account", "Ext__c")) == ("2c9 1", "Ext__c", "Account")
    assert missing_foreign_key("Required fields are missing: [Name]") is None
    assert missing_foreign_key("") is None


def test_a_missing_optional_lookup_target_sends_the_row_again_with_that_lookup_empty():
    row = {"Zuora__External_Id__c": "S1", OWNER.column: "A9", ACCOUNT.column: "A1"}
    resend, still = split_missing_lookups([Refused(not_found("A9", "Zuora__CustomerAccount__c"), row)],
                                          [ACCOUNT, OWNER])
    assert still == []
    assert resend == [({"Zuora__External_Id__c": "S1", OWNER.column: "#N/A", ACCOUNT.column: "A1"}, [OWNER.column])]
    assert row[OWNER.column] == "A9"  # the original is left as it was


def test_every_optional_lookup_holding_the_missing_key_is_emptied_and_case_does_not_matter():
    row = {"Zuora__External_Id__c": "S1", OWNER.column: "a1", ACCOUNT.column: "A1"}
    resend, _ = split_missing_lookups([Refused(not_found("A1", "Zuora__CustomerAccount__c"), row)], [ACCOUNT, OWNER])
    assert sorted(resend[0][1]) == sorted([OWNER.column, ACCOUNT.column])


def test_a_missing_master_detail_parent_stays_a_rejection():
    row = {"Zuora__External_Id__c": "IP1", PAYMENT.column: "P1", INVOICE.column: "I1"}
    refused = Refused(not_found("P1", "Zuora__Payment__c"), row)
    resend, still = split_missing_lookups([refused], [PAYMENT, INVOICE])
    assert resend == [] and still == [refused]


def test_other_errors_and_keys_no_column_holds_stay_rejections():
    row = {"Zuora__External_Id__c": "IP1", INVOICE.column: "I1"}
    others = [Refused("FIELD_CUSTOM_VALIDATION_EXCEPTION: no", row),
              Refused(not_found("I2", "Zuora__ZInvoice__c"), row),               # another key
              Refused(not_found("I1", "Zuora__Payment__c"), row),                # another object
              Refused(not_found("I1", "Zuora__ZInvoice__c", "Name"), row)]       # another target field
    resend, still = split_missing_lookups(others, [INVOICE])
    assert resend == [] and still == others
