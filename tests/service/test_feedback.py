"""Email feedback webhooks over HTTP: generic, Mailgun and SendGrid signatures (valid, invalid, replayed),
mapped by Message-ID to events with ingestion's machine-activity rules, suppressions applied at once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import insert, text

from nurture.webhooks import sign
from store.outbox_tables import OutboxMessage
from tests.service.conftest import Live

GENERIC_SECRET = "generic-webhook-secret-0123456789abcdef"
MAILGUN_KEY = "key-mailgun-signing-0123456789"
SENDGRID_PRIVATE = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(
    SENDGRID_PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


@pytest.fixture(scope="module")
def hooks(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    service = Live(
        store_url,
        tmp_path_factory.mktemp("hooks"),
        webhook_secret=GENERIC_SECRET,
        mailgun_signing_key=MAILGUN_KEY,
        sendgrid_verification_key=SENDGRID_PUBLIC,
    )
    try:
        yield service
    finally:
        service.close()


def _sent(live: Live, lead_id: str) -> str:
    """A lead and a nurture email sent to it; returns the Message-ID."""
    live.post("/v1/leads", {"lead_id": lead_id, "email": f"{lead_id.lower()}@client.example", "email_opt_in": True})
    message_id = f"{lead_id.lower()}-msg@acme.example"
    with live.engine.begin() as conn:
        key = conn.execute(text("SELECT key FROM leads WHERE lead_id = :l"), {"l": lead_id}).scalar_one()
        conn.execute(
            insert(OutboxMessage.__table__).values(  # type: ignore[attr-defined]
                message_id=message_id, kind="nurture", ref=f"enrolment:{key}:0", lead_key=key, run_id="r0",
                to_address=f"{lead_id.lower()}@client.example", subject="Hello", status="sent",
                created_at=datetime.now(UTC),
            )
        )  # fmt: skip
    return message_id


def _events(live: Live, lead_id: str) -> list[tuple[str, bool, str | None]]:
    sql = (
        "SELECT e.type, e.machine, e.properties FROM events e JOIN leads l ON l.key = e.lead_key "
        "WHERE l.lead_id = :l ORDER BY e.occurred_at, e.event_id"
    )
    with live.engine.connect() as conn:
        rows = conn.execute(text(sql), {"l": lead_id}).all()
    out = []
    for kind, machine, properties in rows:
        props = properties if isinstance(properties, dict) else json.loads(properties)
        out.append((kind, bool(machine), props.get("bounce")))
    return out


def _lead(live: Live, lead_id: str) -> tuple[bool, bool]:
    sql = "SELECT unsubscribed_at, bounced_at FROM leads WHERE lead_id = :l"
    with live.engine.connect() as conn:
        unsubscribed, bounced = conn.execute(text(sql), {"l": lead_id}).one()
    return unsubscribed is not None, bounced is not None


def _generic(live: Live, items: list[dict[str, Any]], *, secret: str = GENERIC_SECRET, age: int = 0) -> Any:
    body = json.dumps(items).encode()
    stamp = int(time.time()) - age
    headers = {"X-Leadscore-Timestamp": str(stamp), "X-Leadscore-Signature": sign(secret, stamp, body)}
    return live.client.post("/v1/email-events/generic", content=body, headers=headers)


def test_generic_feedback_valid_invalid_and_replayed(hooks: Live) -> None:
    message = _sent(hooks, "FB-G")
    items = [
        {"id": "g1", "message_id": f"<{message}>", "type": "delivered", "occurred_at": "2026-12-01T10:00:00Z"},
        {"id": "g2", "message_id": message, "type": "open", "occurred_at": "2026-12-01T10:00:01Z"},  # a scanner
        {"id": "g3", "message_id": message, "type": "click", "occurred_at": "2026-12-01T11:00:00Z", "url": "https://x"},
        {"id": "g4", "message_id": message, "type": "bounce", "bounce": "hard", "occurred_at": "2026-12-01T12:00:00Z"},
        {"id": "g5", "message_id": "unknown@elsewhere", "type": "open", "occurred_at": "2026-12-01T12:00:00Z"},
    ]
    assert _generic(hooks, items, secret="not-the-secret-0123456789abcdefghij").status_code == 401
    assert _generic(hooks, items, age=3600).status_code == 401  # a captured request, replayed an hour later
    assert _events(hooks, "FB-G") == []
    first = _generic(hooks, items)
    assert first.json() == {"replayed": False, "stored": 4, "duplicate": 0, "unmatched": 1}
    assert _events(hooks, "FB-G") == [
        ("email_delivered", False, None), ("email_open", True, None), ("email_click", False, None),
        ("email_bounce", False, "hard"),
    ]  # fmt: skip
    assert _lead(hooks, "FB-G") == (False, True)
    body = json.dumps(items).encode()
    stamp = int(time.time()) + 1  # a provider's retry: signed anew, so not the same receipt
    replay = {"X-Leadscore-Timestamp": str(stamp), "X-Leadscore-Signature": sign(GENERIC_SECRET, stamp, body)}
    again = hooks.client.post("/v1/email-events/generic", content=body, headers=replay).json()
    assert (again["replayed"], again["stored"], again["duplicate"]) == (False, 0, 4)  # a provider retry: idempotent
    replayed = hooks.client.post("/v1/email-events/generic", content=body, headers=replay).json()
    assert replayed == {"replayed": True, "stored": 0, "duplicate": 0, "unmatched": 0}


def _mailgun(event: dict[str, Any], *, key: str = MAILGUN_KEY, token: str, age: int = 0) -> dict[str, Any]:
    stamp = str(int(time.time()) - age)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": stamp, "token": token, "signature": signature}, "event-data": event}


def test_mailgun_signature_valid_invalid_and_replayed(hooks: Live) -> None:
    message = _sent(hooks, "FB-M")
    complaint = {
        "event": "complained",
        "id": "mg-1",
        "timestamp": 1764583200.5,
        "message": {"headers": {"message-id": message}},
    }
    forged = _mailgun(complaint, key="key-guessed-0123456789", token="t" * 50)
    assert hooks.client.post("/v1/email-events/mailgun", json=forged).status_code == 401
    stale = _mailgun(complaint, token="s" * 50, age=3600)
    assert hooks.client.post("/v1/email-events/mailgun", json=stale).status_code == 401
    genuine = _mailgun(complaint, token="u" * 50)
    assert hooks.client.post("/v1/email-events/mailgun", json=genuine).json()["stored"] == 1
    assert _events(hooks, "FB-M") == [("spam_complaint", False, None)]
    assert _lead(hooks, "FB-M") == (True, False)  # a complaint suppresses at once
    assert hooks.client.post("/v1/email-events/mailgun", json=genuine).json()["replayed"] is True
    failed = {"event": "failed", "severity": "temporary", "id": "mg-2", "timestamp": 1764583300,
              "message": {"headers": {"message-id": message}}}  # fmt: skip
    assert hooks.client.post("/v1/email-events/mailgun", json=_mailgun(failed, token="v" * 50)).json()["stored"] == 1
    assert _events(hooks, "FB-M")[-1] == ("email_bounce", False, "soft") and _lead(hooks, "FB-M") == (True, False)


def _sendgrid(body: bytes, *, private: ec.EllipticCurvePrivateKey = SENDGRID_PRIVATE, age: int = 0) -> dict[str, str]:
    stamp = str(int(time.time()) - age)
    signature = private.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        "Content-Type": "application/json",
    }


def test_sendgrid_signature_valid_invalid_and_replayed(hooks: Live) -> None:
    message = _sent(hooks, "FB-S")
    events = [
        {"email": "fb-s@client.example", "timestamp": 1764583200, "event": "delivered", "sg_event_id": "sg-1",
         "smtp-id": f"<{message}>"},
        {"email": "fb-s@client.example", "timestamp": 1764590000, "event": "open", "sg_event_id": "sg-2",
         "smtp-id": f"<{message}>", "useragent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"},
        {"email": "fb-s@client.example", "timestamp": 1764590100, "event": "unsubscribe", "sg_event_id": "sg-3",
         "smtp-id": f"<{message}>"},
    ]  # fmt: skip
    body = json.dumps(events).encode()
    headers = _sendgrid(body)
    tampered = body.replace(b"unsubscribe", b"delivered")
    assert hooks.client.post("/v1/email-events/sendgrid", content=tampered, headers=headers).status_code == 401
    other = _sendgrid(body, private=ec.generate_private_key(ec.SECP256R1()))
    assert hooks.client.post("/v1/email-events/sendgrid", content=body, headers=other).status_code == 401
    assert (
        hooks.client.post("/v1/email-events/sendgrid", content=body, headers=_sendgrid(body, age=900)).status_code
        == 401
    )
    first = hooks.client.post("/v1/email-events/sendgrid", content=body, headers=headers).json()
    assert first == {"replayed": False, "stored": 3, "duplicate": 0, "unmatched": 0}
    assert _events(hooks, "FB-S") == [
        ("email_delivered", False, None),
        ("email_open", True, None),
        ("unsubscribe", False, None),
    ]
    assert _lead(hooks, "FB-S") == (True, False)
    replayed = hooks.client.post("/v1/email-events/sendgrid", content=body, headers=headers).json()
    assert replayed["replayed"] is True and len(_events(hooks, "FB-S")) == 3


def test_an_unconfigured_or_unknown_provider_is_not_served(hooks: Live, live: Live) -> None:
    assert hooks.client.post("/v1/email-events/postmark", json=[]).status_code == 404
    assert live.client.post("/v1/email-events/generic", json=[]).status_code == 404  # no secret configured there
