"""API keys of the HTTP service: made, listed, revoked and checked against their stored hash.

A key reads ``lsk_<key_id>_<secret>``: the id finds the row, the secret (256 random bits) is compared
by its SHA-256. A fast hash is right here: the secret is random, not a password, so there is nothing
to guess that a slow hash would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update

from store.service_tables import ApiKey

SCOPES = ("events:write", "scores:read", "admin")
PREFIX = "lsk"
_TABLE = ApiKey.__table__


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(engine: Engine, name: str, scopes: Iterable[str]) -> tuple[str, KeyInfo]:
    """Store a new key and return it in full (shown once, never stored) with its description."""
    wanted = tuple(dict.fromkeys(scopes))
    unknown = [scope for scope in wanted if scope not in SCOPES]
    if unknown or not wanted:
        raise ValueError(f"unknown or no scopes {unknown or []}; choose from {', '.join(SCOPES)}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(_TABLE).values(
                key_id=key_id, name=name, secret_hash=_hash(secret), scopes=list(wanted), created_at=now
            )
        )
    return f"{PREFIX}_{key_id}_{secret}", KeyInfo(key_id, name, wanted, now, None)


def list_keys(engine: Engine) -> list[KeyInfo]:
    with engine.connect() as conn:
        rows = conn.execute(select(_TABLE).order_by(_TABLE.c.created_at, _TABLE.c.key_id)).all()
    return [KeyInfo(r.key_id, r.name, tuple(r.scopes), r.created_at, r.revoked_at) for r in rows]


def revoke_key(engine: Engine, key_id: str) -> bool:
    """Revoke a key (kept for the audit); False when no live key has that id."""
    stmt = (
        update(_TABLE)
        .where(_TABLE.c.key_id == key_id, _TABLE.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


def check_key(engine: Engine, presented: str) -> KeyInfo | None:
    """The live key that ``presented`` is, or None (malformed, unknown, wrong secret or revoked)."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    _, key_id, secret = parts
    with engine.connect() as conn:
        row = conn.execute(select(_TABLE).where(_TABLE.c.key_id == key_id)).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
        return None
    return KeyInfo(row.key_id, row.name, tuple(row.scopes), row.created_at, row.revoked_at)
