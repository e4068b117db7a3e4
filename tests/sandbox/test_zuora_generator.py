"""The Zuora tenant generator: the same tenant for the same ``--accounts``/``--seed``, in the
shape the sync relies on (versions, hierarchies, CRM Ids, references, picklists, amounts), and
generated once per data dir by the real server process."""

from __future__ import annotations

import hashlib
import itertools
import re
import sqlite3
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from conftest import free_port, sandbox_command, start_zuora_sandbox
from sandbox.crm_accounts import crm_account_id, crm_account_name, crm_account_number
from sandbox.sfid import normalize_id
from sandbox.zuora.generator import (
    END,
    MAX_HIERARCHY_LEVELS,
    START,
    TABLES,
    account_id,
    account_level,
    account_parent,
    account_status,
    crm_id,
    crm_id_kind,
    generate_tenant,
    has_crm_id,
    parse_zuora_id,
    zuora_id,
)
from sandbox.zuora.schema import load_schema
from sandbox.zuora.tenant import Tenant

SEED = 3
ACCOUNTS = 2000
SCHEMA = load_schema()
ID = re.compile(r"[0-9a-f]{32}")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
FIRST, LAST = START.strftime("%Y-%m-%d %H:%M:%S"), END.strftime("%Y-%m-%d %H:%M:%S")


def generate(data_dir: Path, accounts: int, seed: int, **kwargs) -> Path:
    tenant = Tenant(data_dir)
    try:
        generate_tenant(tenant, accounts=accounts, seed=seed, **kwargs)
    finally:
        tenant.store.close()
    return data_dir / "tenant.sqlite3"


def tenant_digest(db: Path) -> str:
    """A hash of every object table, row by row in Id order."""
    digest = hashlib.sha256()
    with sqlite3.connect(db) as conn:
        for obj in SCHEMA.objects.values():
            digest.update(obj.table.encode())
            for row in conn.execute(f"SELECT * FROM {obj.table} ORDER BY id"):
                digest.update(repr(row).encode())
    return digest.hexdigest()


def table_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return {obj.name: conn.execute(f"SELECT COUNT(*) FROM {obj.table}").fetchone()[0]
                for obj in SCHEMA.objects.values()}


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> sqlite3.Connection:
    """One generated tenant of 2,000 accounts, opened read-only with rows as mappings."""
    path = generate(tmp_path_factory.mktemp("generated") / "tenant", ACCOUNTS, SEED)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    yield conn
    conn.close()


def rows(db: sqlite3.Connection, sql: str, *params) -> list[sqlite3.Row]:
    return db.execute(sql, params).fetchall()


def db_path(db: sqlite3.Connection) -> Path:
    return Path(db.execute("PRAGMA database_list").fetchone()[2])


# -- determinism ------------------------------------------------------------------------------------


def test_same_seed_gives_the_same_tenant_in_process_and_in_a_child_process(tmp_path):
    first = generate(tmp_path / "a", 300, 11)
    again = generate(tmp_path / "b", 300, 11)
    # The path large tenants take (rows made in a child interpreter) stores exactly the same rows.
    child = generate(tmp_path / "c", 300, 11, use_process=True)
    assert tenant_digest(first) == tenant_digest(again) == tenant_digest(child)
    other_seed = generate(tmp_path / "d", 300, 12)
    assert tenant_digest(other_seed) != tenant_digest(first)
    with sqlite3.connect(first) as a, sqlite3.connect(other_seed) as b:
        ids_a = {r[0] for r in a.execute("SELECT id FROM account")}
        assert ids_a.isdisjoint(r[0] for r in b.execute("SELECT id FROM account"))


def test_a_larger_tenant_starts_with_the_smaller_ones_accounts(tmp_path, db):
    # Each account is a function of (seed, index) alone: growing the tenant appends, never reshuffles.
    small = generate(tmp_path / "small", 50, SEED)
    with sqlite3.connect(small) as conn:
        small_accounts = conn.execute("SELECT * FROM account ORDER BY id").fetchall()
    large_accounts = [tuple(r) for r in rows(db, "SELECT * FROM account ORDER BY id LIMIT 50")]
    assert small_accounts == large_accounts


def test_generation_records_no_events(db):
    assert rows(db, "SELECT COUNT(*) FROM _events")[0][0] == 0


def test_an_interrupted_run_is_redone_cleanly_and_keeps_records_made_through_the_api(tmp_path):
    tenant = Tenant(tmp_path / "t")
    try:
        generate_tenant(tenant, accounts=40, seed=SEED)
        account = SCHEMA.get("Account")
        with tenant.store.write() as conn:
            [api_id] = tenant.store.insert(conn, account, [{"Name": "Made by hand", "Currency": "USD",
                                                            "BillCycleDay": 1}], user_id="u")
        # As if the process had died mid-run: the marker is still there, rows half written.
        tenant.store.set_setting("generator_run", {"accounts": 40, "seed": SEED})
        generate_tenant(tenant, accounts=40, seed=SEED)
        assert tenant.store.get_setting("generator_run") is None
        assert tenant.store.get(account, api_id)["Name"] == "Made by hand"
    finally:
        tenant.store.close()
    counts = table_counts(tmp_path / "t" / "tenant.sqlite3")
    assert counts == {**table_counts(generate(tmp_path / "fresh", 40, SEED)), "Account": 41}


# -- Ids, values, picklists ---------------------------------------------------------------------------


def test_ids_are_32_hex_unique_across_objects_and_name_their_object(db):
    seen = set()
    for table in TABLES:
        obj = next(o for o in SCHEMA.objects.values() if o.table == table)
        ids = [r[0] for r in rows(db, f"SELECT id FROM {table}")]
        assert all(ID.fullmatch(i) for i in ids)
        assert all(parse_zuora_id(i)[:2] == (SEED, obj.name) for i in ids)
        assert seen.isdisjoint(ids)
        seen.update(ids)
    assert account_id(SEED, 7) == zuora_id(SEED, "Account", 7) == rows(db, "SELECT id FROM account ORDER BY id")[7][0]
    assert parse_zuora_id("2c92" + "0" * 28) is None  # no object code 0
    assert parse_zuora_id("0f3c9e0a" * 3 + "4" + "0" * 7) is None  # an API-made (UUID4) Id


def test_required_fields_are_filled_and_values_have_their_stored_forms(db):
    for obj in SCHEMA.objects.values():
        for f in obj.fields.values():
            values = [r[0] for r in rows(db, f"SELECT {f.column} FROM {obj.table}")]
            present = [v for v in values if v is not None]
            where = f"{obj.name}.{f.name}"
            if f.required or f.system:
                assert len(present) == len(values), f"{where} is required"
            if f.type == "picklist":
                assert set(present) <= set(f.values), f"{where}: {set(present) - set(f.values)}"
            elif f.type == "date":
                assert all(DATE.fullmatch(v) for v in present), where
            elif f.type == "datetime":
                assert all(DATETIME.fullmatch(v) and FIRST <= v <= LAST for v in present), where
            elif f.type == "boolean":
                assert set(present) <= {0, 1}, where
            elif f.type == "decimal":
                assert all(isinstance(v, (int, float)) and round(v, 2) == v for v in present), where
            elif f.type == "string":
                assert all(isinstance(v, str) and len(v) <= f.length for v in present), where
            elif f.type == "id":
                assert all(ID.fullmatch(v) for v in present), where
        bad = rows(db, f"SELECT COUNT(*) FROM {obj.table} WHERE updateddate < createddate OR deleted != 0")
        assert bad[0][0] == 0, obj.name


def test_business_numbers_follow_zuoras_formats_and_are_unique(db):
    for sql, pattern in [("SELECT DISTINCT name FROM subscription", r"A-S\d{8}"),
                         ("SELECT DISTINCT chargenumber FROM rateplancharge", r"C-\d{8}"),
                         ("SELECT invoicenumber FROM invoice", r"INV\d{8}"),
                         ("SELECT paymentnumber FROM payment", r"P-\d{8}"),
                         ("SELECT sku FROM product", r"SKU-\d{8}")]:
        values = [r[0] for r in rows(db, sql)]
        assert values and all(re.fullmatch(pattern, v) for v in values), sql
        assert len(values) == len(set(values)), sql
    numbers = [r[0] for r in rows(db, "SELECT accountnumber FROM account ORDER BY id")]
    assert numbers == [crm_account_number(SEED, i) for i in range(ACCOUNTS)]
    names = [r[0] for r in rows(db, "SELECT name FROM account ORDER BY id")]
    assert names == [crm_account_name(SEED, i) for i in range(ACCOUNTS)]


def test_every_status_appears_spelled_as_zuora_spells_it(db):
    subscription = {r[0] for r in rows(db, "SELECT DISTINCT status FROM subscription")}
    assert subscription == set(SCHEMA.get("Subscription").field("Status").values)
    assert {r[0] for r in rows(db, "SELECT DISTINCT status FROM account")} == {"Draft", "Active", "Canceled"}
    assert {r[0] for r in rows(db, "SELECT DISTINCT status FROM invoice")} >= {"Draft", "Posted"}
    statuses = Counter(r[0] for r in rows(db, "SELECT status FROM account"))
    assert statuses["Active"] > 0.85 * ACCOUNTS
    payments = Counter(r[0] for r in rows(db, "SELECT status FROM payment"))
    assert payments["Processed"] > 0.9 * sum(payments.values())
    assert [r[0] for r in rows(db, "SELECT status FROM account ORDER BY id")] == [
        account_status(SEED, i) for i in range(ACCOUNTS)]


# -- shape ----------------------------------------------------------------------------------------------


def test_counts_per_account_match_the_intended_ratios(db):
    per_account = {name: count / ACCOUNTS for name, count in table_counts(db_path(db)).items()}
    intended = {"Account": 1.0, "Contact": 1.33, "Subscription": 2.5, "RatePlan": 3.5, "RatePlanCharge": 5.9,
                "Invoice": 2.6, "Payment": 2.0, "InvoicePayment": 2.1}
    for name, ratio in intended.items():
        assert ratio * 0.85 <= per_account[name] <= ratio * 1.15, (name, per_account[name])
    assert 19 <= sum(per_account[name] for name in intended) <= 23
    catalog = {name: per_account[name] * ACCOUNTS for name in
               ("Product", "ProductRatePlan", "ProductRatePlanCharge", "ProductRatePlanChargeTier")}
    assert catalog["Product"] == 20
    assert 40 <= catalog["ProductRatePlan"] <= 80
    assert catalog["ProductRatePlan"] <= catalog["ProductRatePlanCharge"] <= 3 * catalog["ProductRatePlan"]
    assert catalog["ProductRatePlanChargeTier"] >= 4 * catalog["ProductRatePlanCharge"]  # one per currency at least
    retired = rows(db, "SELECT COUNT(*) FROM product WHERE effectiveenddate < '2025-12-31'")[0][0]
    assert retired == 2



def test_hierarchies_have_at_most_five_levels_and_no_cycles(db):
    parent_of = {r["id"]: r["parentid"] for r in rows(db, "SELECT id, parentid FROM account")}
    levels = Counter()
    for account, parent in parent_of.items():
        chain = [account]
        while parent is not None:
            assert parent in parent_of and parent not in chain, f"bad parent chain from {account}"
            assert parent < account  # parents have lower indexes (and Ids)
            chain.append(parent)
            parent = parent_of[parent]
        assert len(chain) <= MAX_HIERARCHY_LEVELS
        levels[len(chain)] += 1
    assert set(levels) == {1, 2, 3, 4, 5}
    assert levels[1] > 0.9 * ACCOUNTS  # most accounts stand alone
    # The stored hierarchy is the one the helpers predict.
    by_index = [r[0] for r in rows(db, "SELECT parentid FROM account ORDER BY id")]
    for index, parent in enumerate(by_index):
        predicted = account_parent(SEED, index)
        assert parent == (None if predicted is None else account_id(SEED, predicted))
    assert [account_level(SEED, i) for i in range(5)] == [1, 2, 3, 4, 5]


def test_each_subscription_number_has_one_latest_version_and_a_consistent_chain(db):
    by_name = defaultdict(list)
    for r in rows(db, "SELECT id, name, version, status, originalid, previoussubscriptionid, accountid, "
                      "createddate, updateddate FROM subscription"):
        by_name[r["name"]].append(r)
    assert max(len(v) for v in by_name.values()) >= 4
    for name, versions in by_name.items():
        versions.sort(key=lambda r: r["version"])
        assert [r["version"] for r in versions] == list(range(1, len(versions) + 1)), name
        assert all(r["status"] == "Expired" for r in versions[:-1]), name  # only the latest can be live
        first = versions[0]
        assert first["previoussubscriptionid"] is None
        for older, newer in itertools.pairwise(versions):
            assert newer["previoussubscriptionid"] == older["id"]
            assert newer["createddate"] >= older["createddate"]
            assert older["updateddate"] == newer["createddate"]  # replaced when the next one came
        assert {r["originalid"] for r in versions} == {first["id"]}
        assert len({r["accountid"] for r in versions}) == 1
    owners = rows(db, "SELECT SUM(invoiceownerid = accountid), COUNT(*) FROM subscription")[0]
    assert owners[0] > 0.9 * owners[1]


def test_rate_plans_and_charges_follow_their_versions(db):
    assert rows(db, "SELECT COUNT(*) FROM subscription s WHERE NOT EXISTS "
                    "(SELECT 1 FROM rateplan p WHERE p.subscriptionid = s.id)")[0][0] == 0
    assert rows(db, "SELECT COUNT(*) FROM rateplan p WHERE NOT EXISTS "
                    "(SELECT 1 FROM rateplancharge c WHERE c.rateplanid = p.id)")[0][0] == 0
    # A charge keeps its number and OriginalId across versions; the original is its first row.
    lineages = defaultdict(list)
    for r in rows(db, "SELECT c.id, c.chargenumber, c.originalid, c.segment, c.version, s.name, s.version AS sv "
                      "FROM rateplancharge c JOIN rateplan p ON p.id = c.rateplanid "
                      "JOIN subscription s ON s.id = p.subscriptionid ORDER BY c.id"):
        lineages[r["chargenumber"]].append(r)
    for number, charges in lineages.items():
        assert len({c["name"] for c in charges}) == 1, number
        assert {c["originalid"] for c in charges} == {charges[0]["id"]}, number
        segments = [c["segment"] for c in charges]
        assert segments == sorted(segments) and segments[0] == 1, number
    assert max(c["segment"] for charges in lineages.values() for c in charges) > 1
    types = Counter(r[0] for r in rows(db, "SELECT amendmenttype FROM rateplan"))
    assert {"NewProduct", "UpdateProduct", "RemoveProduct", None} <= set(types)
    # Charges are priced from the catalog tier in the account's currency.
    mismatched = rows(db, """
        SELECT COUNT(*) FROM rateplancharge c JOIN rateplan p ON p.id = c.rateplanid
        JOIN subscription s ON s.id = p.subscriptionid JOIN account a ON a.id = s.accountid
        WHERE NOT EXISTS (SELECT 1 FROM productrateplanchargetier t WHERE t.productrateplanchargeid =
                          c.productrateplanchargeid AND t.currency = a.currency AND t.price = c.price)""")
    assert mismatched[0][0] == 0


def test_every_reference_points_at_an_existing_record(db):
    checked = 0
    for obj in SCHEMA.objects.values():
        for f in obj.fields.values():
            if not f.references:
                continue
            target = SCHEMA.get(f.references).table
            dangling = rows(db, f"SELECT COUNT(*) FROM {obj.table} x WHERE x.{f.column} IS NOT NULL AND NOT EXISTS "
                                f"(SELECT 1 FROM {target} t WHERE t.id = x.{f.column})")[0][0]
            assert dangling == 0, f"{obj.name}.{f.name} → {f.references}"
            checked += 1
    assert checked >= 15
    # Bill-to and sold-to contacts belong to their own account; Active accounts have both.
    assert rows(db, "SELECT COUNT(*) FROM account a JOIN contact c ON c.id IN (a.billtoid, a.soldtoid) "
                    "WHERE c.accountid != a.id")[0][0] == 0
    assert rows(db, "SELECT COUNT(*) FROM account WHERE status = 'Active' AND (billtoid IS NULL OR soldtoid IS NULL)"
                )[0][0] == 0
    assert rows(db, "SELECT COUNT(*) FROM account WHERE billtoid != soldtoid")[0][0] > 0.2 * ACCOUNTS


def test_crm_ids_match_the_salesforce_sandbox_except_the_predicted_invalid_ones(db):
    stored = [(r["crmid"], r["status"]) for r in rows(db, "SELECT crmid, status FROM account ORDER BY id")]
    salesforce_ids = {crm_account_id(SEED, i) for i in range(ACCOUNTS)}  # what that sandbox holds
    kinds = Counter()
    for index, (value, status) in enumerate(stored):
        kind = crm_id_kind(SEED, index)
        kinds[kind] += 1
        assert value == crm_id(SEED, index)
        assert has_crm_id(SEED, index) == (value is not None)
        if kind == "valid":
            assert value == crm_account_id(SEED, index)
        elif kind == "unknown":
            assert normalize_id(value) == value and value.startswith("001") and value not in salesforce_ids
            assert status == "Active"
        elif kind == "malformed":
            assert normalize_id(value) is None and status == "Active"
    assert kinds["unknown"] == kinds["malformed"] == ACCOUNTS // 400  # 1 in 200 invalid in all
    assert 0.05 * ACCOUNTS < kinds["none"] < 0.12 * ACCOUNTS
    assert crm_id_kind(SEED, 17) == "unknown"  # even a 20-account demo tenant shows the error path


def test_invoice_and_payment_amounts_add_up(db):
    assert rows(db, "SELECT COUNT(*) FROM invoice WHERE abs(amount - (amountwithouttax + taxamount)) > 0.001"
                )[0][0] == 0
    assert rows(db, "SELECT COUNT(*) FROM invoice WHERE status != 'Canceled' "
                    "AND abs(amount - balance - paymentamount) > 0.001")[0][0] == 0
    assert rows(db, """SELECT COUNT(*) FROM invoice i WHERE abs(i.paymentamount -
                       (SELECT COALESCE(SUM(amount), 0) FROM invoicepayment p WHERE p.invoiceid = i.id)) > 0.001"""
                )[0][0] == 0
    assert rows(db, """SELECT COUNT(*) FROM payment y WHERE abs(y.appliedinvoiceamount -
                       (SELECT COALESCE(SUM(amount), 0) FROM invoicepayment p WHERE p.paymentid = y.id)) > 0.001"""
                )[0][0] == 0
    assert rows(db, """SELECT COUNT(*) FROM account a WHERE abs(a.balance - (SELECT COALESCE(SUM(balance), 0)
                       FROM invoice i WHERE i.accountid = a.id AND i.status = 'Posted')) > 0.001""")[0][0] == 0
    assert rows(db, "SELECT COUNT(*) FROM invoice WHERE status = 'Posted' AND posteddate IS NULL")[0][0] == 0
    assert rows(db, "SELECT COUNT(*) FROM invoicepayment p JOIN invoice i ON i.id = p.invoiceid "
                    "JOIN payment y ON y.id = p.paymentid WHERE i.accountid != y.accountid")[0][0] == 0
    # Some payments settle two invoices; some invoices stay open.
    assert rows(db, "SELECT COUNT(*) FROM (SELECT paymentid FROM invoicepayment GROUP BY paymentid "
                    "HAVING COUNT(*) > 1)")[0][0] > 0
    assert rows(db, "SELECT COUNT(*) FROM invoice WHERE status = 'Posted' AND balance > 0")[0][0] > 0


def test_updated_dates_spread_over_the_window_for_incremental_syncs(db):
    years = Counter(r[0][:4] for r in rows(db, "SELECT updateddate FROM subscription"))
    assert set(years) == {"2023", "2024", "2025"}
    assert min(years.values()) > 0.1 * sum(years.values())


# -- the server generates once per data dir ------------------------------------------------------------


def test_the_sandbox_generates_once_and_refuses_other_sizes(tmp_path):
    data_dir = tmp_path / "t"
    expected = table_counts(generate(tmp_path / "reference", 200, SEED))
    sandbox = start_zuora_sandbox(data_dir, accounts=200, seed=SEED)
    try:
        counts = sandbox.admin("GET", "counts")
    finally:
        sandbox.stop()
    assert {name: c["live"] for name, c in counts.items()} == expected
    assert all(c["deleted"] == 0 for c in counts.values())

    # Mark one record by hand: a regeneration would have to put it back.
    with sqlite3.connect(data_dir / "tenant.sqlite3") as conn:
        conn.execute("UPDATE account SET name = 'Renamed while stopped' WHERE id = ?", (account_id(SEED, 0),))
    started = time.monotonic()
    sandbox = start_zuora_sandbox(data_dir, accounts=200, seed=SEED)
    try:
        assert {name: c["live"] for name, c in sandbox.admin("GET", "counts").items()} == expected
    finally:
        sandbox.stop()
    assert time.monotonic() - started < 30
    with sqlite3.connect(data_dir / "tenant.sqlite3") as conn:
        assert conn.execute("SELECT name FROM account WHERE id = ?", (account_id(SEED, 0),)).fetchone()[0] == \
            "Renamed while stopped"

    result = subprocess.run(
        sandbox_command("zuora", "--host", "127.0.0.1", "--port", str(free_port()), "--data-dir", str(data_dir),
                        "--accounts", "201", "--seed", str(SEED)),
        check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--accounts 200 --seed 3" in result.stderr
