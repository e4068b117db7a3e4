"""The sandbox's REST API through unmodified simple-salesforce: describe, SOQL (and a query's column
metadata, ``columns=true``), sObject calls, upsert by external id, composite collections (retrieve by
POST too), limits, and every error shape clients parse."""

from __future__ import annotations

import requests
import pytest
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from sandbox.crm_accounts import crm_account_id

SEED = 7  # the session sandbox's --seed


def account(index: int) -> str:
    return crm_account_id(SEED, index)


def make_customer(sf, ext: str, **fields):
    body = {"Name": f"Customer {ext}", "Zuora__Account__c": account(0), **fields}
    return sf.Zuora__CustomerAccount__c.upsert(f"Zuora__External_Id__c/{ext}", body)


# -- describe ------------------------------------------------------------------------------------


def test_global_describe_lists_zuora_360_and_standard_objects(sf):
    described = sf.describe()
    assert described["encoding"] == "UTF-8" and described["maxBatchSize"] == 200
    names = {o["name"]: o for o in described["sobjects"]}
    for name in ("Account", "Product2", "Zuora__CustomerAccount__c", "Zuora__Subscription__c",
                 "Zuora__SubscriptionRatePlan__c", "Zuora__SubscriptionProductCharge__c", "Zuora__ZInvoice__c",
                 "Zuora__Payment__c", "Zuora__PaymentInvoice__c", "zqu__ProductRatePlan__c",
                 "zqu__ProductRatePlanCharge__c"):
        assert names[name]["queryable"] is True
    assert names["Account"]["keyPrefix"] == "001" and names["Account"]["custom"] is False
    assert names["Zuora__Subscription__c"]["custom"] is True


def test_object_describe_has_salesforce_keys_external_ids_and_relationships(sf):
    described = sf.Zuora__Subscription__c.describe()
    for key in ("name", "label", "keyPrefix", "custom", "createable", "updateable", "deletable", "queryable",
                "fields", "childRelationships", "recordTypeInfos", "urls"):
        assert key in described
    fields = {f["name"]: f for f in described["fields"]}
    ext = fields["Zuora__External_Id__c"]
    assert ext["externalId"] is True and ext["idLookup"] is True and ext["type"] == "string"
    link = fields["Zuora__CustomerAccount__c"]
    assert link["type"] == "reference" and link["referenceTo"] == ["Zuora__CustomerAccount__c"]
    assert link["relationshipName"] == "Zuora__CustomerAccount__r"
    assert fields["Id"]["type"] == "id" and fields["Id"]["createable"] is False
    assert fields["Name"]["nillable"] is False
    for key in ("soapType", "nillable", "defaultedOnCreate", "calculated", "picklistValues", "length", "unique"):
        assert key in ext
    # Master-detail children appear on the parent with cascadeDelete.
    children = sf.Zuora__CustomerAccount__c.describe()["childRelationships"]
    parent = {r["childSObject"] + "." + r["field"]: r for r in children}
    assert parent["Zuora__Payment__c.Zuora__BillingAccount__c"]["cascadeDelete"] is True
    assert parent["Zuora__Subscription__c.Zuora__CustomerAccount__c"]["cascadeDelete"] is False


def test_describe_of_unknown_object_is_not_found(sf):
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sf.Nope__c.describe()
    assert caught.value.content[0]["errorCode"] == "NOT_FOUND"


# -- sObject rows --------------------------------------------------------------------------------


def test_create_get_update_delete_round_trip(sf):
    created = sf.Account.create({"Name": "Round Trip Inc", "NumberOfEmployees": 12, "AnnualRevenue": 1000.5})
    assert created["success"] is True and created["errors"] == [] and created["id"].startswith("001")
    record = sf.Account.get(created["id"])
    assert record["Name"] == "Round Trip Inc" and record["NumberOfEmployees"] == 12
    assert record["AnnualRevenue"] == 1001.0  # currency(18,0) rounds half up, as Salesforce does
    assert record["attributes"]["type"] == "Account" and record["IsDeleted"] is False
    assert sf.Account.update(created["id"], {"Industry": "Retail"}) == 204
    assert sf.Account.get(created["id"])["Industry"] == "Retail"
    assert sf.Account.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(created["id"])
    # A second delete finds the record in the recycle bin.
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sf.Account.delete(created["id"])
    assert caught.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_create_errors_use_the_rest_error_shape(sf):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Account.create({"Industry": "no name"})
    assert caught.value.status == 400
    assert caught.value.content == [
        {"message": "Required fields are missing: [Name]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["Name"]}
    ]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Account.create({"Name": "x", "Bogus__c": 1})
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Bogus__c' on sobject of type Account" in caught.value.content[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Account.create({"Name": "x" * 300})
    assert caught.value.content[0]["errorCode"] == "STRING_TOO_LONG"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Account.create({"Name": "x", "ParentId": "not-an-id"})
    assert caught.value.content[0]["errorCode"] == "MALFORMED_ID"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Account.create({"Name": "x", "ParentId": "001000000009999"})
    assert caught.value.content[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"


def test_upsert_by_external_id_creates_then_updates(sf, unique):
    ext = f"{unique}-ca"
    assert make_customer(sf, ext, Zuora__Balance__c=10) == 201
    assert make_customer(sf, ext, Zuora__Balance__c=20) == 200
    by_ext = sf.Zuora__CustomerAccount__c.get_by_custom_id("Zuora__External_Id__c", ext)
    assert by_ext["Zuora__Balance__c"] == 20.0
    result = sf.query(f"SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Zuora__External_Id__c = '{ext}'")
    assert result["totalSize"] == 1
    # External ids match case-insensitively, as Salesforce's text external ids do.
    assert make_customer(sf, ext.upper(), Zuora__Balance__c=30) == 200
    raw = sf.Zuora__CustomerAccount__c.upsert(
        f"Zuora__External_Id__c/{ext}", {"Name": "n", "Zuora__Account__c": account(0)}, raw_response=True
    )
    assert raw.status_code == 200 and raw.json()["created"] is False and raw.json()["success"] is True


def test_upsert_with_ambiguous_key_answers_300(sf, unique):
    # Account.Name is an id-lookup field but not unique: two matches make the upsert ambiguous.
    sf.Account.create({"Name": f"dup-{unique}"})
    sf.Account.create({"Name": f"dup-{unique}"})
    with pytest.raises(SalesforceMoreThanOneRecord) as caught:
        sf.Account.upsert(f"Name/dup-{unique}", {"Industry": "x"})
    assert caught.value.status == 300
    assert len(caught.value.content) == 2
    assert all(url.startswith("/services/data/v59.0/sobjects/Account/001") for url in caught.value.content)


def test_upsert_on_a_field_that_is_not_an_external_id_is_not_found(sf):
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sf.Account.upsert("Industry/Retail", {"Name": "x"})
    assert caught.value.content[0]["errorCode"] == "NOT_FOUND"


def test_upsert_update_only_does_not_create(sf, unique):
    response = requests.patch(
        f"https://{sf.sf_instance}/services/data/v59.0/sobjects/Zuora__CustomerAccount__c/"
        f"Zuora__External_Id__c/{unique}-nothing?updateOnly=true",
        json={"Name": "x", "Zuora__Account__c": account(0)}, headers=sf.headers, timeout=30,
    )
    assert response.status_code == 404


def test_field_types_round_trip_exactly(sf, unique):
    ext = f"{unique}-types"
    assert make_customer(
        sf, ext, Zuora__Balance__c="12345678901234.57", Zuora__AutoPay__c=True,
        Zuora__LastInvoiceDate__c="2024-02-29", Zuora__Currency__c="EUR",
    ) == 201
    record = sf.query(
        "SELECT Zuora__Balance__c, Zuora__AutoPay__c, Zuora__LastInvoiceDate__c, CreatedDate "
        f"FROM Zuora__CustomerAccount__c WHERE Zuora__External_Id__c = '{ext}'"
    )["records"][0]
    assert record["Zuora__AutoPay__c"] is True
    assert record["Zuora__LastInvoiceDate__c"] == "2024-02-29"
    assert record["CreatedDate"].endswith("+0000") and "T" in record["CreatedDate"]
    assert record["Zuora__Balance__c"] == 12345678901234.57
    # Bulk query CSV keeps the exact decimal digits.
    csv_text = "".join(sf.bulk2.Zuora__CustomerAccount__c.query(
        f"SELECT Zuora__Balance__c FROM Zuora__CustomerAccount__c WHERE Zuora__External_Id__c = '{ext}'", wait=0.1
    ))
    assert '"12345678901234.57"' in csv_text
    with pytest.raises(SalesforceMalformedRequest) as caught:
        make_customer(sf, f"{unique}-bad-date", Zuora__LastInvoiceDate__c="2024-13-45")
    assert caught.value.content[0]["errorCode"] == "INVALID_TYPE_ON_FIELD_IN_RECORD"


# -- SOQL ----------------------------------------------------------------------------------------


@pytest.fixture
def customers(sf, unique):
    """Five customer accounts with distinct balances, statuses and a two-level hierarchy."""
    exts = [f"{unique}-q{i}" for i in range(5)]
    for i, ext in enumerate(exts):
        make_customer(sf, ext, Zuora__Balance__c=i * 10, Zuora__Status__c="Active" if i % 2 == 0 else "Canceled",
                      Zuora__Account__c=account(i), Zuora__BillToCity__c=None if i == 4 else f"City {i}")
    parent_id = sf.Zuora__CustomerAccount__c.get_by_custom_id("Zuora__External_Id__c", exts[0])["Id"]
    sf.Zuora__CustomerAccount__c.upsert(f"Zuora__External_Id__c/{exts[1]}", {"Zuora__Parent__c": parent_id})
    return exts


def test_soql_where_operators(sf, customers, unique):
    base = f"SELECT Zuora__External_Id__c FROM Zuora__CustomerAccount__c WHERE Zuora__External_Id__c LIKE '{unique}-q%'"

    def exts(condition: str) -> list[str]:
        records = sf.query_all(f"{base} AND ({condition}) ORDER BY Zuora__External_Id__c")["records"]
        return [r["Zuora__External_Id__c"][-2:] for r in records]

    assert exts("Zuora__Balance__c > 15") == ["q2", "q3", "q4"]
    assert exts("Zuora__Balance__c <= 10") == ["q0", "q1"]
    assert exts("Zuora__Status__c = 'active'") == ["q0", "q2", "q4"]  # text compares ignore case
    assert exts("Zuora__Status__c != 'Active'") == ["q1", "q3"]
    assert exts("Zuora__BillToCity__c = null") == ["q4"]
    assert exts("Zuora__BillToCity__c != 'City 1'") == ["q0", "q2", "q3", "q4"]  # != also matches null
    assert exts("Zuora__Balance__c IN (0, 30)") == ["q0", "q3"]
    assert exts("Zuora__Balance__c NOT IN (0, 30)") == ["q1", "q2", "q4"]
    assert exts("Zuora__Status__c = 'Active' OR Zuora__Balance__c = 10") == ["q0", "q1", "q2", "q4"]
    assert exts("NOT Zuora__Status__c = 'Active'") == ["q1", "q3"]
    assert exts("Zuora__Parent__r.Zuora__External_Id__c = '" + customers[0] + "'") == ["q1"]
    assert exts("CreatedDate = TODAY") == ["q0", "q1", "q2", "q3", "q4"]
    assert exts("CreatedDate > 2020-01-01T00:00:00Z AND Zuora__Balance__c >= 40") == ["q4"]


def test_soql_relationship_fields_order_limit_offset_and_count(sf, customers, unique):
    result = sf.query(
        "SELECT Name, Zuora__Account__r.Name, Zuora__Account__r.AccountNumber, Zuora__Parent__r.Name "
        f"FROM Zuora__CustomerAccount__c WHERE Zuora__External_Id__c LIKE '{unique}-q%' "
        "ORDER BY Zuora__Balance__c DESC LIMIT 3 OFFSET 1"
    )
    records = result["records"]
    assert result["totalSize"] == 3 and result["done"] is True
    assert [r["Name"] for r in records] == [f"Customer {unique}-q{i}" for i in (3, 2, 1)]
    assert records[0]["Zuora__Account__r"]["attributes"]["type"] == "Account"
    assert records[0]["Zuora__Account__r"]["Name"] == sf.Account.get(account(3))["Name"]
    assert records[0]["Zuora__Parent__r"] is None
    assert records[2]["Zuora__Parent__r"]["Name"] == f"Customer {unique}-q0"
    count = sf.query(f"SELECT COUNT() FROM Zuora__CustomerAccount__c WHERE Zuora__External_Id__c LIKE '{unique}-q%'")
    assert count == {"totalSize": 5, "done": True, "records": []}
    aggregate = sf.query(
        f"SELECT COUNT(Id) n FROM Zuora__CustomerAccount__c WHERE Zuora__External_Id__c LIKE '{unique}-q%'"
    )
    assert aggregate["records"][0]["n"] == 5


def test_query_more_pages_with_next_records_url(sf, unique):
    rows = [{"Name": f"Page {unique} {i}", "AccountNumber": f"P-{unique}"} for i in range(2300)]
    sf.bulk2.Account.insert(records=rows, wait=0.1)
    first = sf.query(f"SELECT Id, Name FROM Account WHERE AccountNumber = 'P-{unique}'")
    assert first["totalSize"] == 2300 and first["done"] is False and len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/")
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert second["done"] is True and len(second["records"]) == 300
    everything = sf.query_all(f"SELECT Id FROM Account WHERE AccountNumber = 'P-{unique}'")
    assert len({r["Id"] for r in everything["records"]}) == 2300
    # Sforce-Query-Options batchSize asks for smaller pages (Salesforce's minimum is 200).
    small = sf.query(f"SELECT Id FROM Account WHERE AccountNumber = 'P-{unique}'",
                     headers={"Sforce-Query-Options": "batchSize=500"})
    assert len(small["records"]) == 500


def test_query_all_sees_the_recycle_bin(sf, unique):
    ext = f"{unique}-deleted"
    make_customer(sf, ext)
    record_id = sf.Zuora__CustomerAccount__c.get_by_custom_id("Zuora__External_Id__c", ext)["Id"]
    sf.Zuora__CustomerAccount__c.delete(record_id)
    soql = f"SELECT Id, IsDeleted FROM Zuora__CustomerAccount__c WHERE Zuora__External_Id__c = '{ext}'"
    assert sf.query(soql)["totalSize"] == 0
    deleted = sf.query_all(soql, include_deleted=True)["records"]
    assert deleted[0]["Id"] == record_id and deleted[0]["IsDeleted"] is True
    # Upserting the same key after a delete creates a new record, as the recycle bin holds the old one.
    assert make_customer(sf, ext) == 201


def test_malformed_and_invalid_queries_use_salesforce_errors(sf):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id FROM Account WHERE")
    error = caught.value.content[0]
    assert error["errorCode"] == "MALFORMED_QUERY"
    assert "ERROR at Row:1:Column:" in error["message"] and "^" in error["message"]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Nme FROM Account")
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Nme' on entity 'Account'" in caught.value.content[0]["message"]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id FROM Nope__c")
    assert caught.value.content[0]["errorCode"] == "INVALID_TYPE"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id, (SELECT Id FROM Contacts) FROM Account")
    assert caught.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id FROM Account GROUP BY Name")
    assert caught.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id FROM Account WHERE NumberOfEmployees = 'ten'")
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD"


# -- composite collections --------------------------------------------------------------------------


def test_composite_create_reports_per_record_results_in_order(sf, unique):
    records = [
        {"attributes": {"type": "Account"}, "Name": f"Comp {unique} 1"},
        {"attributes": {"type": "Account"}, "Industry": "no name"},
        {"attributes": {"type": "Zuora__CustomerAccount__c"}, "Name": "c", "Zuora__Account__c": account(1),
         "Zuora__External_Id__c": f"{unique}-comp"},
    ]
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    assert results[0]["success"] is True and results[0]["id"].startswith("001")
    assert results[1] == {"success": False, "errors": [
        {"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [Name]", "fields": ["Name"]}
    ]}
    assert results[2]["success"] is True and results[2]["id"].startswith("a0A")


def test_composite_all_or_none_rolls_everything_back(sf, unique):
    records = [
        {"attributes": {"type": "Account"}, "Name": f"Atomic {unique}"},
        {"attributes": {"type": "Account"}},
    ]
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    assert results[0]["success"] is False
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert sf.query(f"SELECT COUNT() FROM Account WHERE Name = 'Atomic {unique}'")["totalSize"] == 0


def test_composite_upsert_update_and_delete(sf, unique):
    records = [
        {"attributes": {"type": "Zuora__CustomerAccount__c"}, "Zuora__External_Id__c": f"{unique}-cu{i}",
         "Name": f"cu{i}", "Zuora__Account__c": account(2)}
        for i in range(3)
    ]
    upserted = sf.restful("composite/sobjects/Zuora__CustomerAccount__c/Zuora__External_Id__c", method="PATCH",
                          json={"allOrNone": False, "records": records})
    assert [r["created"] for r in upserted] == [True, True, True]
    again = sf.restful("composite/sobjects/Zuora__CustomerAccount__c/Zuora__External_Id__c", method="PATCH",
                       json={"allOrNone": False, "records": records})
    assert [r["created"] for r in again] == [False, False, False]
    ids = [r["id"] for r in upserted]
    updated = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Zuora__CustomerAccount__c"}, "id": ids[0], "Zuora__Status__c": "Canceled"}
    ]})
    assert updated == [{"id": ids[0], "success": True, "errors": []}]
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": ",".join(ids), "allOrNone": "false"})
    assert all(r["success"] for r in deleted)


def test_composite_limits_and_bad_input(sf):
    records = [{"attributes": {"type": "Account"}, "Name": str(i)} for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    assert caught.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": [{"Name": "x"}]})
    assert caught.value.content[0]["message"] == "Must send a concrete entity type."
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful("composite/sobjects", method="DELETE", params={"ids": "nonsense"})
    assert caught.value.content[0]["errorCode"] == "MALFORMED_ID"


def test_composite_retrieve_by_post_returns_records_in_order_with_nulls(sf, unique):
    # "Get Records With a Request Body Using sObject Collections" (REST API guide): up to 2,000 ids
    # of one type; an invalid, unknown or deleted id is null; an unknown field is a 400.
    created = [make_customer(sf, f"{unique}-r{i}", Zuora__Status__c=f"S{i}") for i in range(3)]
    assert created == [201, 201, 201]
    records = {r["Zuora__External_Id__c"]: r["Id"] for r in sf.query_all(
        f"SELECT Id, Zuora__External_Id__c FROM Zuora__CustomerAccount__c WHERE Zuora__External_Id__c LIKE '{unique}-r%'"
    )["records"]}
    ids = [records[f"{unique}-r{i}"] for i in range(3)]
    sf.Zuora__CustomerAccount__c.delete(ids[2])
    asked = [ids[1], "not-an-id", ids[0][:15], account(0), ids[2]]
    got = sf.restful("composite/sobjects/Zuora__CustomerAccount__c", method="POST",
                     json={"ids": asked, "fields": ["Id", "Name", "Zuora__Status__c"]})
    assert len(got) == 5 and [got[1], got[3], got[4]] == [None, None, None]  # malformed, another type, deleted
    assert got[0] == {"attributes": {"type": "Zuora__CustomerAccount__c",
                                     "url": f"/services/data/v{sf.sf_version}/sobjects/Zuora__CustomerAccount__c/{ids[1]}"},
                      "Id": ids[1], "Name": f"Customer {unique}-r1", "Zuora__Status__c": "S1"}
    assert got[2]["Id"] == ids[0]  # a 15-character id finds its record
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful("composite/sobjects/Zuora__CustomerAccount__c", method="POST", json={"ids": ids, "fields": ["Nope__c"]})
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful("composite/sobjects/Account", method="POST", json={"ids": [account(0)] * 2001, "fields": ["Id"]})
    assert caught.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_query_columns_true_describes_the_columns_without_running_the_query(sf):
    soql = ("SELECT Id, Name, Zuora__Balance__c, Zuora__AutoPay__c, Zuora__Account__r.Name, "
            "Zuora__Account__r.AccountNumber, Zuora__Parent__r.Zuora__Account__r.Name "
            "FROM Zuora__CustomerAccount__c")
    meta = sf.restful("query", params={"q": soql, "columns": "true"})
    assert set(meta) == {"columnMetadata", "entityName", "groupBy", "idSelected", "keyPrefix"}
    assert (meta["entityName"], meta["keyPrefix"], meta["groupBy"], meta["idSelected"]) == (
        "Zuora__CustomerAccount__c", "a0A", False, True)
    columns = meta["columnMetadata"]
    assert [c["columnName"] for c in columns] == [
        "Id", "Name", "Zuora__Balance__c", "Zuora__AutoPay__c", "Zuora__Account__r", "Zuora__Parent__r"]
    keys = {"aggregate", "apexType", "booleanType", "columnName", "custom", "displayName", "foreignKeyName",
            "insertable", "joinColumns", "numberType", "textType", "updatable"}
    assert all(set(c) == keys for c in columns)
    by_name = {c["columnName"]: c for c in columns}
    assert (by_name["Id"]["apexType"], by_name["Id"]["insertable"]) == ("Id", False)
    assert (by_name["Name"]["apexType"], by_name["Name"]["textType"], by_name["Name"]["updatable"]) == ("String", True, True)
    assert (by_name["Zuora__Balance__c"]["apexType"], by_name["Zuora__Balance__c"]["numberType"],
            by_name["Zuora__Balance__c"]["custom"]) == ("Decimal", True, True)
    assert by_name["Zuora__AutoPay__c"]["booleanType"] is True
    account = by_name["Zuora__Account__r"]
    assert [(j["columnName"], j["displayName"]) for j in account["joinColumns"]] == [
        ("Name", "Zuora__Account__r.Name"), ("AccountNumber", "Zuora__Account__r.AccountNumber")]
    nested = by_name["Zuora__Parent__r"]["joinColumns"][0]
    assert nested["columnName"] == "Zuora__Account__r"
    assert nested["joinColumns"][0]["displayName"] == "Zuora__Parent__r.Zuora__Account__r.Name"

    counted = sf.restful("query", params={"q": "SELECT COUNT(Id) total FROM Account", "columns": "true"})
    assert counted["idSelected"] is False
    assert [(c["columnName"], c["displayName"], c["aggregate"], c["apexType"]) for c in counted["columnMetadata"]] == [
        ("total", "COUNT(Id)", True, "Integer")]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful("query", params={"q": "SELECT Nope FROM Account", "columns": "true"})
    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD"


# -- composite batch ---------------------------------------------------------------------------


def test_composite_batch_runs_queries_and_describes_as_one_api_request(sf, sf_sandbox, customers, unique):
    sf_sandbox.admin("POST", "limits", {"daily_api_requests": 5000, "used": 0})
    where = f"WHERE Zuora__External_Id__c LIKE '{unique}-q%'"
    answer = sf.restful("composite/batch", method="POST", json={"batchRequests": [
        {"method": "GET", "url": f"v59.0/query?q=SELECT COUNT() FROM Zuora__CustomerAccount__c {where}"},
        {"method": "GET", "url": "v59.0/query?q=SELECT SystemModstamp FROM Zuora__CustomerAccount__c "
                                 f"{where} ORDER BY SystemModstamp DESC LIMIT 1"},
        {"method": "GET", "url": "v59.0/sobjects/Zuora__Payment__c/describe"},
        {"method": "GET", "url": "v59.0/query?q=SELECT Nope FROM Account"},
    ]})
    assert answer["hasErrors"] is True
    count, newest, described, bad = answer["results"]
    assert count == {"statusCode": 200, "result": {"totalSize": 5, "done": True, "records": []}}
    assert newest["statusCode"] == 200 and len(newest["result"]["records"]) == 1
    assert newest["result"]["records"][0]["SystemModstamp"].endswith("+0000")
    assert described["statusCode"] == 200 and described["result"]["name"] == "Zuora__Payment__c"
    assert bad["statusCode"] == 400 and bad["result"][0]["errorCode"] == "INVALID_FIELD"
    assert sf.limits()["DailyApiRequests"]["Remaining"] == 5000 - 2      # the batch, then this call


def test_composite_batch_halts_on_error_when_asked_and_refuses_more_than_25(sf):
    halted = sf.restful("composite/batch", method="POST", json={"haltOnError": True, "batchRequests": [
        {"method": "GET", "url": "v59.0/sobjects/Nope__c/describe"},
        {"method": "GET", "url": "v59.0/limits"},
    ]})
    assert [r["statusCode"] for r in halted["results"]] == [404, 412]
    assert halted["results"][1]["result"][0]["errorCode"] == "BATCH_PROCESSING_HALTED"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful("composite/batch", method="POST", json={"batchRequests": [
            {"method": "GET", "url": "v59.0/limits"}] * 26})
    assert caught.value.content[0]["errorCode"] == "INVALID_BATCH_REQUEST"


# -- limits ------------------------------------------------------------------------------------


def test_limits_and_the_limit_info_header_count_requests(sf, sf_sandbox):
    sf_sandbox.admin("POST", "limits", {"daily_api_requests": 5000, "used": 100})
    sf.query("SELECT Id FROM Account LIMIT 1")
    usage = sf.api_usage["api-usage"]
    assert usage.total == 5000 and usage.used == 101
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 5000, "Remaining": 5000 - 102}
    for key in ("DailyBulkApiBatches", "DailyBulkV2QueryJobs", "DataStorageMB"):
        assert {"Max", "Remaining"} <= set(limits[key])


def test_request_limit_exceeded_is_a_403(sf, sf_sandbox):
    sf_sandbox.admin("POST", "limits", {"daily_api_requests": 10, "used": 10})
    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.query("SELECT Id FROM Account LIMIT 1")
    assert caught.value.status == 403
    assert caught.value.content == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    # Bulk API 2.0 requests count too.
    with pytest.raises(SalesforceRefusedRequest):
        sf.bulk2.Account.insert(records=[{"Name": "x"}], wait=0.1)
    sf_sandbox.admin("POST", "limits", {"daily_api_requests": 10, "used": 0})
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] > 0
