"""Exports against a real store (SQLite file and PostgreSQL): consent, full + delta files, idempotent re-export."""

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, insert, select

from flows.audiences import ExportResult, export_audience
from nurture.audiences import AudienceSpec, AudienceWhere
from store.audiences import EXPORT_TABLE, PHONE_TABLE, add_members, remove_members
from store.ingest import ingest_leads
from store.tables import Journey, Lead

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LEADS = """\
lead_id,email,first_name,last_name,phone,country,ads_opt_in,unsubscribed_at
A1, Ann.Lee@Gmail.com ,Ann,Lee,+33 6 12 34 56 78,FR,yes,
A2,bob@example.com,Bob,Ray,,US,no,
A3,cy@example.com,Cy,Day,,US,yes,2026-10-01T00:00:00Z
A4,dee@example.com,Dée,Fox,06 12 34 56 79,FR,yes,
A5,eve@example.com,Eve,Gao,,DE,yes,
"""
HEADER = "Email,Phone,First Name,Last Name,Country,Zip\n"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def google_line(email: str, phone: str, first: str, last: str, country: str) -> str:
    return ",".join([sha(email), sha(phone) if phone else "", sha(first), sha(last), country, ""])


A1 = google_line("annlee@gmail.com", "+33612345678", "ann", "lee", "FR")
A4 = google_line("dee@example.com", "+33612345679", "dée", "fox", "FR")


def ingest(engine: Engine, tmp_path: Path, text: str, name: str = "leads.csv") -> None:
    path = tmp_path / name
    path.write_text(text)
    report = ingest_leads(engine, path)
    assert not report.rejects, report.rejects


def keys(engine: Engine, *lead_ids: str) -> list[int]:
    with engine.connect() as conn:
        found = dict(conn.execute(select(Lead.lead_id, Lead.key).where(Lead.lead_id.in_(lead_ids))).all())  # type: ignore[attr-defined]
    return [found[lead_id] for lead_id in lead_ids]


def files(result: ExportResult) -> tuple[str, str, str]:
    return tuple(Path(p).read_text() for p in (result.full_path, result.adds_path, result.removes_path))  # type: ignore[return-value]


def run(engine: Engine, tmp_path: Path, spec: AudienceSpec, when: datetime, platform: str = "google") -> ExportResult:
    return export_audience(engine, "a", spec, platform, out_dir=tmp_path / "out", as_of=when, run_id=f"run-{when:%d%H}")  # type: ignore[arg-type]


def test_full_and_delta_exports_honour_consent(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, tmp_path, LEADS)
    spec = AudienceSpec(platforms=["google"])
    add_members(engine, "a", keys(engine, "A1", "A2", "A3", "A4"), run_id="track", as_of=T0)

    first = run(engine, tmp_path, spec, T0 + timedelta(hours=1))
    # A2 has no ads consent and A3 unsubscribed: never exported.
    assert (first.members, first.excluded_consent, first.full, first.added, first.removed) == (4, 2, 2, 2, 0)
    assert files(first) == (HEADER + f"{A1}\n{A4}\n", HEADER + f"{A1}\n{A4}\n", HEADER)
    assert Path(first.full_path).parent == tmp_path / "out" / "a" / "google"
    # Parsed phones are remembered for the next exports (only consenting members are parsed).
    with engine.connect() as conn:
        phones = set(conn.execute(select(PHONE_TABLE.c.lead_key, PHONE_TABLE.c.phone, PHONE_TABLE.c.e164)).all())
    a1_key, a4_key = keys(engine, "A1", "A4")
    assert phones == {(a1_key, "+33 6 12 34 56 78", "+33612345678"), (a4_key, "06 12 34 56 79", "+33612345679")}

    # Nothing changed: the same full file, empty adds and removes.
    second = run(engine, tmp_path, spec, T0 + timedelta(hours=2))
    assert (second.full, second.added, second.removed) == (2, 0, 0)
    assert files(second) == (HEADER + f"{A1}\n{A4}\n", HEADER, HEADER)

    # A4 leaves the audience, A1 changes email, A2 gives consent, A5 joins.
    remove_members(engine, "a", keys(engine, "A4"), run_id="track", as_of=T0 + timedelta(hours=3))
    add_members(engine, "a", keys(engine, "A5"), run_id="track", as_of=T0 + timedelta(hours=3))
    ingest(engine, tmp_path, "lead_id,email,ads_opt_in\nA1,ann@acme.example,yes\nA2,bob@example.com,yes\n", "u.csv")
    third = run(engine, tmp_path, spec, T0 + timedelta(hours=4))
    a1_new = google_line("ann@acme.example", "+33612345678", "ann", "lee", "FR")
    a2 = google_line("bob@example.com", "", "bob", "ray", "US")
    a5 = google_line("eve@example.com", "", "eve", "gao", "DE")
    assert (third.full, third.added, third.removed) == (3, 3, 2)
    assert files(third) == (
        HEADER + f"{a1_new}\n{a2}\n{a5}\n",
        HEADER + f"{a1_new}\n{a2}\n{a5}\n",
        HEADER + f"{A1}\n{A4}\n",  # the exact lines uploaded before, A1's old email included
    )

    # A5 unsubscribes and A2 is erased: both are removed with the lines they were uploaded with.
    ingest(engine, tmp_path, "lead_id,unsubscribed_at\nA5,2026-11-02T13:30:00Z\n", "unsub.csv")
    with engine.begin() as conn:
        conn.execute(delete(Lead.__table__).where(Lead.__table__.c.lead_id == "A2"))  # type: ignore[attr-defined]
    fourth = run(engine, tmp_path, spec, T0 + timedelta(hours=5))
    assert (fourth.members, fourth.excluded_consent, fourth.full, fourth.added, fourth.removed) == (3, 2, 1, 0, 2)
    assert files(fourth) == (HEADER + f"{a1_new}\n", HEADER, HEADER + f"{a2}\n{a5}\n")

    with engine.connect() as conn:
        log = conn.execute(select(EXPORT_TABLE).order_by(EXPORT_TABLE.c.created_at)).all()
    assert [(r.full_count, r.added_count, r.removed_count) for r in log] == [(2, 2, 0), (2, 0, 0), (3, 3, 2), (1, 0, 2)]
    assert [r.previous_export_id for r in log] == [None, *(r.export_id for r in log[:-1])]
    assert [r.run_id for r in log] == ["run-0210", "run-0211", "run-0213", "run-0214"]
    assert log[0].as_of == T0 + timedelta(hours=1)


def test_platforms_keep_separate_histories(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, tmp_path, LEADS)
    spec = AudienceSpec(platforms=["google", "meta"])
    add_members(engine, "a", keys(engine, "A1"), run_id="track", as_of=T0)
    assert run(engine, tmp_path, spec, T0 + timedelta(hours=1), "google").added == 1
    meta = run(engine, tmp_path, spec, T0 + timedelta(hours=1), "meta")
    assert (meta.full, meta.added) == (1, 1)
    full = Path(meta.full_path).read_text().splitlines()
    assert full[0] == "EMAIL,PHONE,FN,LN,CT,ST,ZIP,COUNTRY,EXTERN_ID"
    email, phone, names = sha("ann.lee@gmail.com"), sha("33612345678"), [sha("ann"), sha("lee")]
    assert full[1] == ",".join([email, phone, *names, "", "", "", sha("fr"), "A1"])
    assert run(engine, tmp_path, spec, T0 + timedelta(hours=2), "meta").added == 0


def test_criteria_membership_from_journeys(engine: Engine, tmp_path: Path) -> None:
    ingest(engine, tmp_path, LEADS)
    a1, a2, a4, a5 = keys(engine, "A1", "A2", "A4", "A5")
    journeys = [
        (a1, "crm", "discovery", 10.0, "cold"),
        (a4, "crm", "discovery", 55.0, "hot"),  # scored too high
        (a5, "crm", "evaluation", 5.0, "cold"),  # another stage
        (a2, "crm", "discovery", 5.0, "cold"),  # no consent
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(Journey.__table__),  # type: ignore[attr-defined]
            [
                {"lead_key": k, "product_line": pl, "stage": st, "score": sc, "band": b, "status": "active"}
                for k, pl, st, sc, b in journeys
            ],
        )
    where = AudienceWhere(product_line="crm", stages=["discovery"], bands=["cold", "warm"], score_below=40)
    spec = AudienceSpec(platforms=["linkedin"], where=where)
    add_members(engine, "a", [a5], run_id="track", as_of=T0)  # explicit members count too
    result = run(engine, tmp_path, spec, T0 + timedelta(hours=1), "linkedin")
    assert (result.members, result.excluded_consent, result.full) == (3, 1, 2)
    assert Path(result.full_path).read_text() == (
        "email,firstname,lastname,jobtitle,employeecompany,country,googleaid\n"
        f"{sha('ann.lee@gmail.com')},Ann,Lee,,,FR,\n"
        f"{sha('eve@example.com')},Eve,Gao,,,DE,\n"
    )


@pytest.mark.parametrize("platform", ["meta", "google", "linkedin"])
def test_empty_audience_writes_header_only_files(engine: Engine, tmp_path: Path, platform: str) -> None:
    result = run(engine, tmp_path, AudienceSpec(platforms=[platform]), T0, platform)  # type: ignore[list-item]
    assert (result.members, result.full, result.added, result.removed) == (0, 0, 0, 0)
    full, adds, removes = files(result)
    assert full == adds == removes and full.count("\n") == 1
