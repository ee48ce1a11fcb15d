"""The columnar leads path against the row-by-row reference, on randomised lead files with every kind of
trouble: bad rows, duplicates within and across files, CRLF, a BOM, quoted newlines, a header that leaves
columns out, a broken JSON line; erased people (refused or stored suppressed), claimed visitors, account
ids and email domains (free mail or a company's). The reference always runs on SQLite; the columnar path
on SQLite and PostgreSQL (``engine``)."""

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from stages.account_spec import default_free_mail_domains
from stages.accounts import membership
from store.accounts import read_account_leads, read_accounts
from store.db import make_engine
from store.identity_tables import VisitorLink
from store.ingest import IngestReport, ingest_leads
from store.tables import IngestReject, Lead
from store.tombstones import AfterErasure, TombstoneKey, bury, load_erased
from tests.store.test_ingest_equivalence import GOOD_TIMES, ODD_TIMES, _csv, _jsonl

LINES = {"crm", "analytics"}
KEY = TombstoneKey("k" * 40)
ERASED_IDS = ["L3", "L17"]
ERASED_EMAILS = ["p5@acme.com"]
DOMAINS = ["acme.com", "gmail.com", "Example.COM", "yahoo.com"]


def _lead(rng: random.Random, n: int) -> dict[str, Any]:
    """One lead row as a dict of cells; mostly good, sometimes wrong or odd in one or more ways."""
    row: dict[str, Any] = {
        "lead_id": f"L{rng.randrange(n)}",
        "email": rng.choice(["", f"p{rng.randrange(n)}@{rng.choice(DOMAINS)}"]),
        "first_name": rng.choice(["", "Ann", " Bo ", "Zoë"]),
        "email_opt_in": rng.choice(["", "true", "no", "1"]),
        "ads_opt_in": rng.choice(["", "yes", "false"]),
        "unsubscribed_at": rng.choice(["", "", "", "2026-03-01T09:00:00Z"]),
        "product_interest": rng.choice(["", "crm", "crm; analytics", "analytics,crm"]),
        "account_id": rng.choice(["", "", "A1", " A2 "]),
        "anonymous_ids": rng.choice(["", "", "", f"V{rng.randrange(9)}", f"V{rng.randrange(9)}; V{rng.randrange(9)}"]),
        "job_title": rng.choice(["", "Head of IT", "CTO"]),
    }
    for _ in range(rng.choice([0, 0, 1, 2])):
        trouble = rng.randrange(11)
        if trouble == 0:
            row["lead_id"] = rng.choice(["", "  ", "L1\x1c", f" L{rng.randrange(n)}"])
        elif trouble == 1:
            row["email"] = rng.choice(["nope", "a@b", "é@example.com", " X@Example.com ", "P5@ACME.com"])
        elif trouble == 2:
            row["email_opt_in"] = rng.choice(["maybe", "TRUE", "off", "y"])
        elif trouble == 3:
            row["unsubscribed_at"] = rng.choice(ODD_TIMES + GOOD_TIMES)
        elif trouble == 4:
            row["product_interest"] = rng.choice(["ghost", "crm;ghost", " ; ", "crm\x1c"])
        elif trouble == 5:
            row["job_title"] = rng.choice(['two\nlines, "quoted"', "Chief\u00a0Officer", ""])
        elif trouble == 6:
            row["owner_email"] = rng.choice(["", "owner@example.com", "bad owner"])
        elif trouble == 7:
            row["bounced_at"] = rng.choice(GOOD_TIMES + ODD_TIMES)
        elif trouble == 8:
            row["lead_id"] = rng.choice(ERASED_IDS)
        elif trouble == 9:
            row["anonymous_ids"] = rng.choice(["V1,V1", " ; ", "V2;V3"])
        else:
            row["company"] = rng.choice(["", "Acme", "0123"])
    return row


def _lead_files(tmp_path: Path, seed: int) -> list[Path]:
    rng = random.Random(seed)
    files = []
    shapes = ["crlf-bom", "plain", "jsonl", "narrow", "plain"]
    for index, shape in enumerate(shapes):
        rows = [_lead(rng, 90 * (index + 1)) for _ in range(120)]  # repeats within and across files
        if shape == "narrow":  # absent columns keep the stored values; a header in another case
            rows = [{"lead_id": r["lead_id"], "Email": r["email"], "job_title": r["job_title"]} for r in rows]
        path = tmp_path / f"leads_{index}.{'jsonl' if shape == 'jsonl' else 'csv'}"
        if shape == "jsonl":
            files.append(_jsonl(path, rows, rng))
        else:
            files.append(_csv(path, rows, crlf=shape == "crlf-bom", bom=shape == "crlf-bom"))
    return files


def _when(value: Any, since: datetime) -> Any:
    """A time set by a run itself (a suppressed person's unsubscription) differs by run: compared as 'run'."""
    return "run" if isinstance(value, datetime) and value >= since else value


def _leads(engine: Engine, since: datetime) -> list[Any]:
    """The leads in key order, without the key: PostgreSQL's sequence also advances on the upserts that
    update, so keys differ from SQLite's, but the order new leads were inserted in must not."""
    leads = Lead.__table__
    columns = [c for c in leads.c if c.name not in ("key", "created_at", "updated_at")]
    with engine.connect() as conn:
        rows = conn.execute(select(*columns).order_by(leads.c.key)).all()
    return [tuple(_when(value, since) for value in row) for row in rows]


def _lead_ids(engine: Engine) -> dict[int, str]:
    leads = Lead.__table__
    with engine.connect() as conn:
        return dict(conn.execute(select(leads.c.key, leads.c.lead_id)).all())  # type: ignore[arg-type]


def _report(engine: Engine, report: IngestReport) -> tuple[Any, ...]:
    """Counts, rejects, notes and the (lead, line) interests; an interest's time is the run's."""
    rejects = [(r.line, r.field, r.reason, json.dumps(r.raw, sort_keys=True)) for r in report.rejects]
    counts = (report.read, report.accepted, report.inserted, report.updated, report.rejected)
    ids = _lead_ids(engine)
    return counts, rejects, report.notes, sorted((ids[key], line) for key, line, _ in report.interests)


def _side_tables(engine: Engine) -> tuple[list[Any], list[Any], list[Any]]:
    """Rejects kept, visitor links (by lead id) and account membership (by lead id)."""
    rejects, links = IngestReject.__table__, VisitorLink.__table__
    ids = _lead_ids(engine)
    with engine.connect() as conn:
        refused = conn.execute(
            select(rejects.c.line, rejects.c.field, rejects.c.reason, rejects.c.row_hash).order_by(
                rejects.c.source, rejects.c.line
            )
        ).all()
        linked = conn.execute(select(links.c.anonymous_id, links.c.lead_key, links.c.source)).all()
    members = membership(read_account_leads(engine), read_accounts(engine), default_free_mail_domains())
    return (
        [tuple(row) for row in refused],
        sorted((visitor, ids[key], source) for visitor, key, source in linked),
        sorted((ids[key], account, source) for key, account, source in members.iter_rows()),
    )


@pytest.mark.parametrize(("seed", "policy"), [(1, "refuse"), (2, "suppress"), (3, "refuse"), (4, "suppress")])
def test_columnar_leads_equal_the_row_by_row_reference(
    engine: Engine, tmp_path: Path, seed: int, policy: AfterErasure
) -> None:
    since = datetime.now(UTC)
    reference = make_engine(f"sqlite:///{tmp_path}/reference.db")
    erased = []
    for store in (reference, engine):
        with store.begin() as conn:
            bury(conn, KEY, ERASED_IDS, ERASED_EMAILS, since)
        erased.append(load_erased(store, KEY.secret, policy))
    files = _lead_files(tmp_path, seed)
    for path in files + files[:2]:  # the re-ingest of the first two files must change nothing, alike
        options: dict[str, Any] = {"product_lines": LINES, "chunk_size": 37}
        expected = ingest_leads(reference, path, row_by_row=True, erased=erased[0], **options)
        actual = ingest_leads(engine, path, erased=erased[1], **options)
        assert _report(engine, actual) == _report(reference, expected), path.name
    expected_leads = _leads(reference, since)
    assert _leads(engine, since) == expected_leads
    expected_tables = _side_tables(reference)
    assert _side_tables(engine) == expected_tables
    # The files exercise every side: stored and refused rows, erased people, visitors, both kinds of account.
    refused, linked, members = expected_tables
    assert len(expected_leads) > 100 and len(refused) > 40 and len(linked) > 3
    assert any(reason.startswith("this person was erased") for _, _, reason, _ in refused) == (policy == "refuse")
    assert {source for _, _, source in members} == {"account_id", "domain"}
    assert {account for _, account, _ in members} >= {"A1", "A2", "acme.com", "example.com"}
    reference.dispose()
