"""The sandbox's declarative schema: validation errors that name the place, ids, and custom fields
added at runtime (admin API) or at start (``--schema``)."""

from __future__ import annotations

import pytest

from conftest import start_salesforce_sandbox
from sandbox.salesforce.schema import SchemaError, build_schema, builtin_schema_document, merge_documents
from sandbox.sfid import checksum_suffix, normalize_id, org_record_id


def extended(objects: dict) -> dict:
    return merge_documents(builtin_schema_document(), {"objects": objects})


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        ({"Account": {"fields": {"Rating__c": {"type": "stars", "label": "Rating"}}}},
         "object Account, field Rating__c: type 'stars' is not one of"),
        ({"Account": {"fields": {"Rating__c": {"type": "string"}}}}, "object Account, field Rating__c: a label is required"),
        ({"Account": {"fields": {"Owner__c": {"type": "reference", "label": "O", "referenceTo": ["Nope__c"],
                                              "relationshipName": "Owner__r"}}}},
         "object Account, field Owner__c: referenceTo names unknown object Nope__c"),
        ({"Thing__c": {"keyPrefix": "001", "fields": {}}}, "share key prefix 001"),
        ({"Thing__c": {"keyPrefix": "a9Z", "fields": {"Id": {"type": "string", "label": "x"}}}},
         "object Thing__c, field Id: system fields are added automatically"),
        ({"Account": {"fields": {"Ref__c": {"type": "reference", "label": "R", "referenceTo": ["Account"],
                                            "relationshipName": "Ref"}}}},
         "the relationship name of a custom field ends in __r"),
        ({"Account": {"fields": {"Rating__c": {"type": "string", "label": "R", "colour": "red"}}}},
         "unknown attributes ['colour']"),
    ],
)
def test_schema_errors_name_the_object_and_field(objects, expected):
    with pytest.raises(SchemaError) as caught:
        build_schema(extended(objects), source="my-schema.yaml")
    assert expected in str(caught.value)
    assert str(caught.value).startswith("my-schema.yaml")


def test_builtin_schema_adds_system_fields_and_child_relationships():
    schema = build_schema(builtin_schema_document())
    customer = schema.get("zuora__customeraccount__c")  # API names are case-insensitive
    assert list(customer.fields)[:2] == ["Id", "IsDeleted"]
    assert "OwnerId" not in customer.fields  # a master-detail child has no owner
    assert "OwnerId" in schema.get("Account").fields
    assert customer.field("Zuora__Account__c").required
    children = {(r.child, r.field) for r in schema.get("Account").child_relationships}
    assert ("Zuora__CustomerAccount__c", "Zuora__Account__c") in children


def test_salesforce_ids():
    assert checksum_suffix("0033000000YL8yv") == "AAD"
    assert normalize_id("0033000000YL8yv") == "0033000000YL8yvAAD"
    assert normalize_id("0033000000YL8yvAAD") == "0033000000YL8yvAAD"
    assert normalize_id("0033000000YL8yvAAA") is None  # suffix does not match
    assert normalize_id("003-not-an-id!!") is None
    record = org_record_id("a0A", 42)
    assert len(record) == 18 and normalize_id(record[:15]) == record


def test_fields_added_through_the_admin_api_work_and_persist(sf, sf_sandbox, unique):
    added = sf_sandbox.admin("POST", "schema", {"objects": {"Zuora__CustomerAccount__c": {"fields": {
        "Zuora__Segment__c": {"type": "picklist", "label": "Segment", "picklistValues": ["SMB", "Enterprise"]},
        "Zuora__Seats__c": {"type": "double", "label": "Seats", "precision": 10, "scale": 0},
    }}}})
    assert "Zuora__CustomerAccount__c" in added["objects"]
    fields = {f["name"]: f for f in sf.Zuora__CustomerAccount__c.describe()["fields"]}
    assert fields["Zuora__Segment__c"]["type"] == "picklist" and fields["Zuora__Seats__c"]["scale"] == 0
    sf.Zuora__CustomerAccount__c.upsert(f"Zuora__External_Id__c/{unique}", {
        "Name": "custom", "Zuora__Account__c": sf.query("SELECT Id FROM Account LIMIT 1")["records"][0]["Id"],
        "Zuora__Segment__c": "SMB", "Zuora__Seats__c": 12,
    })
    record = sf.Zuora__CustomerAccount__c.get_by_custom_id("Zuora__External_Id__c", unique)
    assert record["Zuora__Segment__c"] == "SMB" and record["Zuora__Seats__c"] == 12.0
    assert (sf_sandbox.data_dir / "schema-extra.yaml").exists()


def test_schema_file_given_at_start_adds_objects(tmp_path, monkeypatch):
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "objects:\n"
        "  Zuora__Refund__c:\n"
        "    label: Refund\n"
        "    keyPrefix: a0R\n"
        "    fields:\n"
        "      Name: {type: string, length: 80, nillable: false, label: Refund Name}\n"
        "      Zuora__External_Id__c: {type: string, length: 255, externalId: true, unique: true, label: External Id}\n"
    )
    sandbox = start_salesforce_sandbox(tmp_path / "org", accounts=0, extra=["--schema", str(extra)])
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.ca_bundle)
        sf = sandbox.login()
        assert sf.Zuora__Refund__c.upsert("Zuora__External_Id__c/r1", {"Name": "R1"}) == 201
        assert sf.query("SELECT Name FROM Zuora__Refund__c")["records"][0]["Name"] == "R1"
    finally:
        sandbox.stop()
