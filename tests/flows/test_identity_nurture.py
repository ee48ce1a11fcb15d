"""Nurture after a merge: a step sent to the merged lead counts as sent for the survivor (no second email)."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import flows.nurture_run  # noqa: F401  (configures Prefect logging first)
from flows.database import engine_for
from flows.nurture_run import run_nurture
from store import nurture as store
from store import outbox
from store.merges import Pair, merge
from store.settings import get_settings
from tests.nurture.world import add_lead, write_portfolio

MON = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def outbox_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LEADSCORE_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.delenv("LEADSCORE_SMTP_HOST", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "outbox"
    get_settings.cache_clear()


def test_a_step_sent_to_the_merged_lead_is_not_sent_again_to_the_survivor(
    database_url: str, tmp_path: Path, outbox_dir: Path
) -> None:
    path = write_portfolio(tmp_path)
    engine = engine_for(database_url)
    dup, _ = add_lead(engine, "DUP", score=10, email="same@client.example")
    first = run_nurture(str(path), database_url=database_url, as_of=MON)
    assert [(e["lead_key"], e["subject"], e["status"]) for e in first["emails"]] == [(dup, "first for DUP", "sent")]

    keep, _ = add_lead(engine, "KEEP", score=10, email="same@client.example")
    other, _ = add_lead(engine, "OTHER", score=10)
    assert merge(engine, [Pair("KEEP", "DUP", "t")], at=MON, source="test") == {"merged": 1, "already": 0}
    second = run_nurture(str(path), database_url=database_url, as_of=MON + timedelta(hours=1))

    # KEEP enters the track, but its first step went to DUP already: settled without a send. OTHER gets it.
    assert second["enrolled"] == {"warm-up": 2}
    assert [(e["lead_key"], e["subject"]) for e in second["emails"]] == [(other, "first for OTHER")]
    assert [m["to_address"] for m in outbox.messages(engine)] == ["same@client.example", "other@client.example"]
    enrolments = {row["lead_key"]: row for row in store.enrolments(engine)}
    assert (enrolments[dup]["status"], enrolments[dup]["exit_reason"]) == ("exited", "merged")
    steps = [(s["step"], s["action"], s["message_id"]) for s in store.step_log(engine, enrolments[keep]["id"])]
    assert steps[0] == (0, "email", None)  # logged as done, with no message of its own
