"""The declarative mapping (validation with errors that name the place, merging a user's custom
fields) and the value conversions to Bulk API CSV cells."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from sandbox.zuora.dataquery_sql import compile_query
from sandbox.zuora.schema import load_schema
from zuora_sync.mapping import MappingError, build_mapping, default_document, load_mapping, merge
from zuora_sync.queries import Selection, build_query, changed_records_query, monitored_tables, selection_parts
from zuora_sync.transform import NULL, ValueConversionError, converter

PACIFIC = ZoneInfo("America/Los_Angeles")


def with_change(objects: dict) -> dict:
    return merge(default_document(), {"objects": objects})


def test_default_mapping_covers_spec_objects_in_load_order():
    mapping = load_mapping()
    assert mapping.scopes["accounts"] == ["CustomerAccount", "Subscription", "RatePlan", "RatePlanCharge",
                                          "Invoice", "Payment", "InvoicePayment"]
    assert mapping.scopes["catalog"] == ["Product", "ProductRatePlan", "ProductRatePlanCharge"]
    customer = mapping.get("CustomerAccount")
    assert customer.salesforce == "Zuora__CustomerAccount__c" and customer.key == "Zuora__External_Id__c"
    assert [c.salesforce for c in customer.second_pass] == ["Zuora__Parent__r.Zuora__External_Id__c"]
    assert mapping.get("Product").on_delete == "flag" and mapping.get("Product").flag == "zqu__Deleted__c"


@pytest.mark.parametrize(("objects", "expected"), [
    ({"Subscription": {"fields": {"Zuora__Foo__c": "subscription.foo__c + "}}},
     "object Subscription, field Zuora__Foo__c: not a valid Data Query expression"),
    ({"Subscription": {"fields": {"Zuora__Foo__c": "nosuch.foo__c"}}},
     "object Subscription, field Zuora__Foo__c: unknown alias nosuch"),
    ({"Subscription": {"fields": {"Zuora__Foo__c": "foo__c"}}},
     "object Subscription, field Zuora__Foo__c: qualify foo__c with its alias"),
    ({"Subscription": {"fields": {"Bad Name": "subscription.id"}}},
     "object Subscription, field Bad Name: not a Salesforce field"),
    ({"Subscription": {"fields": {"Zuora__External_Id__c": None}}},
     "object Subscription, field Zuora__External_Id__c: the key must also be one of the fields"),
    ({"Subscription": {"colour": "red"}}, "object Subscription: unknown keys ['colour']"),
    ({"Subscription": {"depends_on": ["Product"]}}, "object Subscription, depends_on: Product is not an object of scope accounts"),
    ({"Subscription": {"changes_with": ["nope"]}}, "object Subscription, changes_with: nope is not a join alias"),
    ({"Product": {"on_delete": "flag", "flag": None}}, "object Product, flag: on_delete 'flag' needs the checkbox field"),
    ({"CustomerAccount": {"depends_on": ["Subscription"]}}, "depends_on forms a cycle"),
])
def test_mapping_errors_name_the_file_object_and_field(objects, expected):
    with pytest.raises(MappingError) as caught:
        build_mapping(with_change(objects), "my-mapping.yaml")
    assert expected in str(caught.value) and str(caught.value).startswith("my-mapping.yaml")


def test_a_users_file_adds_custom_fields_and_drops_others(tmp_path, monkeypatch):
    extra = tmp_path / "mapping.yaml"
    extra.write_text("objects:\n  CustomerAccount:\n    fields:\n"
                     "      Zuora__Segment__c: account.segment__c\n      Zuora__Notes__c: null\n")
    monkeypatch.setenv("ZUORA_SYNC_MAPPING", str(extra))
    customer = load_mapping().get("CustomerAccount")
    names = [c.salesforce for c in customer.columns]
    assert "Zuora__Segment__c" in names and "Zuora__Notes__c" not in names
    assert load_mapping().source == str(extra)


def test_a_checked_mapping_is_not_checked_again_by_the_next_process(tmp_path):
    """Each task process parses its DAG file: a mapping that passed its checks is remembered on disk,
    so the next process builds the same mapping without sqlglot; an edit is checked in full."""
    import json
    import subprocess
    import sys

    cache = tmp_path / "cache"
    extra = tmp_path / "mapping.yaml"
    extra.write_text("objects:\n  CustomerAccount:\n    fields:\n      Zuora__Segment__c: account.segment__c\n")
    probe = ("import json, sys; from zuora_sync.mapping import load_mapping; m = load_mapping(); "
             "print(json.dumps({'sqlglot': 'sqlglot' in sys.modules, 'mapping': {o.name: [o.table, o.join_tables, "
             "[[c.salesforce, c.expression, c.optional] for c in o.columns + o.second_pass], o.keep] "
             "for o in m.objects.values()}}))")

    def load(text: str | None = None) -> dict:
        if text is not None:
            extra.write_text(text)
        env = {**os.environ, "ZUORA_SYNC_CACHE_DIR": str(cache), "ZUORA_SYNC_MAPPING": str(extra)}
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 or text is not None, done.stderr
        return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr}

    first, second = load(), load()
    assert first["sqlglot"] and not second["sqlglot"]
    assert first["mapping"] == second["mapping"]  # joins' tables included
    assert any(joins for _, joins, _, _ in first["mapping"].values())
    assert len(list(cache.iterdir())) == 1
    # An edit is checked in full, and its error named, whatever was remembered before.
    broken = load("objects:\n  CustomerAccount:\n    fields:\n      Zuora__Segment__c: nosuch.segment__c\n")
    assert "unknown alias nosuch" in broken["error"]
    # A damaged cache file is no verdict: the mapping is checked again.
    extra.write_text("objects:\n  CustomerAccount:\n    fields:\n      Zuora__Segment__c: account.segment__c\n")
    remembered = next(cache.iterdir())
    remembered.write_text("{not json")
    again = load()
    assert again["sqlglot"] and again["mapping"] == first["mapping"]
    assert json.loads(remembered.read_text())["joins"]
    # Nowhere to remember it (the cache directory is a file): every process checks the mapping itself.
    cache = tmp_path / "not-a-directory"
    cache.write_text("")
    assert load()["mapping"] == load()["mapping"] == first["mapping"]
    assert load()["sqlglot"]


def test_every_generated_query_is_valid_data_query_sql():
    schema = load_schema()
    mapping = load_mapping()
    for obj in mapping.objects.values():
        window = Selection("window", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
                           retry_keys=["a'b"], related_keys={alias: ["r1"] for alias in mapping.related(obj)})
        selections = [window, Selection("full")]
        if obj.account:
            selections.append(Selection("accounts", account_keys=["A00000001"]))
        for selection in selections:
            for part in selection_parts(obj, selection):
                sql = build_query(obj, part, after_key="x")
                compile_query(sql, schema)  # the sandbox's Trino-to-SQLite compiler accepts it
                assert "TIMESTAMP '2024-01-01 00:00:00.000 UTC'" in sql or selection.mode != "window"


def test_a_window_retries_every_rejected_row_in_pages_outside_the_window():
    """All retries, however many (no cap), each page a statement of its own that leaves out the window's rows."""
    mapping = load_mapping()
    subscription = mapping.get("Subscription")
    assert {alias: o.name for alias, o in mapping.related(subscription).items()} == {
        "account": "CustomerAccount", "owner": "CustomerAccount"}
    keys = [f"k{i:05d}" for i in range(2_500)]
    selection = Selection("window", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
                          retry_keys=keys, related_keys={"owner": ["o1", "o2"]})
    parts = selection_parts(subscription, selection)
    assert [p.may_repeat for p in parts] == [False, True, True, True]
    retried = [k for p in parts[1:] for k in keys if f"'{k}'" in p.condition]
    assert retried == keys  # every one, once
    assert all("NOT COALESCE(" in p.condition for p in parts[1:])
    assert "owner.id IN ('o1', 'o2')" in parts[3].condition  # the last page: 500 own keys and the 2 owners


def test_polling_counts_changes_of_every_table_an_object_resyncs_with():
    # Each object's own table and the tables of its changes_with aliases, as mapping.yaml joins
    # them: a catalog product renamed re-syncs the charges that show its name (ProductName).
    assert monitored_tables("accounts") == ["account", "contact", "subscription", "rateplan", "rateplancharge",
                                            "productrateplan", "product", "invoice", "payment", "invoicepayment"]
    assert monitored_tables("catalog") == ["product", "productrateplan", "productrateplancharge"]
    sql = changed_records_query(monitored_tables("catalog"), dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC))
    compile_query(sql, load_schema())  # valid Data Query SQL
    assert "TIMESTAMP '2026-01-02 03:04:05.000 UTC'" in sql  # floored to Zuora's whole seconds


def test_values_convert_exactly():
    number = converter("currency", PACIFIC)
    assert number(Decimal("12345678901234.567")) == "12345678901234.567"
    assert number(199.95) == "199.95" and number(10.0) == "10" and number(0) == "0"
    assert converter("boolean", PACIFIC)(True) == "true" and converter("boolean", PACIFIC)(0) == "false"
    datetime = converter("datetime", PACIFIC)
    assert datetime("2024-01-05 02:00:00") == "2024-01-05T10:00:00.000Z"      # PST → UTC
    assert datetime("2024-07-01 02:00:00") == "2024-07-01T09:00:00.000Z"      # PDT → UTC
    assert datetime("2024-07-01") == "2024-07-01T07:00:00.000Z"               # a date: midnight, tenant time
    assert datetime("2024-07-01T02:00:00Z") == "2024-07-01T02:00:00.000Z"
    assert converter("date", PACIFIC)("2024-02-29") == "2024-02-29"
    for sf_type in ("string", "currency", "date", "datetime", "boolean"):
        assert converter(sf_type, PACIFIC)(None) == NULL and converter(sf_type, PACIFIC)("") == NULL
    with pytest.raises(ValueConversionError):
        converter("date", PACIFIC)("not a date")
    with pytest.raises(ValueConversionError):
        number("twelve")
