"""``run_nurture`` as a real Prefect flow run, and the ``nurture`` / ``suppress`` commands."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import Session
from typer.testing import CliRunner

import flows.nurture_run  # noqa: F401  (configures Prefect logging before the first CliRunner.invoke)
from flows.cli import app
from flows.database import engine_for
from flows.nurture_run import run_nurture
from store import nurture as store
from store import outbox
from store.settings import get_settings
from store.tables import Lead, Run
from tests.nurture.world import add_lead, write_portfolio

MON = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def outbox_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LEADSCORE_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.delenv("LEADSCORE_SMTP_HOST", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "outbox"
    get_settings.cache_clear()


def test_run_nurture_flow_sends_records_and_is_idempotent(database_url: str, tmp_path: Path, outbox_dir: Path) -> None:
    path = write_portfolio(tmp_path)
    engine = engine_for(database_url)
    first, _ = add_lead(engine, "F1", score=10)
    add_lead(engine, "F2", score=50)  # too warm for the track
    summary = run_nurture(str(path), database_url=database_url, as_of=MON)
    assert (summary["enrolled"], summary["deliveries"], summary["exits"]) == ({"warm-up": 1}, {"sent": 1}, {})
    assert [(e["lead_key"], e["subject"], e["status"]) for e in summary["emails"]] == [(first, "first for F1", "sent")]
    [message] = outbox.messages(engine)
    assert Path(message["path"]).parent == outbox_dir / "2026-11-23"
    assert Path(message["path"]).read_bytes().count(b"List-Unsubscribe: <https://acme.example/u?t=") == 1
    with Session(engine) as session:
        [nurture_run] = session.exec(select(Run).where(Run.kind == "nurture")).all()  # type: ignore[call-overload]
        run_row = nurture_run[0]
        assert (run_row.run_id, run_row.status, run_row.as_of) == (summary["run_id"], "completed", MON)
        assert run_row.stats["deliveries"] == {"sent": 1}
    again = run_nurture(str(path), database_url=database_url, as_of=MON)
    assert (again["enrolled"], again["deliveries"], again["emails"]) == ({}, {}, [])
    assert len(outbox.messages(engine)) == 1


def test_a_large_send_is_composed_batch_by_batch_as_delivery_takes_it(
    database_url: str, tmp_path: Path, outbox_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows import nurture_run
    from nurture import composing, delivery

    path = write_portfolio(tmp_path)
    engine = engine_for(database_url)
    keys = [add_lead(engine, f"F{i}", score=10)[0] for i in range(7)]
    monkeypatch.setattr(composing, "COMPOSE_BATCH", 3)
    monkeypatch.setattr(nurture_run, "EMAILS_LISTED", 2)
    monkeypatch.setattr(delivery, "CHUNK", 2)
    order: list[tuple[str, int]] = []
    read_recipients, record_intents = store.read_recipients, outbox.record_intents

    def reading(engine: Any, lead_keys: list[int], journey_ids: list[int]) -> Any:
        order.append(("compose", len(lead_keys)))
        return read_recipients(engine, lead_keys, journey_ids)

    def recording(conn: Any, rows: list[dict[str, Any]]) -> None:
        order.append(("deliver", len(rows)))
        record_intents(conn, rows)

    monkeypatch.setattr(store, "read_recipients", reading)
    monkeypatch.setattr(outbox, "record_intents", recording)
    summary = run_nurture(str(path), database_url=database_url, as_of=MON)

    # Never more than a compose batch ahead of delivery: bodies are not all held at once.
    assert order == [
        ("compose", 3), ("deliver", 2), ("compose", 3), ("deliver", 2), ("deliver", 2), ("compose", 1), ("deliver", 1),
    ]  # fmt: skip
    assert (summary["deliveries"], summary["emails_total"]) == ({"sent": 7}, 7)
    assert [(e["lead_key"], e["status"]) for e in summary["emails"]] == [(keys[0], "sent"), (keys[1], "sent")]
    assert len(outbox.messages(engine)) == 7


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outbox_dir: Path) -> Iterator[Path]:
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    monkeypatch.delenv("LEADSCORE_PORTFOLIO", raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    engine_for.cache_clear()
    write_portfolio(tmp_path)
    yield tmp_path
    engine_for(get_settings().database_url).dispose()
    engine_for.cache_clear()


def invoke(*args: str | Path, code: int = 0) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})
    assert result.exit_code == code, (result.output, result.exception)
    return result


def test_nurture_dry_run_then_real_run_from_the_cli(cli: Path) -> None:
    engine = engine_for(get_settings().database_url)
    key, _ = add_lead(engine, "C1", score=10)
    dry = json.loads(invoke("nurture", "--dry-run", "--as-of", "2026-11-23T10:00:00Z", "--json").stdout)
    assert dry["dry_run"] is True and dry["enrolled"] == {"warm-up": 1}
    assert dry["emails"] == [
        {"lead_id": "C1", "lead_key": key, "to": "c1@client.example", "ref": "enrolment:-1:0",
         "subject": "first for C1", "status": "would send"},
    ]  # fmt: skip
    assert store.enrolments(engine) == [] and outbox.messages(engine) == []
    real = invoke("nurture", "--as-of", "2026-11-23T10:00:00Z")
    assert "1 enrolled, 0 exited, 0 completed, 1 emails sent" in real.stdout
    assert "first for C1" in real.stdout
    assert [m["status"] for m in outbox.messages(engine)] == ["sent"]
    invoke("nurture", "--as-of", "2026-11-23T10:00:00", code=2)  # no zone


def test_suppress_unsubscribes_exits_tracks_and_reports_rejects(cli: Path) -> None:
    engine = engine_for(get_settings().database_url)
    gone, _ = add_lead(engine, "S1", score=10)
    kept, _ = add_lead(engine, "S2", score=10)
    invoke("nurture", "--as-of", "2026-11-23T10:00:00Z", "--json")
    (cli / "suppress.csv").write_text("lead_id,note\nS1,asked by phone\nNOPE,typo\n,blank\nS1,twice\n")
    summary = json.loads(invoke("suppress", cli / "suppress.csv", "--json").stdout)
    assert {k: summary[k] for k in ("read", "matched", "newly_unsubscribed", "enrolments_ended", "rejected")} == {
        "read": 4, "matched": 1, "newly_unsubscribed": 1, "enrolments_ended": 1, "rejected": 2,
    }  # fmt: skip
    assert [(r["line"], r["value"], r["reason"]) for r in summary["rejects"]] == [
        (3, "NOPE", "no lead with this lead_id"),
        (4, "", "empty lead_id"),
    ]
    assert (cli / "suppress.csv.rejects.csv").read_text().splitlines()[1] == "3,lead_id,NOPE,no lead with this lead_id"
    status = {e["lead_key"]: (e["status"], e["exit_reason"]) for e in store.enrolments(engine)}
    assert status == {gone: ("exited", "unsubscribed"), kept: ("active", None)}
    (cli / "by-email.csv").write_text("Email\n  S2@Client.Example \nbad-address\n")
    human = invoke("suppress", cli / "by-email.csv")
    assert "1 leads matched, 1 newly unsubscribed, 1 track enrolments ended, 1 rejected" in human.stdout
    with Session(engine) as session:
        unsubscribed = session.exec(select(Lead.lead_id).where(Lead.unsubscribed_at.is_not(None))).all()  # type: ignore[union-attr]
        assert sorted(row[0] for row in unsubscribed) == ["S1", "S2"]
    (cli / "wrong.csv").write_text("name\nx\n")
    assert "needs a lead_id or an email column" in invoke("suppress", cli / "wrong.csv", code=2).output


def test_an_invalid_nurture_section_is_a_usage_error(cli: Path) -> None:
    text = (cli / "portfolio.yaml").read_text().replace("- wait: 2d", "- wait: soon")
    (cli / "portfolio.yaml").write_text(text)
    result = invoke("nurture", "--dry-run", code=2)
    assert "portfolio.yaml:27: nurture.tracks.warm-up.steps[1].wait: 'soon' is not a duration" in result.output


def test_outcomes_lists_and_resolves_unknown_deliveries_from_the_cli(cli: Path) -> None:
    engine = engine_for(get_settings().database_url)
    key, _ = add_lead(engine, "O1", score=10)
    with engine.begin() as conn:
        outbox.record_intents(
            conn,
            [{"message_id": "m1@acme.example", "kind": "nurture", "ref": "enrolment:1:0", "lead_key": key,
              "run_id": "r", "to_address": "o1@client.example", "subject": "first for O1", "path": None,
              "created_at": MON}],
        )  # fmt: skip
    listed = invoke("nurture", "outcomes", "--unknown")
    assert "unknown outcomes (1)" in listed.stdout and "m1@acme.example" in listed.stdout
    resolved = json.loads(invoke("nurture", "outcomes", "--release", "m1@acme.example", "--json").stdout)
    assert (resolved["released"], resolved["unknown"]) == (["m1@acme.example"], [])
    assert [m["status"] for m in outbox.messages(engine)] == ["failed"]  # the next delivery sends it again


def test_preview_renders_a_leads_email_and_test_sends_it_without_recording(cli: Path) -> None:
    engine = engine_for(get_settings().database_url)
    add_lead(engine, "P1", score=10)
    shown = invoke("nurture", "preview", "P1", "--track", "warm-up", "--step", "3", "--html", cli / "p.html",
                   "--send-to", "me@acme.example")  # fmt: skip
    assert "Subject: second for P1" in shown.stdout and "Hello P1 (10.0)" in shown.stdout
    assert ">Hello P1</p>" in (cli / "p.html").read_text()
    [sent] = list((cli / "outbox" / "test-sends").iterdir())
    assert b"To: me@acme.example\r\n" in sent.read_bytes() and sent.read_bytes().startswith(b"Date: ")
    assert outbox.messages(engine) == [] and store.enrolments(engine) == []
    refused = invoke("nurture", "preview", "P1", "--track", "warm-up", "--step", "1", code=1)
    assert "step 1 of warm-up is not an email step; its email steps: [0, 3]" in refused.output
