"""Email feedback from delivery providers' webhooks: each provider's documented signature scheme, and
its payload mapped to leadscore events by Message-ID.

* ``generic``: leadscore's own scheme (``nurture.webhooks.sign``): ``X-Leadscore-Timestamp`` and
  ``X-Leadscore-Signature: sha256=HMAC-SHA256(secret, "{timestamp}.{body}")``, a JSON array of
  ``{id, message_id, type, occurred_at, bounce?, url?, user_agent?}``.
* ``mailgun``: ``signature: {timestamp, token, signature}`` in the body, the signature being the hex
  HMAC-SHA256 of ``timestamp + token`` keyed by the webhook signing key; one ``event-data`` per POST.
* ``sendgrid``: ``X-Twilio-Email-Event-Webhook-Signature``, a base64 ECDSA (P-256, SHA-256) signature
  of ``timestamp + raw body`` verified with the account's public key (base64 DER), timestamp in
  ``X-Twilio-Email-Event-Webhook-Timestamp``; a JSON array of events.

Every scheme is bounded in time (``TOLERANCE_SECONDS``) and gives a receipt id: the service refuses a
second delivery with the same receipt, so a captured request cannot be replayed even inside the window.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from nurture.webhooks import sign

TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The delivery is not genuine, or too old: the service answers 401 and stores nothing."""


@dataclass(frozen=True)
class Feedback:
    """One provider event, as a leadscore event for the lead the message was sent to."""

    event_id: str
    message_id: str
    type: str  # email_delivered | email_open | email_click | email_bounce | spam_complaint | unsubscribe
    occurred_at: datetime
    properties: dict[str, Any] = field(default_factory=dict)


def _fresh(timestamp: str | int | float | None, now: float) -> int:
    try:
        value = int(float(str(timestamp)))
    except ValueError:
        raise SignatureError("timestamp missing or not a number") from None
    if abs(now - value) > TOLERANCE_SECONDS:
        raise SignatureError(f"timestamp {value} is more than {TOLERANCE_SECONDS} s away from now")
    return value


def _message_id(value: Any) -> str:
    return str(value or "").strip().strip("<>").strip()


def _when(value: Any) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"timezone missing in {value!r}")
    return parsed.astimezone(UTC)


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None


# --------------------------------------------------------------------------------------------- generic

GENERIC_TYPES = {
    "delivered": "email_delivered",
    "open": "email_open",
    "click": "email_click",
    "bounce": "email_bounce",
    "complaint": "spam_complaint",
    "unsubscribe": "unsubscribe",
}


def verify_generic(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    timestamp = _fresh(headers.get("x-leadscore-timestamp"), now)
    if not hmac.compare_digest(headers.get("x-leadscore-signature", ""), sign(secret, timestamp, body)):
        raise SignatureError("signature does not match")
    return headers["x-leadscore-signature"]


def parse_generic(body: bytes) -> list[Feedback]:
    items = _json(body)
    found = []
    for item in items if isinstance(items, list) else [items]:
        kind = GENERIC_TYPES.get(str(item.get("type")))
        if kind is None or not item.get("id") or not item.get("message_id"):
            continue
        properties = {key: item[key] for key in ("url", "user_agent") if item.get(key)}
        if kind == "email_bounce":
            properties["bounce"] = "soft" if item.get("bounce") == "soft" else "hard"
        found.append(
            Feedback(
                f"generic:{item['id']}", _message_id(item["message_id"]), kind, _when(item["occurred_at"]), properties
            )
        )
    return found


# --------------------------------------------------------------------------------------------- Mailgun

MAILGUN_TYPES = {
    "delivered": "email_delivered",
    "opened": "email_open",
    "clicked": "email_click",
    "failed": "email_bounce",
    "complained": "spam_complaint",
    "unsubscribed": "unsubscribe",
}


def verify_mailgun(signing_key: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    data = _json(body)
    signature = (data.get("signature") if isinstance(data, dict) else None) or {}
    timestamp, token = str(signature.get("timestamp", "")), str(signature.get("token", ""))
    _fresh(timestamp, now)
    expected = hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not token or not hmac.compare_digest(str(signature.get("signature", "")), expected):
        raise SignatureError("signature does not match")
    return token  # Mailgun: "cache the token value and do not honor any subsequent request with the same token"


def parse_mailgun(body: bytes) -> list[Feedback]:
    data = _json(body).get("event-data") or {}
    kind = MAILGUN_TYPES.get(str(data.get("event")))
    headers = (data.get("message") or {}).get("headers") or {}
    if kind is None or not data.get("id") or not headers.get("message-id"):
        return []
    properties: dict[str, Any] = {}
    if data.get("url"):
        properties["url"] = data["url"]
    agent = (data.get("client-info") or {}).get("user-agent")
    if agent:
        properties["user_agent"] = agent
    if kind == "email_bounce":
        properties["bounce"] = "hard" if data.get("severity") == "permanent" else "soft"
    return [
        Feedback(
            f"mailgun:{data['id']}", _message_id(headers["message-id"]), kind, _when(data["timestamp"]), properties
        )
    ]


# -------------------------------------------------------------------------------------------- SendGrid

SENDGRID_TYPES = {
    "delivered": "email_delivered",
    "open": "email_open",
    "click": "email_click",
    "bounce": "email_bounce",
    "spamreport": "spam_complaint",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "unsubscribe",
}


def verify_sendgrid(public_key: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    timestamp = headers.get("x-twilio-email-event-webhook-timestamp", "")
    _fresh(timestamp, now)
    signature = headers.get("x-twilio-email-event-webhook-signature", "")
    try:
        key = load_der_public_key(base64.b64decode(public_key))
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise SignatureError("signature does not match") from exc
    return hashlib.sha256(signature.encode()).hexdigest()


def parse_sendgrid(body: bytes) -> list[Feedback]:
    found = []
    for item in _json(body):
        kind = SENDGRID_TYPES.get(str(item.get("event")))
        message_id = item.get("smtp-id")  # the Message-ID header leadscore set
        if kind is None or not item.get("sg_event_id") or not message_id:
            continue
        properties = {name: item[key] for name, key in (("url", "url"), ("user_agent", "useragent")) if item.get(key)}
        if kind == "email_bounce":
            properties["bounce"] = "soft" if item.get("type") == "blocked" else "hard"
        found.append(
            Feedback(
                f"sendgrid:{item['sg_event_id']}", _message_id(message_id), kind, _when(item["timestamp"]), properties
            )
        )
    return found


Verify = Callable[[str, Mapping[str, str], bytes, float], str]
Parse = Callable[[bytes], list[Feedback]]
PROVIDERS: dict[str, tuple[Verify, Parse]] = {
    "generic": (verify_generic, parse_generic),
    "mailgun": (verify_mailgun, parse_mailgun),
    "sendgrid": (verify_sendgrid, parse_sendgrid),
}
