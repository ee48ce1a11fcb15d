"""Issue #17's defects: per-message outcomes after a crash, resolving unknown outcomes, bounce and
complaint events that suppress, the Date header and folded Subject, and a dry run deciding as a real run."""

import email
import email.policy
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from nurture import delivery, transports
from nurture.context import load_context
from nurture.mail import sample_context
from nurture.messages import compose
from store import nurture as store
from store import outbox
from store.outbox import SqlOutbox
from tests.nurture.conftest import NOW, Recorder, add_leads
from tests.nurture.test_delivery import MAILER, SECRET, SENDER, deliver, many_messages, nurture_message, smtp_settings
from tests.nurture.test_tracks import DAY, MON, enrolment_of, run
from tests.nurture.world import add_event, add_lead, write_portfolio


class KilledAfter(transports.SmtpTransport):
    """A real SMTP session whose process dies right after the server accepted the ``n``-th message."""

    def __init__(self, settings: object, n: int) -> None:
        super().__init__(settings)  # type: ignore[arg-type]
        self.left = n

    def send(self, sender: str, to: str, data: bytes) -> None:
        super().send(sender, to, data)
        self.left -= 1
        if self.left == 0:
            raise KeyboardInterrupt("killed after the server accepted the message")


def test_a_crash_loses_only_the_message_in_flight_and_unknowns_can_be_resolved(
    engine: Engine, tmp_path: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    messages = many_messages(engine, 6)
    settings = smtp_settings(tmp_path, port)
    options = delivery.Options.from_settings(settings, clock=lambda: NOW)
    with pytest.raises(KeyboardInterrupt):
        delivery.deliver(SqlOutbox(engine), KilledAfter(settings, 3), messages, options, now=NOW)
    assert len(handler.received) == 3
    # Messages 1 and 2 were recorded as the server answered; 3 is in flight; 4–6 were never intended.
    assert [(r["ref"], r["status"]) for r in outbox.messages(engine)] == [
        ("enrolment:0:0", "sent"), ("enrolment:1:0", "sent"), ("enrolment:2:0", "intent"),
    ]  # fmt: skip
    rerun = deliver(engine, messages, settings)
    assert [r.status for r in rerun] == ["duplicate", "duplicate", "unknown", "sent", "sent", "sent"]
    assert [rcpt for _, rcpt, _ in handler.received][3:] == [["l3@x.example"], ["l4@x.example"], ["l5@x.example"]]
    [unknown] = outbox.unknown_outcomes(engine)
    assert unknown["ref"] == "enrolment:2:0"
    # Checked in the server's log: it did not go out. Released, the next delivery sends it.
    released = outbox.resolve_unknown(engine, [unknown["message_id"], "nope@x"], as_="released", note="not in log")
    assert released == [unknown["message_id"]]
    assert [r.status for r in deliver(engine, messages[2:3], settings)] == ["sent"]
    assert len(handler.received) == 7 and outbox.unknown_outcomes(engine) == []
    assert outbox.resolve_unknown(engine, [unknown["message_id"]], as_="sent", note="x") == []  # not open


def test_an_unknown_outcome_keeps_the_step_due_until_marked_sent(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = load_context(write_portfolio(tmp_path))
    key, _ = add_lead(engine, "U", score=10)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # died with the intent committed, the outcome never recorded

    with monkeypatch.context() as patch:
        patch.setattr(transports.FilesOnly, "send", killed)
        patch.setattr(transports.FilesOnly, "remote", True)
        with pytest.raises(KeyboardInterrupt):
            run(engine, ctx, MON, tmp_path)
    rerun = run(engine, ctx, MON + timedelta(minutes=5), tmp_path)
    assert rerun.deliveries == {"unknown": 1}
    assert (enrolment_of(engine, key)["current_step"], store.step_log(engine)) == (0, [])  # still due, not done
    [intent] = outbox.unknown_outcomes(engine)
    outbox.resolve_unknown(engine, [intent["message_id"]], as_="sent", note="in the server log")
    settled = run(engine, ctx, MON + timedelta(minutes=10), tmp_path)
    assert settled.deliveries == {"duplicate": 1}
    assert [(s["step"], s["action"]) for s in store.step_log(engine)] == [(0, "email"), (1, "wait")]


def test_hard_bounce_and_complaint_events_suppress_and_soft_bounces_count_to_the_threshold(
    engine: Engine, tmp_path: Path
) -> None:
    ctx = load_context(write_portfolio(tmp_path))
    leads = {name: add_lead(engine, name, score=10)[0] for name in ("HARD", "SPAM", "SOFT", "TWICE", "OK")}
    run(engine, ctx, MON, tmp_path)
    at = MON + timedelta(hours=1)
    hard = {"status": "5.1.1", "diagnostic": "user unknown"}
    add_event(engine, leads["HARD"], "b1", "email_bounce", at, properties=hard)
    add_event(engine, leads["SPAM"], "c1", "spam_complaint", at)
    for i in range(3):
        add_event(engine, leads["SOFT"], f"s{i}", "email_bounce", at + i * DAY / 4, properties={"type": "soft"})
    for i in range(2):
        add_event(engine, leads["TWICE"], f"t{i}", "email_bounce", at + i * DAY / 4, properties={"status": "4.2.2"})
    tue = run(engine, ctx, MON + DAY, tmp_path)
    assert tue.exits == {"bounced": 2, "unsubscribed": 1}
    assert tue.suppressed_by_events == 3
    consent = {row["lead_key"]: row for row in store.read_consent(engine).iter_rows(named=True)}
    assert consent[leads["HARD"]]["bounced_at"] == at
    assert consent[leads["SOFT"]]["bounced_at"] == at + DAY / 2  # the third soft bounce
    assert consent[leads["SPAM"]]["unsubscribed_at"] == at
    assert consent[leads["TWICE"]]["bounced_at"] is None and consent[leads["OK"]]["bounced_at"] is None
    status = {e["lead_key"]: (e["status"], e["exit_reason"]) for e in store.enrolments(engine)}
    assert status[leads["TWICE"]] == ("active", None) and status[leads["HARD"]] == ("exited", "bounced")


def test_a_resubscribe_voids_earlier_unsubscribes_and_complaints_and_a_webhook_hard_bounce_counts(
    engine: Engine, tmp_path: Path
) -> None:
    """The preference centre's ``resubscribe`` outweighs what came before it; the service's webhooks
    store a bounce's kind as ``bounce: hard``, which suppresses like a 5.x.x status."""
    ctx = load_context(write_portfolio(tmp_path))
    leads = {name: add_lead(engine, name, score=10)[0] for name in ("BACK", "BOUNCED", "GONE")}
    at = MON - DAY
    add_event(engine, leads["BACK"], "u1", "unsubscribe", at)
    add_event(engine, leads["BACK"], "c1", "spam_complaint", at + timedelta(hours=1))
    add_event(engine, leads["BACK"], "r1", "resubscribe", at + timedelta(hours=2))
    add_event(engine, leads["GONE"], "r2", "resubscribe", at)
    add_event(engine, leads["GONE"], "c2", "spam_complaint", at + timedelta(hours=1))
    add_event(engine, leads["BOUNCED"], "b1", "email_bounce", at, properties={"bounce": "hard"})
    summary = run(engine, ctx, MON, tmp_path)
    assert (summary.suppressed_by_events, summary.enrolled) == (2, {"warm-up": 1})
    consent = {row["lead_key"]: row for row in store.read_consent(engine).iter_rows(named=True)}
    assert consent[leads["BACK"]]["unsubscribed_at"] is None
    assert consent[leads["GONE"]]["unsubscribed_at"] == at + timedelta(hours=1)
    assert consent[leads["BOUNCED"]]["bounced_at"] == at
    assert [e["lead_key"] for e in store.enrolments(engine)] == [leads["BACK"]]


def test_dry_run_and_real_run_decide_the_same(engine: Engine, tmp_path: Path) -> None:
    ctx = load_context(write_portfolio(tmp_path, cap="{emails: 1, per_days: 7}"))
    for i in range(4):
        add_lead(engine, f"D{i}", score=10 + i)
    add_lead(engine, "HOT", score=50)
    gone, _ = add_lead(engine, "GONE", score=10)
    run(engine, ctx, MON, tmp_path)
    add_event(engine, gone, "u1", "unsubscribe", MON + DAY)
    add_lead(engine, "LATE", score=12)
    for at in (MON + 2 * DAY + timedelta(hours=1), MON + 5 * DAY):  # a wait elapsed; a Saturday (deferred)
        dry = run(engine, ctx, at, tmp_path, dry_run=True)
        real = run(engine, ctx, at, tmp_path)
        for field in ("exits", "enrolled", "deferred", "completed", "emails_total", "suppressed_by_events"):
            assert getattr(dry, field) == getattr(real, field), field
        assert [(e["to"], e["subject"]) for e in dry.emails] == [(e["to"], e["subject"]) for e in real.emails]
    assert (dry.deferred, real.enrolled) == ({}, {})


def test_date_is_the_sending_time_and_a_long_encoded_subject_is_folded(engine: Engine, tmp_path: Path) -> None:
    context = sample_context("nurture", SENDER)
    context["lead"] = {**context["lead"], "first_name": "Zoé-Ληταϊτιδα Ωμέγα Ελληνικά Ä Ö Ü ß Ñ Ç Å Ø Æ Œ"}
    message = compose(
        MAILER, "nurture_intro", context, kind="nurture", ref="enrolment:9:0", lead_key=1, run_id="r",
        to="z@x.example", sender=SENDER, unsubscribe_secret=SECRET,
    )  # fmt: skip
    assert b"\r\nDate:" not in message.as_bytes()  # dated when it is sent, not when composed
    add_leads(engine, {"lead_id": "LD-Z", "email": "z@x.example"})
    sending = NOW + timedelta(hours=3, seconds=7)
    options = delivery.Options(folder=tmp_path / "outbox", clock=lambda: sending)
    as_of = NOW - 7 * DAY  # a run dated in the past (--as-of) still dates its mail when it is sent
    delivery.deliver(SqlOutbox(engine), transports.FilesOnly(), [message], options, now=as_of)
    raw = next((tmp_path / "outbox").rglob("*.eml")).read_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    subject = head[head.index("Subject: ") : head.index("\r\nMessage-ID:")].split("\r\n")
    assert len(subject) == 3 and all(len(line) <= 76 for line in subject)  # was one 153-character line
    assert head.index("Date: ") < head.index("From: ")  # the stamp goes first
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == message.subject and message.subject.startswith("Zoé-Ληταϊτιδα")
    assert parsed["Date"].datetime == sending


def test_a_run_before_any_scoring_says_why_nobody_was_enrolled_and_deferrals_say_until_when(
    engine: Engine, tmp_path: Path
) -> None:
    ctx = load_context(write_portfolio(tmp_path))
    add_lead(engine, "NEW", score=None)
    before = run(engine, ctx, MON, tmp_path)
    assert (before.enrolled, before.notes) == (
        {}, ["nobody enrolled in crm tracks: no crm journey has a score yet (run leadscore score)"]
    )  # fmt: skip
    add_lead(engine, "SCORED", score=10)
    friday_evening = MON + 4 * DAY + timedelta(hours=9)  # 20:00 in Paris, after the window
    late = run(engine, ctx, friday_evening, tmp_path)
    assert (late.enrolled, late.notes, late.deferred) == ({"warm-up": 1}, [], {"send window": 1})
    assert late.deferred_until == {"send window": "2026-11-30T08:00:00+00:00"}  # Monday 09:00 in Paris


def test_a_message_whose_file_cannot_be_written_fails_and_is_never_sent(
    engine: Engine, tmp_path: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    [key] = add_leads(engine, {"lead_id": "LD-1", "email": "a@x.example"})
    settings = smtp_settings(tmp_path, port)
    (tmp_path / "outbox").write_text("a file where the outbox folder should be")
    [result] = deliver(engine, [nurture_message(key, "a@x.example", "enrolment:1:0")], settings)
    assert result.status == "failed" and result.error is not None and result.error.startswith("could not write ")
    assert handler.received == [] and [m["status"] for m in outbox.messages(engine)] == ["failed"]
