"""Tombstones of erased people: a keyed hash of each erased email and lead id, and nothing else.

Erasure (GDPR art. 17) deletes a person's data, yet an old file re-ingested later must not bring them
back. A tombstone keeps only ``HMAC-SHA256(key, kind:value)``: without the installation's key it cannot
be reversed or checked against a list of addresses, with it an ingestion can tell that a row is an
erased person. Each tombstone records the fingerprint of the key that made it, so a changed key is an
error that says so rather than silently letting erased people back in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Column, Connection, Engine, String, select
from sqlmodel import Field, SQLModel

from store.bulk import insert_ignore
from store.tables import _time

AfterErasure = Literal["refuse", "suppress"]
ERASED_REASON = "this person was erased (GDPR art. 17): a re-ingest is refused"
MIN_KEY_LENGTH = 32


class ErasureTombstone(SQLModel, table=True):
    """One erased identifier (``kind`` email or lead_id), as its keyed hash only."""

    __tablename__ = "erasure_tombstones"

    digest: str = Field(sa_column=Column(String, primary_key=True))
    kind: str  # email | lead_id
    key_id: str
    erased_at: datetime = _time(nullable=False)


TOMBSTONE_TABLE = ErasureTombstone.__table__  # type: ignore[attr-defined]


class ErasureKeyError(ValueError):
    """No key, a short one, or not the key the stored tombstones were made with."""


def normalised_email(email: str) -> str:
    """The form an email is compared in: trimmed, lower case (``Ann@X.com `` is ``ann@x.com``)."""
    return email.strip().lower()


@dataclass(frozen=True)
class TombstoneKey:
    """The installation's erasure key (``LEADSCORE_ERASURE_SECRET``, else the unsubscribe secret)."""

    secret: str

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_LENGTH:
            raise ErasureKeyError(
                f"the erasure key has {len(self.secret)} characters, fewer than {MIN_KEY_LENGTH}: "
                "set LEADSCORE_ERASURE_SECRET (`leadscore init DIR` writes one)"
            )

    @property
    def key_id(self) -> str:
        return self._mac("key-id:leadscore-erasure")[:16]

    def _mac(self, text: str) -> str:
        return hmac.new(self.secret.encode(), text.encode(), hashlib.sha256).hexdigest()

    def email(self, email: str) -> str:
        return self._mac("email:" + normalised_email(email))

    def lead_id(self, lead_id: str) -> str:
        return self._mac("lead_id:" + lead_id.strip())


@dataclass(frozen=True)
class Erased:
    """What an ingestion checks rows against: the stored digests, the key, and the portfolio's policy."""

    key: TombstoneKey
    digests: frozenset[str]
    policy: AfterErasure = "refuse"

    def match(self, lead_id: str | None, email: str | None = None) -> str | None:
        """``lead_id`` or ``email``: which of them names an erased person (None: neither)."""
        if lead_id is not None and self.key.lead_id(lead_id) in self.digests:
            return "lead_id"
        if email is not None and self.key.email(email) in self.digests:
            return "email"
        return None


def tombstones(key: TombstoneKey, lead_ids: Iterable[str], emails: Iterable[str | None]) -> list[dict[str, str]]:
    """The tombstone rows (without time) for these lead ids and emails."""
    rows = [{"digest": key.lead_id(lead_id), "kind": "lead_id"} for lead_id in lead_ids]
    rows += [{"digest": key.email(email), "kind": "email"} for email in emails if email]
    return [{**row, "key_id": key.key_id} for row in rows]


def bury(
    conn: Connection, key: TombstoneKey, lead_ids: Iterable[str], emails: Iterable[str | None], at: datetime
) -> int:
    """Store the tombstones inside the caller's transaction; returns how many are new."""
    check_key(conn, key)
    rows = [{**row, "erased_at": at} for row in tombstones(key, lead_ids, emails)]
    return insert_ignore(conn, TOMBSTONE_TABLE, rows)


def check_key(conn: Connection, key: TombstoneKey) -> None:
    """Refuse a key other than the one the stored tombstones were made with."""
    stored = {key_id for (key_id,) in conn.execute(select(TOMBSTONE_TABLE.c.key_id).distinct())}
    if stored - {key.key_id}:
        raise ErasureKeyError(
            "the erasure key differs from the one the stored tombstones were made with: erased people "
            "would not be recognised. Set LEADSCORE_ERASURE_SECRET back to the key used at erasure time"
        )


def erased_digests(conn: Connection, digests: Iterable[str]) -> set[str]:
    """Which of these digests are tombstones."""
    wanted = sorted(set(digests))
    if not wanted:
        return set()
    rows = conn.execute(select(TOMBSTONE_TABLE.c.digest).where(TOMBSTONE_TABLE.c.digest.in_(wanted)))
    return {digest for (digest,) in rows}


def load_erased(engine: Engine, secret: str | None, policy: AfterErasure = "refuse") -> Erased | None:
    """The tombstones for an ingestion, or None when nobody was ever erased (then no key is needed)."""
    with engine.connect() as conn:
        digests = frozenset(digest for (digest,) in conn.execute(select(TOMBSTONE_TABLE.c.digest)))
        if not digests:
            return None
        if not secret:
            raise ErasureKeyError(
                "this store holds erasure tombstones: ingestion needs the erasure key to recognise erased "
                "people (set LEADSCORE_ERASURE_SECRET, or LEADSCORE_UNSUBSCRIBE_SECRET if it was the key)"
            )
        key = TombstoneKey(secret)
        check_key(conn, key)
    return Erased(key, digests, policy)
