"""Tracks across simulated days (``as_of``): enrolment, waits, branches, exits, consent, window, cap, re-runs."""

import types
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from flows import nurture_run as flow_module
from flows.nurture_run import NurtureSummary, nurture_once
from nurture.context import Context, load_context
from nurture.tokens import SecretError
from store import nurture as store
from store import outbox
from store.nurture import request_enrolments, request_exits
from store.settings import Settings
from store.tables import Lead
from tests.nurture.conftest import Recorder
from tests.nurture.world import add_event, add_lead, add_milestone, set_journey, write_portfolio

MON = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, 11:00 in Paris
SECRET = "nurture-test-unsubscribe-secret-0123456789"
DAY = timedelta(days=1)


def run(engine: Engine, ctx: Context, at: datetime, tmp_path: Path, *, dry_run: bool = False) -> NurtureSummary:
    settings = Settings(outbox_dir=tmp_path / "outbox", smtp_host=None)
    return nurture_once(engine, ctx, at, settings=settings, dry_run=dry_run, run_id=f"run-{at:%d-%H%M}")


def steps_of(engine: Engine, lead_key: int) -> list[tuple[int, str, str | None, str]]:
    ids = [e["id"] for e in store.enrolments(engine) if e["lead_key"] == lead_key]
    return [
        (s["step"], s["action"], s["detail"], s["run_id"]) for s in store.step_log(engine) if s["enrolment_id"] in ids
    ]


def enrolment_of(engine: Engine, lead_key: int, track: str = "warm-up") -> dict:
    [row] = [e for e in store.enrolments(engine) if e["lead_key"] == lead_key and e["track"] == track]
    return row


def sent_to(engine: Engine) -> list[tuple[int, str]]:
    return [(m["lead_key"], m["subject"]) for m in outbox.messages(engine, kind="nurture")]


def test_enrol_wait_branch_and_complete_across_days(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = load_context(write_portfolio(tmp_path))
    calls: list[tuple[str, str, list[int], str, datetime]] = []
    audiences = types.ModuleType("store.audiences")
    audiences.add_members = lambda engine, audience, keys, *, run_id, as_of: (
        calls.append(  # type: ignore[attr-defined]
            ("add", audience, keys, run_id, as_of)
        )
        or len(keys)
    )
    monkeypatch.setattr(flow_module, "audiences", audiences)  # records the calls instead of writing members
    reader, _ = add_lead(engine, "READER", score=10)
    silent, _ = add_lead(engine, "SILENT", score=25)

    day0 = run(engine, ctx, MON, tmp_path)
    assert (day0.enrolled, day0.deliveries, day0.exits) == ({"warm-up": 2}, {"sent": 2}, {})
    assert sent_to(engine) == [(reader, "first for READER"), (silent, "first for SILENT")]
    assert enrolment_of(engine, reader)["current_step"] == 2
    assert enrolment_of(engine, reader)["next_step_at"] == MON + 2 * DAY
    first_ids = {m["lead_key"]: m["message_id"] for m in outbox.messages(engine)}
    add_event(engine, reader, "o1", "email_open", MON + timedelta(hours=2), message_id=first_ids[reader])
    add_event(engine, silent, "o2", "email_open", MON + timedelta(hours=2), message_id=first_ids[silent], machine=True)

    for at in (MON + DAY, MON + 2 * DAY - timedelta(minutes=1)):
        quiet = run(engine, ctx, at, tmp_path)
        assert (quiet.enrolled, quiet.deliveries, quiet.exits, quiet.completed) == ({}, {}, {}, 0)

    wed = run(engine, ctx, MON + 2 * DAY, tmp_path)
    assert (wed.deliveries, wed.completed, wed.audience_steps) == ({"sent": 1}, 1, 1)
    assert wed.errors == []
    assert calls == [("add", "readers", [reader], "run-25-1000", MON + 2 * DAY)]
    assert sent_to(engine)[2:] == [(reader, "second for READER")]
    assert steps_of(engine, silent) == [
        (0, "email", "first", "run-23-1000"),
        (1, "wait", "2d", "run-23-1000"),
        (2, "branch", "opened: else", "run-25-1000"),
    ]
    done = enrolment_of(engine, silent)
    assert (done["status"], done["exit_reason"], done["exited_at"]) == ("completed", "completed", MON + 2 * DAY)
    assert enrolment_of(engine, reader)["next_step_at"] == MON + 3 * DAY

    thu = run(engine, ctx, MON + 3 * DAY, tmp_path)
    assert (thu.deliveries, thu.completed) == ({}, 1)
    assert steps_of(engine, reader) == [
        (0, "email", "first", "run-23-1000"),
        (1, "wait", "2d", "run-23-1000"),
        (2, "branch", "opened: then", "run-25-1000"),
        (3, "email", "second", "run-25-1000"),
        (4, "audience", "readers", "run-25-1000"),
        (5, "wait", "1d", "run-25-1000"),
    ]
    assert enrolment_of(engine, reader)["status"] == "completed"
    assert sorted(s["message_id"] for s in store.step_log(engine) if s["action"] == "email") == sorted(
        m["message_id"] for m in outbox.messages(engine)
    )
    # never re-entered (reentry: never), nothing more sent
    later = run(engine, ctx, MON + 10 * DAY, tmp_path)
    assert (later.enrolled, later.deliveries) == ({}, {})


def test_no_email_without_consent_or_after_unsubscribe_or_bounce(engine: Engine, tmp_path: Path) -> None:
    ctx = load_context(write_portfolio(tmp_path))
    add_lead(engine, "NO-OPT-IN", score=10, email_opt_in=False)
    add_lead(engine, "UNSUB", score=10, unsubscribed_at=MON - DAY)
    add_lead(engine, "BOUNCED", score=10, bounced_at=MON - DAY)
    add_lead(engine, "NO-EMAIL", score=10, email=None)
    add_lead(engine, "TOO-WARM", score=35)
    add_lead(engine, "UNSCORED", score=None)
    asked, _ = add_lead(engine, "ASKED", score=35)  # outside the entry criteria, but a trigger asks
    refused, _ = add_lead(engine, "REFUSED", score=10, email_opt_in=False)
    assert request_enrolments(engine, "warm-up", [asked, refused], run_id="score-1", as_of=MON, reason="trigger x") == 2
    assert request_enrolments(engine, "warm-up", [asked], run_id="score-1", as_of=MON, reason="trigger x") == 0
    request_enrolments(engine, "no-such-track", [asked], run_id="score-1", as_of=MON, reason="trigger y")

    summary = run(engine, ctx, MON, tmp_path)
    assert summary.enrolled == {"warm-up": 1}
    assert summary.requests == {"enrolled": 1, "refused: no_consent": 1, "refused: unknown track": 1}
    assert sent_to(engine) == [(asked, "first for ASKED")]
    assert enrolment_of(engine, asked)["reason"] == "trigger x"
    assert run(engine, ctx, MON + timedelta(hours=1), tmp_path).requests == {}  # settled once


def test_exits_on_score_rise_stage_change_unsubscribe_event_request_and_bounce(engine: Engine, tmp_path: Path) -> None:
    ctx = load_context(write_portfolio(tmp_path))
    rising, rising_journey = add_lead(engine, "RISING", score=10)
    moved, moved_journey = add_lead(engine, "MOVED", score=10)
    leaving, _ = add_lead(engine, "LEAVING", score=10)
    asked, _ = add_lead(engine, "ASKED", score=10)
    bounced, _ = add_lead(engine, "BOUNCED", score=10)
    staying, _ = add_lead(engine, "STAYING", score=10)
    assert run(engine, ctx, MON, tmp_path).enrolled == {"warm-up": 6}

    set_journey(engine, rising_journey, score=45.0, band="warm")
    set_journey(engine, moved_journey, stage="evaluation")
    add_event(engine, leaving, "u1", "unsubscribe", MON + timedelta(hours=20))
    add_event(engine, leaving, "u2", "unsubscribe", MON + timedelta(hours=30))  # after as_of: not yet
    request_exits(engine, "warm-up", [asked], run_id="score-2", as_of=MON + DAY, reason="became SQL")
    with engine.begin() as conn:
        conn.execute(Lead.__table__.update().where(Lead.key == bounced).values(bounced_at=MON + timedelta(hours=1)))  # type: ignore[attr-defined]

    tue = run(engine, ctx, MON + DAY, tmp_path)
    assert tue.exits == {
        "bounced": 1,
        "requested: became SQL": 1,
        "score_rose": 1,
        "stage_changed": 1,
        "unsubscribed": 1,
    }
    assert tue.suppressed_by_events == 1
    with engine.connect() as conn:
        assert conn.execute(select(Lead.unsubscribed_at).where(Lead.key == leaving)).scalar_one() == MON + timedelta(
            hours=20
        )
    rows = {e["lead_key"]: e for e in store.enrolments(engine)}
    assert (rows[rising]["status"], rows[rising]["exit_reason"], rows[rising]["exited_at"]) == (
        "exited", "score_rose", MON + DAY,
    )  # fmt: skip
    assert rows[staying]["status"] == "active"

    set_journey(engine, rising_journey, score=5.0, band="cold")  # falls back: re-entry is "never"
    wed = run(engine, ctx, MON + 2 * DAY, tmp_path)
    assert (wed.enrolled, wed.exits) == ({}, {})
    assert wed.completed == 1  # STAYING: nobody opened, the branch ends the track
    assert [key for key, _ in sent_to(engine)] == [rising, moved, leaving, asked, bounced, staying]


def test_send_window_defers_to_the_next_opening(engine: Engine, tmp_path: Path) -> None:
    ctx = load_context(write_portfolio(tmp_path))
    saturday = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    monday_opening = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # 09:00 in Paris
    key, _ = add_lead(engine, "WEEKEND", score=10)
    sat = run(engine, ctx, saturday, tmp_path)
    assert (sat.enrolled, sat.deliveries, sat.deferred) == ({"warm-up": 1}, {}, {"send window": 1})
    assert enrolment_of(engine, key)["next_step_at"] == monday_opening
    assert run(engine, ctx, monday_opening - timedelta(minutes=1), tmp_path).deliveries == {}
    assert run(engine, ctx, monday_opening, tmp_path).deliveries == {"sent": 1}
    late, _ = add_lead(engine, "FRIDAY-LATE", score=10)
    friday_close = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)  # 17:00 in Paris: the window has closed
    assert run(engine, ctx, friday_close, tmp_path).deferred == {"send window": 1}
    assert enrolment_of(engine, late)["next_step_at"] == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def test_frequency_cap_across_tracks(engine: Engine, tmp_path: Path) -> None:
    tracks = """
    a:
      entry: {product_line: crm, score_below: 30}
      steps: [{email: first}, {wait: 1d}, {email: second}]
    b:
      entry: {product_line: crm, score_below: 30}
      steps: [{email: third}]
      reentry: always
"""
    ctx = load_context(write_portfolio(tmp_path, tracks=tracks, cap="{emails: 1, per_days: 7}"))
    key, _ = add_lead(engine, "CAPPED", score=10)
    day0 = run(engine, ctx, MON, tmp_path)
    assert (day0.enrolled, day0.deliveries, day0.deferred) == ({"a": 1, "b": 1}, {"sent": 1}, {"frequency cap": 1})
    assert enrolment_of(engine, key, "b")["next_step_at"] == MON + 7 * DAY
    tue = run(engine, ctx, MON + DAY, tmp_path)
    assert (tue.deliveries, tue.deferred) == ({}, {"frequency cap": 1})
    assert enrolment_of(engine, key, "a")["next_step_at"] == MON + 7 * DAY
    later = run(engine, ctx, MON + 7 * DAY, tmp_path)  # both due: track order decides, the other waits a week more
    assert (later.deliveries, later.deferred, later.completed) == ({"sent": 1}, {"frequency cap": 1}, 1)
    assert enrolment_of(engine, key, "b")["next_step_at"] == MON + 14 * DAY
    assert [subject for _, subject in sent_to(engine)] == ["first for CAPPED", "second for CAPPED"]
    assert run(engine, ctx, MON + 14 * DAY, tmp_path).deliveries == {"sent": 1}


def test_rerun_and_crash_between_send_and_record_send_nothing_twice(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = load_context(write_portfolio(tmp_path))
    first, _ = add_lead(engine, "A", score=10)
    second, _ = add_lead(engine, "B", score=10)

    def crash(*args: object, **kwargs: object) -> int:
        raise RuntimeError("killed after sending, before recording the steps")

    with monkeypatch.context() as patch:
        patch.setattr(flow_module.store, "record_steps", crash)
        with pytest.raises(RuntimeError, match="killed after sending"):
            run(engine, ctx, MON, tmp_path)
    assert len(outbox.messages(engine)) == 2 and store.step_log(engine) == []
    rerun = run(engine, ctx, MON + timedelta(minutes=5), tmp_path)
    assert (rerun.enrolled, rerun.deliveries) == ({}, {"duplicate": 2})
    assert len(outbox.messages(engine)) == 2
    assert [(s[0], s[1]) for s in steps_of(engine, first)] == [(0, "email"), (1, "wait")]
    assert enrolment_of(engine, second)["next_step_at"] == MON + timedelta(minutes=5) + 2 * DAY
    again = run(engine, ctx, MON + timedelta(minutes=5), tmp_path)
    assert (again.enrolled, again.deliveries, again.exits) == ({}, {}, {})
    assert len(list((tmp_path / "outbox" / "2026-11-23").iterdir())) == 2


def test_dry_run_shows_rendered_subjects_and_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    ctx = load_context(write_portfolio(tmp_path))
    key, journey = add_lead(engine, "DRY", score=10)
    add_milestone(engine, journey, key, "MQL", MON - DAY)
    summary = run(engine, ctx, MON, tmp_path, dry_run=True)
    assert summary.enrolled == {"warm-up": 1}
    assert summary.emails == [
        {"lead_id": "DRY", "lead_key": key, "to": "dry@client.example", "ref": "enrolment:-1:0",
         "subject": "first for DRY", "status": "would send"},
    ]  # fmt: skip
    assert store.enrolments(engine) == [] and outbox.messages(engine) == []
    assert not (tmp_path / "outbox").exists()


def test_a_refused_email_stays_due_and_a_bounce_exits_the_track(
    engine: Engine, tmp_path: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    ctx = load_context(write_portfolio(tmp_path))
    busy, _ = add_lead(engine, "BUSY", score=10)
    gone, _ = add_lead(engine, "GONE", score=10)
    handler.script = {"busy@client.example": ["451 busy"] * 3, "gone@client.example": ["550 no such user"]}
    settings = Settings(
        outbox_dir=tmp_path / "outbox", smtp_host="127.0.0.1", smtp_port=port, smtp_backoff_seconds=0,
        unsubscribe_secret=SECRET,
    )  # fmt: skip
    first = nurture_once(engine, ctx, MON, settings=settings, run_id="r1")
    assert first.deliveries == {"bounced": 1, "failed": 1}
    assert (enrolment_of(engine, busy)["current_step"], enrolment_of(engine, busy)["next_step_at"]) == (0, MON)
    assert steps_of(engine, busy) == []
    second = nurture_once(engine, ctx, MON + timedelta(hours=1), settings=settings, run_id="r2")
    assert (second.exits, second.deliveries) == ({"bounced": 1}, {"sent": 1})
    assert [rcpt for _, rcpt, _ in handler.received] == [["busy@client.example"]]
    assert [(s[0], s[1], s[3]) for s in steps_of(engine, busy)] == [(0, "email", "r2"), (1, "wait", "r2")]
    assert enrolment_of(engine, gone)["exit_reason"] == "bounced"


@pytest.mark.parametrize("secret", [None, "too-short"])
def test_sending_over_smtp_without_a_real_unsubscribe_secret_refuses_to_start(
    engine: Engine, tmp_path: Path, smtp_server: tuple[Recorder, int], secret: str | None
) -> None:
    """Links signed with a missing, short or constant key could be forged: nothing is enrolled nor sent."""
    handler, port = smtp_server
    ctx = load_context(write_portfolio(tmp_path))
    add_lead(engine, "ADA", score=10)
    settings = Settings(
        outbox_dir=tmp_path / "outbox", smtp_host="127.0.0.1", smtp_port=port, unsubscribe_secret=secret
    )
    with pytest.raises(SecretError, match=r"LEADSCORE_UNSUBSCRIBE_SECRET (is not set|has 9 characters, fewer than 32)"):
        nurture_once(engine, ctx, MON, settings=settings, run_id="r1")
    assert (store.enrolments(engine), handler.received, outbox.messages(engine)) == ([], [], [])


def test_a_lead_that_stopped_a_product_line_enters_none_of_its_tracks_until_it_resubscribes(
    engine: Engine, tmp_path: Path
) -> None:
    """The preference centre's events: ``unsubscribe`` of one line keeps the lead out of that line's tracks
    (not suppressed: other lines still mail it); a later ``resubscribe`` lets it in again."""
    ctx = load_context(write_portfolio(tmp_path))
    stopped, _ = add_lead(engine, "STOPPED", score=10)
    add_lead(engine, "KEEN", score=10)
    add_event(engine, stopped, "pref-1", "unsubscribe", MON - DAY, product_line="crm")
    summary = run(engine, ctx, MON, tmp_path)
    assert summary.enrolled == {"warm-up": 1} and summary.suppressed_by_events == 0
    assert stopped not in [e["lead_key"] for e in store.enrolments(engine)]
    add_event(engine, stopped, "pref-2", "resubscribe", MON + timedelta(hours=1))
    assert run(engine, ctx, MON + timedelta(hours=2), tmp_path).enrolled == {"warm-up": 1}
    assert enrolment_of(engine, stopped)["status"] == "active"
