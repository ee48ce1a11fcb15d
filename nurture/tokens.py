"""Signed tokens in the links of nurture email: unsubscribe (RFC 8058) now, tracking links later.

A token carries what it is about and an HMAC-SHA256 over it, so the service needs no table to
answer a link and cannot be made to act for another lead. Keys rotate: tokens are made with the
current secret and accepted with it or the previous one, so links in mail already sent keep working
through a grace period (README, "Rotating the unsubscribe secret").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

MIN_SECRET_LENGTH = 32  # characters: `leadscore init` writes 43 (256 random bits, URL-safe base64)
_MAC_BYTES = 16  # 128-bit tags: forging one is out of reach, and the link stays short


class SecretError(ValueError):
    """A signing secret is missing or too short to protect anything."""


def check_secret(secret: str | None, name: str = "LEADSCORE_UNSUBSCRIBE_SECRET") -> str:
    """The secret itself when it is long enough; else a ``SecretError`` saying how to make one."""
    if not secret or len(secret) < MIN_SECRET_LENGTH:
        problem = "is not set" if not secret else f"has {len(secret)} characters, fewer than {MIN_SECRET_LENGTH}"
        raise SecretError(
            f"{name} {problem}: run `leadscore init DIR` (it writes one into DIR/.leadscore-secrets.env) or set it to "
            f'the output of `python -c "import secrets; print(secrets.token_urlsafe(32))"`'
        )
    return secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), purpose.encode() + b"\x00" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def sign(secret: str, purpose: str, payload: str) -> str:
    """``<payload, base64url>.<tag>``; ``purpose`` keeps a token of one kind from passing as another."""
    data = payload.encode()
    return f"{_b64(data)}.{_b64(_mac(secret, purpose, data))}"


def verify(token: str, secrets: Sequence[str], purpose: str) -> str | None:
    """The payload of a token made with any of ``secrets`` for ``purpose``, else None (never a reason why)."""
    head, _, tag = token.partition(".")
    try:
        data, mac = _unb64(head), _unb64(tag)
        payload = data.decode()
    except (ValueError, UnicodeDecodeError):
        return None
    found = False
    for secret in secrets:  # every key is tried, so timing tells nothing about which one matched
        found |= hmac.compare_digest(_mac(secret, purpose, data), mac)
    return payload if found else None


def unsubscribe_token(lead_id: str, secret: str) -> str:
    """The ``{token}`` of a lead's unsubscribe links: the lead id, signed."""
    return sign(secret, "unsubscribe", lead_id)


def unsubscribe_lead(token: str, secrets: Sequence[str]) -> str | None:
    """The lead id an unsubscribe token was made for, when it is genuine."""
    return verify(token, secrets, "unsubscribe")
