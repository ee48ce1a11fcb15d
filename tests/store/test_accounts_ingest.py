"""Accounts files are ingested like leads (reject ledger, idempotent upsert, free attributes), and a
lead's ``account_id`` column is stored by both the CSV and the JSON Lines paths; SQLite and PostgreSQL."""

import json
from pathlib import Path

from sqlalchemy import Engine, select
from sqlmodel import Session

from store.account_tables import Account
from store.ingest import ingest_accounts, ingest_leads
from store.tables import IngestReject, Lead

ACCOUNTS = """account_id,name,domain,industry,employees,region,owner,tier
A1,Acme,https://www.Acme.com/about,software,250,EMEA,ann@sales.example,gold
A2,Beta,beta.io,retail,many,NA,bob@sales.example,
A3,,not a domain,software,10,EMEA,,
,Nameless,x.io,,,,,
A4,Delta,delta.io,,,,not-an-email,
A1,Acme Corp,acme.com,software,260,EMEA,ann@sales.example,gold
"""


def _accounts(engine: Engine) -> dict[str, dict[str, object]]:
    with Session(engine) as session:
        rows = session.exec(select(Account)).scalars()  # type: ignore[call-overload]
        return {
            row.account_id: {
                "name": row.name,
                "domain": row.domain,
                "industry": row.industry,
                "employees": row.employees,
                "region": row.region,
                "owner": row.owner,
                "attributes": row.attributes,
            }
            for row in rows
        }


def test_accounts_rows_rejected_with_line_field_reason_and_the_last_row_wins(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "accounts.csv"
    path.write_text(ACCOUNTS)
    report = ingest_accounts(engine, path)
    assert (report.read, report.accepted, report.inserted, report.updated, report.rejected) == (6, 2, 1, 0, 4)
    assert [str(reject) for reject in report.rejects] == [
        "accounts.csv line 3, field 'employees': input should be a valid number, unable to parse string as a number",
        "accounts.csv line 4, field 'domain': not a domain: 'not a domain' (expected e.g. acme.com)",
        "accounts.csv line 5, field 'account_id': required",
        "accounts.csv line 6, field 'owner': value is not a valid email address: 'not-an-email' "
        "(expected name@domain.tld)",
    ]
    assert report.notes == ["1 row(s) repeat a account_id seen earlier in the file (the last one wins)"]
    assert _accounts(engine) == {
        "A1": {
            "name": "Acme Corp",
            "domain": "acme.com",
            "industry": "software",
            "employees": 260.0,
            "region": "EMEA",
            "owner": "ann@sales.example",
            "attributes": {"tier": "gold"},
        }
    }
    again = ingest_accounts(engine, path)  # idempotent: nothing written, no reject stored twice
    assert (again.inserted, again.updated, again.rejected) == (0, 0, 4)
    with Session(engine) as session:
        kinds = [r.kind for r in session.exec(select(IngestReject)).scalars()]  # type: ignore[call-overload]
    assert kinds == ["accounts"] * 4

    update = tmp_path / "update.jsonl"
    update.write_text(json.dumps({"account_id": "A1", "industry": "fintech", "tier": None}) + "\n")
    changed = ingest_accounts(engine, update)
    assert (changed.inserted, changed.updated) == (0, 1)
    assert _accounts(engine)["A1"] == {
        "name": "Acme Corp",  # a field absent from the row keeps its value
        "domain": "acme.com",
        "industry": "fintech",
        "employees": 260.0,
        "region": "EMEA",
        "owner": "ann@sales.example",
        "attributes": {},  # a null attribute clears it
    }


def test_a_leads_account_id_is_stored_from_csv_and_json_lines(engine: Engine, tmp_path: Path) -> None:
    csv_path = tmp_path / "leads.csv"
    csv_path.write_text("lead_id,email,account_id\nL1,a@acme.com,A1\nL2,b@gmail.com,\n")
    jsonl_path = tmp_path / "leads.jsonl"
    jsonl_path.write_text(json.dumps({"lead_id": "L3", "email": "c@x.io", "account_id": "A9"}) + "\n")
    ingest_leads(engine, csv_path)
    ingest_leads(engine, jsonl_path)
    with Session(engine) as session:
        rows = session.exec(select(Lead.lead_id, Lead.account_id, Lead.attributes).order_by(Lead.lead_id)).all()  # type: ignore[call-overload]
    assert [tuple(row) for row in rows] == [("L1", "A1", {}), ("L2", None, {}), ("L3", "A9", {})]
