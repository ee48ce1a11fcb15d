"""``leadscore audiences export`` and the ``refresh_audiences`` flow, end to end on SQLite and PostgreSQL."""

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

# Prefect configures its log handlers on the sys.stderr of its first import: do it now, not inside CliRunner.
import flows.audiences
import flows.scoring
from flows.audiences import refresh_audiences
from flows.cli import app
from flows.database import engine_for
from store.audiences import PHONE_TABLE, add_members, read_audience_leads
from store.settings import get_settings
from store.tables import Lead, Run

PORTFOLIO = """name: tiny
product_lines:
  crm:
    bands: {cold: [0, 50], hot: [50, 100]}
    stages:
      discovery: {model: m.yaml}
nurture:
  audiences:
    retarget:
      platforms: [google, meta]
      default_country: FR
    pros:
      platforms: [linkedin]
"""
MODEL = "kind: points\nbehaviour:\n  - {name: visit, event: page_view, points: 10}\n"
LEADS = """lead_id,email,first_name,last_name,phone,ads_opt_in,unsubscribed_at
L1,Ann.Lee@Gmail.com,Ann,Lee,06 12 34 56 78,yes,
L2,bob@example.com,Bob,Ray,,no,
L3,cy@example.com,Cy,Day,,yes,2026-10-01T00:00:00Z
"""


@pytest.fixture
def cli(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", database_url)
    monkeypatch.delenv("LEADSCORE_PORTFOLIO", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    engine_for.cache_clear()
    (tmp_path / "portfolio.yaml").write_text(PORTFOLIO)
    (tmp_path / "m.yaml").write_text(MODEL)
    (tmp_path / "leads.csv").write_text(LEADS)
    run("ingest", "leads", tmp_path / "leads.csv", "--json")
    with engine_for(database_url).connect() as conn:
        keys = [key for (key,) in conn.execute(select(Lead.key).order_by(Lead.key))]  # type: ignore[arg-type]
    add_members(engine_for(database_url), "retarget", keys, run_id="track", as_of=datetime(2026, 11, 1, tzinfo=UTC))
    yield tmp_path
    engine_for(database_url).dispose()
    get_settings.cache_clear()
    engine_for.cache_clear()


def run(*args: str | Path, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})
    assert result.exit_code == code, (result.output, result.exception)
    return result


def test_export_json_files_and_idempotent_rerun(cli: Path) -> None:
    first = json.loads(run("audiences", "export", "--platform", "google", "--out", "files", "--json").stdout)
    assert [(r["audience"], r["members"], r["excluded_consent"], r["full"], r["added"]) for r in first] == [
        ("retarget", 3, 2, 1, 1)
    ]
    email = hashlib.sha256(b"annlee@gmail.com").hexdigest()
    phone = hashlib.sha256(b"+33612345678").hexdigest()  # a national number read in the default country
    names = [hashlib.sha256(b"ann").hexdigest(), hashlib.sha256(b"lee").hexdigest()]
    full = Path(first[0]["full_path"])
    assert full.parent == cli / "files" / "retarget" / "google"
    assert full.read_text() == f"Email,Phone,First Name,Last Name,Country,Zip\n{email},{phone},{','.join(names)},FR,\n"

    second = json.loads(run("audiences", "export", "--platform", "google", "--out", "files", "--json").stdout)
    assert [(r["full"], r["added"], r["removed"]) for r in second] == [(1, 0, 0)]
    assert Path(second[0]["adds_path"]).read_text() == "Email,Phone,First Name,Last Name,Country,Zip\n"
    assert second[0]["full_path"] != first[0]["full_path"]

    human = run(
        "audiences", "export", "--platform", "meta", "--audience", "retarget", "--as-of", "2026-11-02T00:00:00Z"
    )
    assert "retarget" in human.stdout and "meta" in human.stdout
    assert (cli / "audiences" / "retarget" / "meta").is_dir()
    with engine_for(get_settings().database_url).connect() as conn:
        kinds = [kind for (kind,) in conn.execute(select(Run.kind).where(Run.status == "completed"))]  # type: ignore[arg-type]
    assert kinds.count("audiences") == 3


def test_bad_usage_and_unknown_audience(cli: Path) -> None:
    assert "choose one of meta, google, linkedin" in run("audiences", "export", "--platform", "tiktok", code=2).output
    unknown = run("audiences", "export", "--platform", "meta", "--audience", "nope", code=1)
    assert "unknown audience 'nope'; declared: ['pros', 'retarget']" in unknown.output
    wrong = run("audiences", "export", "--platform", "google", "--audience", "pros", code=2)
    assert "audience 'pros' is not exported to google" in wrong.output
    assert "Invalid value" in run("audiences", "export", "--platform", "meta", "--as-of", "yesterday", code=2).output

    (cli / "portfolio.yaml").write_text(PORTFOLIO.replace("[linkedin]", "[linkedin, myspace]"))
    bad = run("audiences", "export", "--platform", "meta", code=2)
    assert "portfolio.yaml:13: nurture.audiences.pros.platforms[1]: Input should be 'meta', 'google' or" in bad.output


def test_refresh_audiences_flow_exports_every_platform(cli: Path, database_url: str) -> None:
    results = refresh_audiences(str(cli / "portfolio.yaml"), out_dir=str(cli / "flow"), database_url=database_url)
    assert sorted((r["audience"], r["platform"], r["full"], r["added"]) for r in results) == [
        ("pros", "linkedin", 0, 0),
        ("retarget", "google", 1, 1),
        ("retarget", "meta", 1, 1),
    ]
    again = refresh_audiences(str(cli / "portfolio.yaml"), out_dir=str(cli / "flow"), database_url=database_url)
    assert sorted((r["platform"], r["added"], r["removed"]) for r in again) == [
        ("google", 0, 0),
        ("linkedin", 0, 0),
        ("meta", 0, 0),
    ]


def test_a_refresh_reads_each_audience_once_for_all_its_platforms(
    cli: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[str] = []

    def reading(engine: Any, audience: str, *args: Any) -> Any:
        read.append(audience)
        return read_audience_leads(engine, audience, *args)

    monkeypatch.setattr(flows.audiences, "read_audience_leads", reading)
    results = refresh_audiences(str(cli / "portfolio.yaml"), out_dir=str(cli / "flow"), database_url=database_url)
    # Three exports, two audiences: retarget's members are read once for Google and Meta.
    assert [(r["audience"], r["platform"], r["members"], r["full"]) for r in results] == [
        ("retarget", "google", 3, 1),
        ("retarget", "meta", 3, 1),
        ("pros", "linkedin", 0, 0),
    ]
    assert sorted(read) == ["pros", "retarget"]


def test_lead_ingestion_parses_phones_for_phone_platforms(cli: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def parsed() -> list[tuple[str, str | None, str | None, str | None]]:
        with engine_for(get_settings().database_url).connect() as conn:
            stmt = select(Lead.lead_id, PHONE_TABLE.c.phone, PHONE_TABLE.c.region, PHONE_TABLE.c.e164).join(
                PHONE_TABLE, PHONE_TABLE.c.lead_key == Lead.key
            )
            return sorted(conn.execute(stmt.order_by(Lead.lead_id)).all())  # type: ignore[arg-type]

    # Ingesting (the fixture did) parsed L1's national number in the audiences' default country.
    assert parsed() == [("L1", "06 12 34 56 78", "FR", "+33612345678")]
    (cli / "changed.csv").write_text("lead_id,phone,country\nL1,+1 (415) 555-0123,US\nL2,not a phone,\n")
    run("ingest", "leads", cli / "changed.csv")
    assert parsed() == [("L1", "+1 (415) 555-0123", "US", "+14155550123"), ("L2", "not a phone", "FR", None)]

    # The export finds every phone parsed (parsing now would fail it) and writes L1's new phone.
    def no_parsing(phone: str, region: str | None) -> str | None:
        raise AssertionError(f"export parsed {phone!r} again")

    monkeypatch.setattr("nurture.audience_rows.e164", no_parsing)
    result = json.loads(run("audiences", "export", "--platform", "google", "--json").stdout)
    assert (
        Path(result[0]["full_path"]).read_text().splitlines()[1].split(",")[1]
        == hashlib.sha256(b"+14155550123").hexdigest()
    )
    assert parsed() == [("L1", "+1 (415) 555-0123", "US", "+14155550123"), ("L2", "not a phone", "FR", None)]
