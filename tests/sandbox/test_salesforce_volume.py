"""A million rows through Bulk API 2.0 into the sandbox and back, compared row by row."""

from __future__ import annotations

import csv
import io
import sys

import pytest

from conftest import ROOT, start_salesforce_sandbox

sys.path.insert(0, str(ROOT))
from benchmarks.sandbox_ingest import ACCOUNTS, SEED, customer_row, write_customer_csv  # noqa: E402

ROWS = 1_000_000


@pytest.mark.slow
def test_a_million_rows_load_and_query_back(tmp_path, monkeypatch):
    sandbox = start_salesforce_sandbox(tmp_path / "org", accounts=ACCOUNTS, seed=SEED)
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.ca_bundle)
        sf = sandbox.login()
        csv_path = tmp_path / "customers.csv"
        write_customer_csv(csv_path, ROWS)
        results = sf.bulk2.Zuora__CustomerAccount__c.upsert(
            csv_file=str(csv_path), external_id_field="Zuora__External_Id__c", wait=0.5
        )
        assert sum(r["numberRecordsProcessed"] for r in results) == ROWS
        assert sum(r["numberRecordsFailed"] for r in results) == 0
        csv_path.unlink()

        seen = bytearray(ROWS)  # one mark per generated row: no row missing, none twice
        soql = ("SELECT Zuora__External_Id__c, Name, Zuora__Account__c, Zuora__AccountNumber__c, Zuora__Balance__c, "
                "Zuora__Status__c, Zuora__LastInvoiceDate__c FROM Zuora__CustomerAccount__c")
        for page in sf.bulk2.Zuora__CustomerAccount__c.query(soql, max_records=200_000, wait=0.5):
            for row in csv.reader(io.StringIO(page[page.index("\n") + 1:])):
                index = int(row[0], 16)
                assert row == customer_row(index), f"row {index} differs"
                assert not seen[index], f"row {index} came back twice"
                seen[index] = 1
        assert all(seen)
        assert sf.query("SELECT COUNT() FROM Zuora__CustomerAccount__c")["totalSize"] == ROWS
    finally:
        sandbox.stop()
