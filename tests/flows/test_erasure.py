"""``leadscore leads erase|export`` end to end: the demo's daily run fills every table, then a person is erased.

After the erasure no table, no column, no outbox file and no event-cache file holds the person's email,
phone or name; the next audience export removes them by their hashed identifiers only; other leads'
scores are unchanged; re-ingesting the old files brings nobody back; erasing again changes nothing.
"""

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sqlalchemy import Engine, inspect, select, text
from typer.testing import CliRunner

from examples.generate import generate
from flows.cli import app
from flows.daily import daily_pipeline
from flows.database import engine_for
from nurture.audiences import hashed_line
from stages.portfolio import load_portfolio
from store import audit, partitions
from store.event_cache import cache_dir, supported
from store.ingest import ingest_events
from store.settings import get_settings
from store.tombstones import ERASED_REASON, load_erased

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "portfolio.yaml"
AS_OF = datetime(2026, 11, 18, 10, tzinfo=UTC)
SECRET = "k" * 43
LEAD_KEYED = ["events", "journeys", "score_snapshots", "audience_export_rows", "nurture_enrolments", "outbox"]


@dataclass
class Person:
    key: int
    lead_id: str
    email: str
    first_name: str
    last_name: str
    phone: str


@pytest.fixture
def world(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", database_url)
    monkeypatch.setenv("LEADSCORE_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.setenv("LEADSCORE_ERASURE_SECRET", SECRET)
    monkeypatch.setenv("LEADSCORE_PORTFOLIO", str(DEMO))
    monkeypatch.delenv("LEADSCORE_SMTP_HOST", raising=False)
    monkeypatch.setattr(partitions, "CACHE_MIN_KEYS", 1)  # the small store's events go through the event cache
    get_settings.cache_clear()
    engine_for.cache_clear()
    data = generate(tmp_path / "gen", leads=400, events=8000, seed=3, as_of=AS_OF, bad_rows=2)
    for kind, path in (("leads", data.leads), ("events", data.events)):
        (tmp_path / "inbox" / kind).mkdir(parents=True)
        shutil.copy(path, tmp_path / "inbox" / kind / path.name)
        shutil.copy(path, tmp_path / f"{kind}.csv")
    daily(tmp_path, database_url)
    yield tmp_path
    engine_for(database_url).dispose()
    get_settings.cache_clear()
    engine_for.cache_clear()


def daily(folder: Path, url: str) -> None:
    daily_pipeline(
        str(DEMO),
        database_url=url,
        as_of=AS_OF,
        inbox=str(folder / "inbox"),
        audiences_dir=str(folder / "audiences"),
        report_path=str(folder / "report.html"),
    )


def run(*args: str | Path, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})
    assert result.exit_code == code, (result.output, result.exception)
    return result


def pick(engine: Engine) -> Person:
    """The lead found in the most lead-keyed tables (audience lines included), with a name and phone no one else has."""
    with engine.connect() as conn:
        union = " UNION ALL ".join(f"SELECT DISTINCT lead_key, '{name}' AS t FROM {name}" for name in LEAD_KEYED)
        ranked = conn.execute(
            text(
                f"SELECT c.lead_key FROM ({union}) c JOIN leads l ON l.key = c.lead_key"
                " WHERE l.phone IS NOT NULL AND l.email IS NOT NULL AND (SELECT count(*) FROM leads o"
                " WHERE (o.first_name = l.first_name AND o.last_name = l.last_name) OR o.phone = l.phone) = 1"
                " GROUP BY c.lead_key ORDER BY count(*) DESC, c.lead_key LIMIT 1"
            )
        ).scalar_one()
        row = conn.execute(
            text("SELECT key, lead_id, email, first_name, last_name, phone FROM leads WHERE key = :k"), {"k": ranked}
        ).one()
    return Person(*row)


def scan(engine: Engine, person: Person) -> dict[str, int]:
    """Rows per table (every table of the store, every column as text) holding the person's email, phone,
    lead id or full name."""
    needles = [person.email.lower(), person.phone.lower(), person.lead_id.lower()]
    names = (person.first_name.lower(), person.last_name.lower())
    found: dict[str, int] = {}
    for name, _, row in rows_as_text(engine):
        cell = " ".join(value for value in row if value is not None).lower()
        found[name] = found.get(name, 0) + (any(n in cell for n in needles) or (names[0] in cell and names[1] in cell))
    return {name: count for name, count in found.items() if count}


def keyed(engine: Engine, key: int) -> dict[str, int]:
    """Rows per table that carry the lead key (the event cache's per-key generation counter aside: it holds
    a number and no data of anyone)."""
    found: dict[str, int] = {}
    for name, columns, row in rows_as_text(engine):
        if "lead_key" in columns and row[columns.index("lead_key")] == str(key) and name != "event_generations":
            found[name] = found.get(name, 0) + 1
    return found


def rows_as_text(engine: Engine) -> Iterator[tuple[str, list[str], tuple[Any, ...]]]:
    with engine.connect() as conn:
        for name in inspect(conn).get_table_names():
            columns = [column["name"] for column in inspect(conn).get_columns(name)]
            casts = ", ".join(f'CAST("{column}" AS TEXT)' for column in columns)
            for row in conn.execute(text(f'SELECT {casts} FROM "{name}"')):
                yield name, columns, tuple(row)


def files_naming(folder: Path, person: Person) -> list[str]:
    """Files under ``folder`` whose bytes hold the person's email or phone."""
    needles = [person.email.lower().encode(), person.phone.lower().encode()]
    return sorted(
        str(path)
        for path in folder.rglob("*")
        if path.is_file() and any(n in path.read_bytes().lower() for n in needles)
    )


def file_holds(path: Path, needle: str) -> bool:
    """Whether the file's bytes hold ``needle``, read by another process: closing a descriptor of a SQLite file
    in this one would drop this process's locks on it (POSIX), and its connections would then fail."""
    script = "import sys; print(sys.argv[2].encode() in open(sys.argv[1], 'rb').read().lower())"
    answer = subprocess.run([sys.executable, "-c", script, str(path), needle.lower()], capture_output=True, text=True)
    return answer.stdout.strip() == "True"


def cached_keys(engine: Engine) -> set[int]:
    if not supported(engine):
        return set()
    keys: set[int] = set()
    for path in cache_dir(engine).rglob("chunk-*.arrow"):
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        keys |= set(table.column("lead_key").to_pylist())
    return keys


def naming_rejects(engine: Engine, values: set[str]) -> int:
    """Ingest rejects whose row has one of ``values`` (lower case) as a field's value."""
    with engine.connect() as conn:
        raws = [
            raw if isinstance(raw, dict) else json.loads(raw)
            for (raw,) in conn.execute(text("SELECT raw FROM ingest_rejects"))
        ]
    return sum(any(str(v).strip().lower() in values for v in raw.values()) for raw in raws)


def scores(engine: Engine, without: set[int]) -> list[tuple[Any, ...]]:
    """Every other lead's journeys: stage, score, band and qualification."""
    query = "SELECT lead_key, product_line, stage, score, band, qualification FROM journeys ORDER BY 1, 2"
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(query)) if row[0] not in without]


def uploaded(engine: Engine, key: int) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        query = "SELECT audience, platform, line FROM audience_export_rows WHERE lead_key = :k ORDER BY 1, 2"
        return [tuple(row) for row in conn.execute(text(query), {"k": key})]


def test_an_erased_person_is_gone_from_every_table_file_and_export(world: Path, database_url: str) -> None:
    engine = engine_for(database_url)
    person = pick(engine)
    second = "LD-0000001"  # named by two rejected rows of the events file
    with engine.begin() as conn:
        audit.record(
            conn,
            "ana@acme.example",
            "adjust",
            lead_key=person.key,
            note=f"{person.first_name} {person.last_name} called",
        )
    lines = uploaded(engine, person.key)
    assert lines, "the chosen lead was exported to an audience"
    # The scans find the person where they are (they cannot pass by looking nowhere).
    assert scan(engine, person)["leads"] == 1 and "console_audit" in scan(engine, person)
    assert {"events", "journeys", "score_snapshots", "audience_export_rows"} <= set(keyed(engine, person.key))
    with engine.connect() as conn:
        query = text("SELECT key, email FROM leads WHERE lead_id = :i")
        second_key, second_email = conn.execute(query, {"i": second}).one()
    second_lines = uploaded(engine, second_key)
    rejects = naming_rejects(engine, {person.email.lower(), person.lead_id.lower(), second.lower(), second_email})
    assert rejects >= 3  # the events file's two bad rows of LD-0000001, the leads file's bad row with its email
    assert files_naming(world / "outbox", person)
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        assert file_holds(world / "flow.db", person.email)
    if supported(engine):
        assert person.key in cached_keys(engine)
    before = scores(engine, {person.key, second_key})

    # Access first: the JSON holds exactly this lead's rows.
    exported = json.loads(run("leads", "export", person.email.upper(), "--by", "dpo@acme.example").stdout)
    assert exported["lead"]["lead_id"] == person.lead_id and exported["lead"]["phone"] == person.phone
    with engine.connect() as conn:
        for name in LEAD_KEYED:
            count = conn.execute(text(f"SELECT count(*) FROM {name} WHERE lead_key = :k"), {"k": person.key}).scalar()
            assert len(exported["tables"][name]) == count, name
            assert {row["lead_key"] for row in exported["tables"][name]} <= {person.key}
    assert [row["action"] for row in exported["tables"]["console_audit"]] == ["adjust"]
    emails = [message["eml"] for message in exported["tables"]["outbox"]]
    assert emails and all(emails) and any(person.email.lower() in eml.lower() for eml in emails)

    request = world / "erase.txt"
    request.write_text(f"# GDPR requests\n{person.email.upper()}\n{second}\nnot an id\nbad@@x\n")
    result = run("leads", "erase", request, "--by", "dpo@acme.example", "--json", code=1)
    summary = json.loads(result.stdout)
    assert summary["erased"] == 2 and summary["not_found"] == [] and summary["tombstones"] == 4
    assert summary["refused"] == [
        f"{request} line 4: 'not an id' is neither a lead id (no spaces) nor an email",
        f"{request} line 5: 'bad@@x' is not an email address",
    ]
    assert summary["rows"]["leads"] == 2 and summary["rows"]["ingest_rejects"] == rejects
    assert summary["rows"]["audience_export_rows"] == len(lines) + len(second_lines)

    assert scan(engine, person) == {}
    assert keyed(engine, person.key) == {"audience_export_rows": len(lines)}  # hashed cells, for the next removal
    assert files_naming(world / "outbox", person) == []
    if engine.dialect.name == "sqlite":  # not in the database file's free pages either
        assert not file_holds(world / "flow.db", person.email)
    assert person.key not in cached_keys(engine)
    with engine.connect() as conn:
        entries = conn.execute(text("SELECT actor, action, lead_key, detail FROM console_audit ORDER BY id")).all()
    assert [(actor, action) for actor, action, _, _ in entries] == [
        ("ana@acme.example", "adjust"),
        ("dpo@acme.example", "export"),
        ("dpo@acme.example", "erase"),
    ]
    assert [lead_key for _, _, lead_key, _ in entries] == [None, None, None]
    erase_detail = entries[2][3] if isinstance(entries[2][3], dict) else json.loads(entries[2][3])
    assert erase_detail == {"leads": 2, "rows": summary["rows"], "tombstones": 4}
    assert [tuple(row) for row in uploaded(engine, person.key)] == [
        (audience, platform, hashed_line(platform, line)) for audience, platform, line in lines
    ]

    # Idempotent: the same request again erases nothing more and says so.
    again = json.loads(run("leads", "erase", request, "--json", code=1).stdout)
    assert (again["erased"], again["rows"], again["tombstones"]) == (0, {}, 0)

    # The next run: other leads' scores unchanged, the person removed from each audience by hashed cells only.
    daily(world, database_url)
    assert scores(engine, {person.key, second_key}) == before and len(before) >= 460
    assert uploaded(engine, person.key) == [] and keyed(engine, person.key) == {}
    for audience, platform, line in lines:
        folder = world / "audiences" / audience / platform
        latest = sorted(folder.glob("*-removes.csv"), key=lambda p: p.stat().st_mtime)[-1]
        removed = latest.read_text().splitlines()
        assert hashed_line(platform, line) in removed
        email_cell = line.split(",")[0]
        for kind in ("full", "adds"):
            written = latest.with_name(latest.name.replace("-removes.csv", f"-{kind}.csv")).read_text()
            assert email_cell not in written
    assert scan(engine, person) == {}

    # Re-ingesting the old files brings nobody back, and keeps nothing of their rows.
    leads = json.loads(run("ingest", "leads", world / "leads.csv", "--json").stdout)
    refused = [r for r in leads["rejects"] if r["reason"] == ERASED_REASON]
    assert len(refused) == 2 and {r["field"] for r in refused} == {"lead_id"}
    assert person.email.encode() not in (world / "leads.csv.rejects.csv").read_bytes()
    portfolio = load_portfolio(DEMO)
    erased = load_erased(engine, SECRET)
    for row_by_row in (False, True):
        report = ingest_events(
            engine, world / "events.csv", event_types=set(portfolio.event_types),
            product_lines=set(portfolio.product_lines), erased=erased, row_by_row=row_by_row,
        )  # fmt: skip
        assert report.inserted == 0
        assert {r.reason for r in report.rejects if r.raw == {}} == {ERASED_REASON}
    assert scan(engine, person) == {} and keyed(engine, person.key) == {}
    with engine.connect() as conn:
        assert conn.execute(select(text("count(*)")).select_from(text("leads"))).scalar() == 398
