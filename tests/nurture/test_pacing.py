"""Pacing: daily caps per sender and per recipient domain hold emails back to later runs, oldest due
first, and SMTP sends are spaced to the rate per minute."""

import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from nurture import delivery, transports
from nurture.context import load_context
from store import nurture as store
from store import outbox
from store.outbox import SqlOutbox
from tests.nurture.conftest import NOW, Recorder
from tests.nurture.test_delivery import many_messages, smtp_settings
from tests.nurture.test_tracks import DAY, MON, run
from tests.nurture.world import add_lead, write_portfolio

PACING = """
  pacing: {daily: 4, per_domain_daily: 10, domains: {slow.example: 1}}"""


def test_daily_caps_defer_to_later_runs_oldest_first(engine: Engine, tmp_path: Path) -> None:
    ctx = load_context(write_portfolio(tmp_path, nurture=PACING, cap="{emails: 5, per_days: 7}"))
    first = [add_lead(engine, f"A{i}", score=10)[0] for i in range(3)]
    slow = [add_lead(engine, f"S{i}", score=10, email=f"s{i}@Slow.example")[0] for i in range(2)]
    mon = run(engine, ctx, MON, tmp_path)
    assert (mon.enrolled, mon.deliveries, mon.deferred) == (
        {"warm-up": 5},
        {"sent": 4},
        {"domain cap: slow.example": 1},
    )
    later = [add_lead(engine, f"B{i}", score=10)[0] for i in range(3)]  # due after the one held back
    mon_noon = run(engine, ctx, MON + timedelta(hours=2), tmp_path)
    assert (mon_noon.enrolled, mon_noon.deliveries, mon_noon.deferred) == ({"warm-up": 3}, {}, {"daily cap": 3})
    tue = run(engine, ctx, MON + DAY, tmp_path)  # the held emails are due at Paris midnight
    assert (tue.deliveries, tue.deferred) == ({"sent": 4}, {})
    sent = [(m["lead_key"], m["created_at"]) for m in outbox.messages(engine, kind="nurture")]
    assert [key for key, _ in sent] == [*first, slow[0], slow[1], *later]  # the held slow one went first
    assert {key: at for key, at in sent}[slow[1]] == MON + DAY
    assert all(e["current_step"] == 2 for e in store.enrolments(engine) if e["lead_key"] != slow[1])


def test_smtp_sends_are_spaced_to_the_rate_per_minute(
    engine: Engine, tmp_path: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    messages = many_messages(engine, 4)
    settings = smtp_settings(tmp_path, port)
    options = delivery.Options.from_settings(settings, per_minute=300, clock=lambda: NOW)  # one per 0.2 s
    started = time.monotonic()
    results = delivery.deliver(SqlOutbox(engine), transports.SmtpTransport(settings), messages, options, now=NOW)
    assert [r.status for r in results] == ["sent"] * 4 and len(handler.received) == 4
    assert time.monotonic() - started >= 0.6


def test_the_send_window_is_each_leads_own(engine: Engine, tmp_path: Path) -> None:
    ctx = load_context(write_portfolio(tmp_path))  # weekdays 09:00–17:00, Europe/Paris by default
    paris, _ = add_lead(engine, "PARIS", score=10)
    chicago, _ = add_lead(engine, "CHI", score=10, attributes={"timezone": "America/Chicago"})
    tokyo, _ = add_lead(engine, "TYO", score=10, country="jp")
    bogus, _ = add_lead(engine, "BOGUS", score=10, attributes={"timezone": "Mars/Olympus"}, country="US")
    at = MON + timedelta(hours=5)  # 15:00 UTC: 16:00 in Paris, 09:00 in Chicago and New York, 00:00 in Tokyo
    summary = run(engine, ctx, at, tmp_path)
    assert (summary.deliveries, summary.deferred) == ({"sent": 3}, {"send window": 1})
    assert summary.deferred_until == {"send window": "2026-11-24T00:00:00+00:00"}  # Tuesday 09:00 in Tokyo
    assert sorted(m["lead_key"] for m in outbox.messages(engine)) == sorted([paris, chicago, bogus])
    assert tokyo not in [m["lead_key"] for m in outbox.messages(engine)]
