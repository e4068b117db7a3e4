"""The preflight's rules (zuora_sync.preflight) over describe answers of the Salesforce sandbox's schema.

The end-to-end case (a preflight that fails a session before anything is written) is in
test_reconcile_and_preflight.py; these check each rule fast.
"""

from __future__ import annotations

import copy

import pytest

from sandbox.salesforce.schema import build_schema, builtin_schema_document
from zuora_sync.mapping import load_mapping
from zuora_sync.preflight import check_mapping

SCHEMA = build_schema(builtin_schema_document())


def describe(overrides: dict | None = None):
    """``describe`` of the sandbox schema, with ``{object: {field: {attribute: value} | None}}`` applied."""
    def answer(name: str) -> dict:
        sobject = SCHEMA.get(name)
        if sobject is None:
            raise LookupError(f"NOT_FOUND: {name}")
        result = copy.deepcopy(sobject.describe("62.0"))
        for field_name, change in ((overrides or {}).get(name) or {}).items():
            fields = [f for f in result["fields"] if f["name"] != field_name]
            if change is not None:
                fields.append({**next(f for f in result["fields"] if f["name"] == field_name), **change})
            result["fields"] = fields
        return result
    return answer


def test_the_default_mapping_fits_the_zuora_360_schema():
    mapping = load_mapping()
    result = check_mapping(mapping, mapping.scopes["accounts"] + mapping.scopes["catalog"], describe())
    assert result.problems == []
    assert result.types["Invoice"]["Zuora__Balance2__c"] in ("currency", "double")
    owner = next(lookup for lookup in result.lookups["Subscription"] if "InvoiceOwner" in lookup["column"])
    assert owner["required"] is False  # an optional lookup: left empty while its target is missing
    parent = next(lookup for lookup in result.lookups["Subscription"] if "CustomerAccount__r" in lookup["column"])
    assert parent["required"] is True


@pytest.mark.parametrize("overrides, expected", [
    ({"Zuora__Subscription__c": {"Zuora__Status__c": None}},
     "object Subscription → Zuora__Subscription__c, field Zuora__Status__c: no such field"),
    ({"Zuora__Subscription__c": {"Zuora__Status__c": {"updateable": False}}},
     "field Zuora__Status__c: not writable"),
    ({"Zuora__Subscription__c": {"Zuora__External_Id__c": {"externalId": False, "idLookup": False}}},
     "field Zuora__External_Id__c: the upsert key must be an external id field"),
    ({"Zuora__CustomerAccount__c": {"Zuora__External_Id__c": {"externalId": False, "idLookup": False}}},
     "Zuora__CustomerAccount__r.Zuora__External_Id__c: Zuora__External_Id__c is not an external id"),
])
def test_each_misfit_names_the_object_and_the_field(overrides, expected):
    result = check_mapping(load_mapping(), ["Subscription"], describe(overrides))
    assert any(expected in problem and "mapping.yaml" in problem for problem in result.problems), result.problems


def test_an_object_the_org_lacks_is_a_problem_not_a_crash():
    mapping = load_mapping()
    answer = describe()

    def without_invoices(name: str) -> dict:
        if name == "Zuora__ZInvoice__c":
            raise LookupError("NOT_FOUND: Zuora__ZInvoice__c")
        return answer(name)

    result = check_mapping(mapping, ["CustomerAccount", "Invoice"], without_invoices)
    assert result.problems == ["Zuora__ZInvoice__c: cannot describe it in Salesforce (NOT_FOUND: Zuora__ZInvoice__c)"]
    assert "CustomerAccount" in result.types and "Invoice" not in result.types
