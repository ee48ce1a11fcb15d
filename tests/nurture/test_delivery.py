"""Delivery: .eml outbox by default, a real SMTP round trip, bounces, retries, at-most-once after a crash."""

import email
import email.policy
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from nurture import delivery, transports
from nurture.delivery import DeliveryResult, Options, stamp
from nurture.mail import Mailer, Sender, sample_context
from nurture.messages import Outgoing, compose, owner_alert
from nurture.tokens import unsubscribe_token
from nurture.transports import transport_for
from store import outbox
from store.outbox import SqlOutbox
from store.settings import Settings
from store.tables import Lead
from tests.nurture.conftest import NOW, Recorder, add_leads

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "portfolio.yaml"
SECRET = "test-unsubscribe-secret-0123456789abcdef"
SENDER = Sender(
    name="Acme Cloud",
    address="news@acme.example",
    postal_address="Acme Cloud SAS, 12 rue de la Paix, 75002 Paris, France",
    unsubscribe_url="https://acme.example/unsubscribe?token={token}",
    unsubscribe_mailto="mailto:unsubscribe@acme.example?subject=unsubscribe-{token}",
)
MAILER = Mailer.for_portfolio(DEMO)


def nurture_message(lead_key: int, to: str, ref: str, run_id: str = "run-1") -> Outgoing:
    context = sample_context("nurture", SENDER)
    context["lead"] = {**context["lead"], "lead_id": f"LD-{lead_key}", "email": to}
    return compose(
        MAILER, "nurture_intro", context, kind="nurture", ref=ref, lead_key=lead_key, run_id=run_id, to=to,
        sender=SENDER, date=NOW, unsubscribe_secret=SECRET,
    )  # fmt: skip


def alert_message(lead_key: int, to: str, firing_id: int) -> Outgoing:
    context = sample_context("owner_alert", SENDER)
    return owner_alert(
        MAILER, firing_id=firing_id, lead={**context["lead"], "key": lead_key}, product_line=context["product_line"],
        journey=context["journey"], trigger=context["trigger"], breakdown=context["breakdown"], to=to,
        sender=Sender("leadscore", "leadscore@acme.example"), run_id="run-1", date=NOW,
    )  # fmt: skip


def deliver(engine: Engine, messages: list[Outgoing], settings: Settings, **kwargs: object) -> list[DeliveryResult]:
    """Delivery through the store's outbox and the configured transport, its clock stopped at NOW."""
    options = Options.from_settings(settings, clock=lambda: NOW)
    return delivery.deliver(SqlOutbox(engine), transport_for(settings), messages, options, now=NOW, **kwargs)  # type: ignore[arg-type]


def many_messages(engine: Engine, n: int) -> list[Outgoing]:
    """``n`` leads ``LD-i`` at ``li@x.example`` and a nurture message to each (``enrolment:i:0``)."""
    keys = add_leads(engine, *({"lead_id": f"LD-{i}", "email": f"l{i}@x.example"} for i in range(n)))
    return [nurture_message(key, f"l{i}@x.example", f"enrolment:{i}:0") for i, key in enumerate(keys)]


def smtp_settings(tmp_path: Path, port: int) -> Settings:
    return Settings(
        outbox_dir=tmp_path / "outbox", smtp_host="127.0.0.1", smtp_port=port, smtp_backoff_seconds=0.01,
        smtp_timeout=5,
    )  # fmt: skip


def bounced_at(engine: Engine) -> dict[str, datetime | None]:
    with engine.connect() as conn:
        return dict(conn.execute(select(Lead.lead_id, Lead.bounced_at).order_by(Lead.key)).all())


def test_default_outbox_writes_eml_files_once(engine: Engine, tmp_path: Path) -> None:
    keys = add_leads(engine, {"lead_id": "LD-1", "email": "a@x.example"}, {"lead_id": "LD-2", "email": "b@x.example"})
    messages = [nurture_message(keys[0], "a@x.example", "enrolment:1:0"), alert_message(keys[1], "o@acme.example", 4)]
    settings = Settings(outbox_dir=tmp_path / "outbox", smtp_host=None)
    results = deliver(engine, messages, settings)
    folder = tmp_path / "outbox" / "2026-11-23"
    assert [(r.status, r.attempts, r.path) for r in results] == [
        ("sent", 1, str(folder / f"{m.message_id}.eml")) for m in messages
    ]
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{m.message_id}.eml" for m in messages)
    assert (folder / f"{messages[0].message_id}.eml").read_bytes() == stamp(messages[0].as_bytes(), NOW, None)
    rows = outbox.messages(engine)
    assert [(r["kind"], r["ref"], r["status"], r["attempts"], r["sent_at"], r["to_address"]) for r in rows] == [
        ("nurture", "enrolment:1:0", "sent", 1, NOW, "a@x.example"),
        ("owner_alert", "firing:4", "sent", 1, NOW, "o@acme.example"),
    ]
    assert rows[0]["subject"] == "Ada, a quick look at Sample Line"
    (folder / f"{messages[0].message_id}.eml").unlink()
    again = deliver(engine, [*messages, messages[0]], settings)
    assert [r.status for r in again] == ["duplicate", "duplicate", "duplicate"]
    assert not (folder / f"{messages[0].message_id}.eml").exists()  # nothing written again
    assert len(outbox.messages(engine)) == 2


def test_delivery_says_how_many_messages_are_settled_after_each_chunk(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "CHUNK", 2)
    leads = [{"lead_id": f"LD-{i}", "email": f"l{i}@x.example"} for i in range(5)]
    keys = add_leads(engine, *leads)
    messages = [nurture_message(key, f"l{i}@x.example", f"enrolment:{i}:0") for i, key in enumerate(keys)]
    settled: list[int] = []
    results = deliver(engine, messages, Settings(outbox_dir=tmp_path / "outbox"), settled=settled.append)
    assert settled == [2, 4, 5]
    assert [r.status for r in results] == ["sent"] * 5


def test_smtp_round_trip_delivers_a_working_multipart_message(
    engine: Engine, tmp_path: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    [key] = add_leads(engine, {"lead_id": "LD-1", "email": "ada@client.example"})
    message = nurture_message(key, "ada@client.example", "enrolment:1:0")
    [result] = deliver(engine, [message], smtp_settings(tmp_path, port))
    assert (result.status, result.attempts, result.error) == ("sent", 1, None)
    [(mail_from, rcpt_tos, raw)] = handler.received
    assert (mail_from, rcpt_tos) == ("news@acme.example", ["ada@client.example"])
    headers = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    token_line = next(line for line in headers if line.startswith(b"List-Unsubscribe:"))
    token = unsubscribe_token(f"LD-{key}", SECRET).encode()
    assert token_line == (
        b"List-Unsubscribe: <https://acme.example/unsubscribe?token=" + token + b">, "
        b"<mailto:unsubscribe@acme.example?subject=unsubscribe-" + token + b">"
    )
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in headers
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Message-ID"] == f"<{message.message_id}>"
    html = parsed.get_body(("html",)).get_content()
    text = parsed.get_body(("plain",)).get_content()
    assert (
        "<style" not in html
        and 'class="button" href="https://acme-cloud.example/sample-line/tour" style="display:' in html
    )
    assert "Hi Ada," in text and "Acme Cloud SAS, 12 rue de la Paix" in text
    for part in (html, text, parsed["Subject"]):
        assert "{{" not in part and "{%" not in part
    assert (tmp_path / "outbox" / "2026-11-23" / f"{message.message_id}.eml").read_bytes() == raw
    [row] = outbox.messages(engine)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 1, None)


def test_550_bounces_a_nurture_lead_but_only_fails_an_owner_alert(
    engine: Engine, tmp_path: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    keys = add_leads(
        engine,
        {"lead_id": "LD-1", "email": "gone@client.example"},
        {"lead_id": "LD-2", "email": "ok@client.example"},
        {"lead_id": "LD-3", "email": "c@client.example"},
    )
    handler.script = {
        "gone@client.example": ["550 5.1.1 No such user"],
        "left@acme.example": ["550 5.1.1 No such user"],
    }
    messages = [
        nurture_message(keys[0], "gone@client.example", "enrolment:1:0"),
        nurture_message(keys[1], "ok@client.example", "enrolment:2:0"),
        alert_message(keys[2], "left@acme.example", 9),
    ]
    results = deliver(engine, messages, smtp_settings(tmp_path, port))
    assert [(r.status, r.attempts) for r in results] == [("bounced", 1), ("sent", 1), ("failed", 1)]
    assert results[0].error == "550 5.1.1 No such user (at recipient)"
    assert [rcpt for _, rcpt, _ in handler.received] == [["ok@client.example"]]
    suppressed = bounced_at(engine)
    assert suppressed["LD-1"] is not None and suppressed["LD-2"] is None and suppressed["LD-3"] is None
    assert [(r["ref"], r["status"]) for r in outbox.messages(engine)] == [
        ("enrolment:1:0", "bounced"), ("enrolment:2:0", "sent"), ("firing:9", "failed"),
    ]  # fmt: skip


def test_451_is_retried_until_accepted_or_attempts_run_out(
    engine: Engine, tmp_path: Path, smtp_server: tuple[Recorder, int]
) -> None:
    handler, port = smtp_server
    keys = add_leads(
        engine, {"lead_id": "LD-1", "email": "slow@x.example"}, {"lead_id": "LD-2", "email": "busy@x.example"}
    )
    handler.script = {
        "slow@x.example": ["451 4.7.1 Greylisted, try again"],
        "busy@x.example": ["451 4.3.0 Busy", "452 4.3.1 Busy", "451 4.3.0 Busy"],
    }
    messages = [nurture_message(keys[0], "slow@x.example", "e:1"), nurture_message(keys[1], "busy@x.example", "e:2")]
    results = deliver(engine, messages, smtp_settings(tmp_path, port))
    assert [(r.status, r.attempts, r.error) for r in results] == [
        ("sent", 2, None),
        ("failed", 3, "451 4.3.0 Busy (at recipient)"),
    ]
    assert handler.rcpt_calls == [
        "slow@x.example",
        "busy@x.example",
        "slow@x.example",
        "busy@x.example",
        "busy@x.example",
    ]
    assert [rcpt for _, rcpt, _ in handler.received] == [["slow@x.example"]]
    assert all(value is None for value in bounced_at(engine).values())  # temporary failures never suppress
    # A failed message was refused for sure: a later delivery tries it again; the sent one stays sent.
    again = deliver(engine, messages, smtp_settings(tmp_path, port))
    assert [(r.status, r.attempts) for r in again] == [("duplicate", 0), ("sent", 1)]
    assert [rcpt for _, rcpt, _ in handler.received] == [["slow@x.example"], ["busy@x.example"]]
    assert [(r["ref"], r["status"], r["attempts"]) for r in outbox.messages(engine)] == [
        ("e:1", "sent", 2), ("e:2", "sent", 1),
    ]  # fmt: skip


def test_crash_after_sending_never_sends_twice(
    engine: Engine, tmp_path: Path, smtp_server: tuple[Recorder, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, port = smtp_server
    [key] = add_leads(engine, {"lead_id": "LD-1", "email": "ada@client.example"})
    message = nurture_message(key, "ada@client.example", "enrolment:1:0")
    settings = smtp_settings(tmp_path, port)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("process killed before the outcome was recorded")

    with monkeypatch.context() as patch:
        patch.setattr(outbox, "record_outcomes", crash)
        with pytest.raises(RuntimeError, match="process killed"):
            deliver(engine, [message], settings)
    assert len(handler.received) == 1
    [result] = deliver(engine, [message], settings)
    assert result.status == "unknown"
    assert len(handler.received) == 1
    [review] = outbox.unknown_outcomes(engine)
    assert (review["message_id"], review["status"]) == (message.message_id, "intent")


def test_crash_between_intent_and_send_never_sends_on_rerun(
    engine: Engine, tmp_path: Path, smtp_server: tuple[Recorder, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, port = smtp_server
    keys = add_leads(engine, {"lead_id": "LD-1", "email": "a@x.example"}, {"lead_id": "LD-2", "email": "b@x.example"})
    first = nurture_message(keys[0], "a@x.example", "enrolment:1:0")
    second = nurture_message(keys[1], "b@x.example", "enrolment:2:0")
    settings = smtp_settings(tmp_path, port)

    def crash(self: object, sender: str, to: str, data: bytes) -> None:
        raise KeyboardInterrupt  # the process dies with the intent committed, nothing sent

    with monkeypatch.context() as patch:
        patch.setattr(transports.SmtpTransport, "send", crash)
        with pytest.raises(KeyboardInterrupt):
            deliver(engine, [first], settings)
    results = deliver(engine, [first, second], settings)
    assert [r.status for r in results] == ["unknown", "sent"]
    assert [rcpt for _, rcpt, _ in handler.received] == [["b@x.example"]]
    assert [r["ref"] for r in outbox.unknown_outcomes(engine)] == ["enrolment:1:0"]


def test_an_unreachable_server_fails_without_suppressing(engine: Engine, tmp_path: Path) -> None:
    from tests.nurture.conftest import _free_port

    [key] = add_leads(engine, {"lead_id": "LD-1", "email": "a@x.example"})
    settings = smtp_settings(tmp_path, _free_port())
    [result] = deliver(engine, [nurture_message(key, "a@x.example", "e:1")], settings)
    assert (result.status, result.attempts) == ("failed", 3)
    assert result.error is not None and result.error.startswith("421 ") and result.error.endswith("(at connect)")
    assert bounced_at(engine) == {"LD-1": None}


def test_a_message_whose_file_cannot_be_written_is_failed_and_sent_by_the_next_run(
    engine: Engine, tmp_path: Path
) -> None:
    """The .eml is the delivery: an OSError writing it (here a folder in the way, like a full disk) must
    not leave an intent that the next run would count as sent."""
    leads = [{"lead_id": f"LD-{i}", "email": f"l{i}@x.example"} for i in range(4)]
    keys = add_leads(engine, *leads)
    messages = [nurture_message(key, f"l{i}@x.example", f"enrolment:{i}:0") for i, key in enumerate(keys)]
    settings = Settings(outbox_dir=tmp_path / "outbox", smtp_host=None)
    folder = tmp_path / "outbox" / "2026-11-23"
    blocked = [folder / f"{m.message_id}.eml" for m in messages[1:3]]
    for path in blocked:
        path.mkdir(parents=True)
    results = deliver(engine, messages, settings)
    assert [(r.status, r.retryable) for r in results] == [
        ("sent", False),
        ("failed", True),
        ("failed", True),
        ("sent", False),
    ]
    assert results[1].error is not None and results[1].error.startswith(f"could not write {blocked[0]}: ")
    assert "Is a directory" in results[1].error
    assert [r["status"] for r in outbox.messages(engine)] == ["sent", "failed", "failed", "sent"]
    assert outbox.unknown_outcomes(engine) == []

    for path in blocked:
        path.rmdir()
    again = deliver(engine, messages, settings)
    assert [r.status for r in again] == ["duplicate", "sent", "sent", "duplicate"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{m.message_id}.eml" for m in messages)
    assert [r["status"] for r in outbox.messages(engine)] == ["sent"] * 4
