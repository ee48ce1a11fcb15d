"""Concurrent and killed runs through real flows: one writing run per portfolio, one firing per crossing."""

import shutil
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from sqlalchemy import text

from examples.generate import generate
from flows import daily, scoring
from flows.database import engine_for
from store.runlock import RunLocked
from store.scores import start_run
from store.settings import get_settings
from store.tables import TriggerFiring
from tests.flows.test_daily import AS_OF as DAY
from tests.flows.test_daily import DEMO
from tests.flows.test_funnel_flow import _alerting_store, _settings, make_store
from tests.store.test_runlock import hold

AS_OF = datetime(2026, 11, 7, tzinfo=UTC)


def test_two_runs_that_read_before_either_writes_store_each_firing_once(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock bypassed: both runs decide the same crossings; the store keeps one firing per crossing."""
    store = make_store(tmp_path, database_url, "carry")
    store.views("G", "gadgets", 1, 2, 3, 4, 5, 6)
    engine = engine_for(database_url)
    both_read = threading.Barrier(2)
    write = scoring.write_partition

    def write_after_both_read(*args: object, **kwargs: object) -> int:
        both_read.wait(timeout=60)
        return write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scoring, "write_partition", write_after_both_read)
    runs = [start_run(engine, "score", AS_OF) for _ in range(2)]
    threads = [
        threading.Thread(
            target=scoring.score_partition.fn,
            args=(store.portfolio, "gadgets", (0, 1_000_000), AS_OF, run_id, uuid.uuid4().hex, database_url),
        )
        for run_id in runs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    fired = sorted((f.trigger, f.action, f.armed_at) for f in store.rows(TriggerFiring))
    assert fired == [("became MQL", "tag", 0), ("went hot", "tag", 0), ("went hot", "webhook", 0)]


def test_a_score_run_exits_saying_who_writes_the_portfolio(tmp_path: Path, database_url: str) -> None:
    store = make_store(tmp_path, database_url, "carry")
    url, _, query = database_url.partition("?")
    process, run_id = hold(url, parse_qs(query).get("options", [""])[0], "portfolio")
    try:
        with pytest.raises(RunLocked, match=f"run {run_id}, pid {process.pid} on "):
            store.score(AS_OF)
    finally:
        process.kill()
        process.wait()
    summary = store.score(AS_OF)  # the holder is gone: the next run goes on and aborts its run
    assert summary["scored"] == 5
    with engine_for(database_url).connect() as conn:
        status = conn.execute(text("SELECT status FROM runs WHERE run_id = :r"), {"r": run_id}).scalar_one()
    assert status == "aborted"


def test_an_owner_alert_that_could_not_be_written_is_retried_by_the_next_run(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "outbox"
    outbox.write_text("a file where the outbox folder should be: every .eml write fails")
    _settings(monkeypatch, outbox_dir=str(outbox))
    monkeypatch.delenv("LEADSCORE_SMTP_HOST", raising=False)
    store = _alerting_store(tmp_path, database_url)
    try:
        first = store.score(datetime(2026, 11, 7, tzinfo=UTC))
        assert first["actions"]["notify_owner"] == {"retry": 1}
        outbox.unlink()
        second = store.score(datetime(2026, 11, 8, tzinfo=UTC))
    finally:
        get_settings.cache_clear()
    assert second["actions"]["notify_owner"] == {"done": 1}
    (eml,) = outbox.rglob("*.eml")
    assert "To: rep@acme.example" in eml.read_text()
    (firing,) = [f for f in store.rows(TriggerFiring) if f.action == "notify_owner"]
    assert (firing.status, firing.attempts) == ("done", 2)


def test_hostile_files_in_the_drop_folder_never_stop_the_daily_pipeline(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADSCORE_OUTBOX_DIR", str(tmp_path / "outbox"))
    get_settings.cache_clear()
    data = generate(tmp_path / "gen", leads=100, events=1500, seed=5, as_of=DAY, bad_rows=0)
    inbox = tmp_path / "inbox"
    (inbox / "leads").mkdir(parents=True)
    (inbox / "events").mkdir()
    shutil.copy(data.leads, inbox / "leads" / "leads.csv")
    header, first, *rest = data.events.read_text().splitlines(keepends=True)
    hostile = first.split(",")
    hostile[0] += "-huge"
    hostile[-1] = "x" * 10_000_000 + "\n"  # a 10 MB cell in the last column
    (inbox / "events" / "a-hostile.csv").write_text(header + ",".join(hostile) + first)
    (inbox / "events" / "b-crashes.csv").write_text(header)
    (inbox / "events" / "c-good.csv").write_text(header + "".join(rest))
    ingest_file = daily.ingest_file

    def crash_on_b(portfolio: object, kind: str, path: Path, url: str | None, **options: object) -> object:
        if path.name == "b-crashes.csv":  # stands for any error nobody foresaw
            raise MemoryError("the reader ran out of memory")
        return ingest_file(portfolio, kind, path, url, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(daily, "ingest_file", crash_on_b)
    try:
        summary = daily.daily_pipeline(
            str(DEMO),
            database_url=database_url,
            as_of=DAY,
            inbox=str(inbox),
            audiences_dir=str(tmp_path / "audiences"),
            report_path=str(tmp_path / "report.html"),
        )
    finally:
        get_settings.cache_clear()
    by_file = {Path(r["file"]).name: r for r in summary["ingested"]}
    assert (by_file["a-hostile.csv"]["read"], by_file["a-hostile.csv"]["rejected"]) == (2, 1)
    assert by_file["a-hostile.csv"]["rejects"] == [
        {"line": 2, "field": None, "reason": "unreadable CSV row: field larger than field limit (1048576)"}
    ]
    assert (
        by_file["b-crashes.csv"]["error"]
        == "unexpected MemoryError while reading the file: the reader ran out of memory"
    )
    assert by_file["c-good.csv"]["rejected"] == 0 and by_file["c-good.csv"]["read"] == len(rest)
    day = datetime.now(UTC).date().isoformat()
    error_file = inbox / "rejected" / day / "events" / "b-crashes.csv.error.txt"
    assert error_file.read_text() == "unexpected MemoryError while reading the file: the reader ran out of memory\n"
    assert not any((inbox / "events").iterdir())  # nothing left to fail again tomorrow
    assert summary["failed"] == [] and summary["score"]["scored"] > 0
