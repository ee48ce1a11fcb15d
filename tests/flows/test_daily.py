"""``daily_pipeline`` on the demo portfolio: drop folder → score → nurture, idempotent on re-run."""

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from examples.generate import generate
from flows import progress
from flows.daily import daily_pipeline
from flows.database import engine_for
from store.outbox_tables import OutboxMessage
from store.settings import get_settings
from store.tables import ScoreSnapshot, StageTransition, TriggerFiring

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "portfolio.yaml"
AS_OF = datetime(2026, 11, 18, 10, tzinfo=UTC)  # a Wednesday, inside the demo's send window


@pytest.fixture
def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "outbox"
    monkeypatch.setenv("LEADSCORE_OUTBOX_DIR", str(folder))
    monkeypatch.delenv("LEADSCORE_SMTP_HOST", raising=False)
    get_settings.cache_clear()
    yield folder
    get_settings.cache_clear()


def _count(url: str, table: type) -> int:
    with Session(engine_for(url)) as session:
        return session.exec(select(func.count()).select_from(table)).scalar_one()  # type: ignore[call-overload]


def test_daily_pipeline_files_the_drop_folder_and_is_idempotent(
    tmp_path: Path, database_url: str, outbox: Path
) -> None:
    data = generate(tmp_path / "gen", leads=400, events=8000, seed=3, as_of=AS_OF, bad_rows=2)
    inbox = tmp_path / "inbox"
    for kind, path in (("leads", data.leads), ("events", data.events)):
        (inbox / kind).mkdir(parents=True)
        shutil.copy(path, inbox / kind / path.name)
    (inbox / "events" / "notes.txt").write_text("not data\n")
    (inbox / "stage_updates").mkdir()
    (inbox / "stage_updates" / "crm.csv").write_text(
        "lead_id,product_line,stage,changed_at,source\n"
        "LD-0000001,crm-suite,lost,2026-11-17T09:00:00Z,hubspot\n"
        "LD-0000002,crm-suite,negotiation,2026-11-17T09:00:00Z,hubspot\n"
    )

    audiences, report = str(tmp_path / "audiences"), str(tmp_path / "report.html")
    seen: list[tuple[str, int, int, str]] = []
    with progress.watching(lambda *update: seen.append(update)):
        first = daily_pipeline(
            str(DEMO),
            database_url=database_url,
            as_of=AS_OF,
            inbox=str(inbox),
            audiences_dir=audiences,
            report_path=report,
        )

    day = datetime.now(UTC).date().isoformat()
    processed = inbox / "processed" / day
    assert sorted(p.relative_to(processed).as_posix() for p in processed.rglob("*") if p.is_file()) == [
        "events/events.csv",
        "events/events.csv.rejects.csv",
        "leads/leads.csv",
        "leads/leads.csv.rejects.csv",
        "stage_updates/crm.csv",
        "stage_updates/crm.csv.rejects.csv",
    ]
    rejected = inbox / "rejected" / day / "events"
    assert "unsupported file type '.txt'" in (rejected / "notes.txt.error.txt").read_text()
    assert not any(p.is_file() for kind in ("leads", "events", "stage_updates") for p in (inbox / kind).iterdir())
    ingested = {(r["kind"], r.get("rejected")) for r in first["ingested"]}
    assert ("stage_updates", 1) in ingested and ("leads", 2) in ingested
    assert first["score"]["scored"] > 0 and first["failed"] == []
    assert list(first["timings"]) == ["ingest", "score", "overdue", "nurture", "audiences", "retention", "report"]
    assert first["overdue"] == {}  # qualified in this run: none is past its SLA yet
    transitions = first["score"]["transitions"]["crm-suite"]
    assert transitions["discovery → lost (external)"] == 1
    sent = sum(first["nurture"]["deliveries"].values())
    assert sent > 0
    # Progress: each step as it starts, each file as it is read, each (line, partition) task as it ends,
    # the emails as they are settled.
    assert seen == [
        ("daily pipeline", 0, 7, "ingest"),
        ("ingesting files", 0, 4, "leads.csv"),
        ("ingesting files", 1, 4, "events.csv"),
        ("ingesting files", 2, 4, "notes.txt"),
        ("ingesting files", 3, 4, "crm.csv"),
        ("ingesting files", 4, 4, ""),
        ("daily pipeline", 1, 7, "score"),
        ("scoring partitions", 1, 2, ""),  # 400 leads: one partition, two product lines
        ("scoring partitions", 2, 2, ""),
        ("daily pipeline", 2, 7, "overdue"),
        ("daily pipeline", 3, 7, "nurture"),
        ("sending emails", sent, sent, ""),  # fewer than a delivery chunk: one count
        ("daily pipeline", 4, 7, "audiences"),
        ("daily pipeline", 5, 7, "retention"),
        ("daily pipeline", 6, 7, "report"),
        ("daily pipeline", 7, 7, ""),
    ]
    snapshots, firings, messages = (_count(database_url, t) for t in (ScoreSnapshot, TriggerFiring, OutboxMessage))
    assert messages == len(list(outbox.rglob("*.eml"))) == sent + first["score"]["actions"]["notify_owner"]["done"]
    assert _count(database_url, StageTransition) == sum(
        n for counts in first["score"]["transitions"].values() for n in counts.values()
    )

    exported = {(e["audience"], e["platform"]): e["full"] for e in first["audiences"]}
    assert first["report"]["nurture"] == 2 and "Nurture performance" in Path(report).read_text()
    assert exported[("crm-warm-up", "meta")] > 0

    again = daily_pipeline(
        str(DEMO), database_url=database_url, as_of=AS_OF, inbox=str(inbox), audiences_dir=audiences, report_path=report
    )

    assert again["ingested"] == []
    assert again["score"]["changed"] == 0 and again["score"].get("firings", {}) == {}
    assert sum(again["nurture"]["deliveries"].values()) == 0
    assert (_count(database_url, ScoreSnapshot), _count(database_url, TriggerFiring)) == (snapshots, firings)
    assert _count(database_url, OutboxMessage) == messages == len(list(outbox.rglob("*.eml")))
    assert {(e["audience"], e["platform"]): (e["added"], e["removed"]) for e in again["audiences"]} == {
        key: (0, 0) for key in exported
    }


SAME_STORE = (
    "SELECT l.lead_id, s.product_line, s.stage, s.as_of, s.score, s.band FROM score_snapshots s "
    "JOIN leads l ON l.key = s.lead_key ORDER BY 1, 2, 4, 3",
    "SELECT l.lead_id, t.product_line, t.from_stage, t.to_stage, t.reason, t.score_before, t.score_after "
    "FROM stage_transitions t JOIN leads l ON l.key = t.lead_key ORDER BY 1, 2, 3",
    'SELECT journey_id, "trigger", action, status FROM trigger_firings ORDER BY 1, 2, 3',
    "SELECT kind, to_address, subject, status FROM outbox ORDER BY 1, 2, 3",
    "SELECT audience, platform, full_count, added_count, removed_count FROM audience_exports ORDER BY 1, 2",
)


def test_the_in_process_pipeline_writes_what_the_flow_writes(tmp_path: Path, outbox: Path) -> None:
    """``daily_in_process`` (the demo's days) runs the flow's steps as plain calls: on the same drop folder it
    leaves the same scores, transitions, firings, emails and audience exports as ``daily_pipeline``."""
    from sqlalchemy import text

    from flows.daily import daily_in_process
    from nurture.context import load_context

    data = generate(tmp_path / "gen", leads=300, events=6000, seed=5, as_of=AS_OF)
    stores = {}
    for name in ("flow", "plain"):
        inbox = tmp_path / name / "inbox"
        for kind, path in (("leads", data.leads), ("events", data.events)):
            (inbox / kind).mkdir(parents=True)
            shutil.copy(path, inbox / kind / path.name)
        stores[name] = f"sqlite:///{tmp_path / name / 'leadscore.db'}"
    flow = daily_pipeline(
        str(DEMO),
        database_url=stores["flow"],
        as_of=AS_OF,
        inbox=str(tmp_path / "flow" / "inbox"),
        audiences_dir=str(tmp_path / "flow" / "audiences"),
        report_path=str(tmp_path / "flow" / "report.html"),
    )
    settings = get_settings().model_copy(update={"database_url": stores["plain"]})
    plain = daily_in_process(
        load_context(DEMO),
        settings,
        AS_OF,
        tmp_path / "plain" / "inbox",
        tmp_path / "plain" / "audiences",
        tmp_path / "plain" / "report.html",
    )
    assert plain["failed"] == flow["failed"] == []
    assert plain["score"]["bands"] == flow["score"]["bands"] and plain["score"]["firings"]
    assert plain["report"] == flow["report"]

    def rows(url: str) -> list[list[tuple]]:
        with engine_for(url).connect() as conn:
            return [[tuple(row) for row in conn.execute(text(sql))] for sql in SAME_STORE]

    first, second = rows(stores["flow"]), rows(stores["plain"])
    assert all(first), [len(r) for r in first]  # snapshots, transitions, firings, emails, exports exist
    assert first == second
