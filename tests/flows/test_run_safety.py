"""Concurrent and killed runs through real flows: one writing run per portfolio, one firing per crossing."""

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from sqlalchemy import text

from flows import scoring
from flows.database import engine_for
from store.runlock import RunLocked
from store.scores import start_run
from store.tables import TriggerFiring
from tests.flows.test_funnel_flow import make_store
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
    from store.settings import get_settings
    from tests.flows.test_funnel_flow import _alerting_store, _settings

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
