"""Erasure and access from the command line: the request file read, the key and the run lock wired in.

No Prefect flow: an erasure is a one-off administrative act, and it must not wait for a server start.
It holds the portfolio's run lock, so no run writes rows for a person while they are being erased.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from flows.locking import writing
from nurture.audiences import hashed_line
from nurture.suppression import read_suppression_file
from stages.portfolio import Portfolio
from stages.spec import EMAIL
from store.erasure import ErasureOutcome, erase
from store.tombstones import ErasureKeyError, TombstoneKey

_IDENTIFIER = re.compile(r"^\S+$")
_HEADERS = {"lead_id", "email"}


@dataclass
class ErasureRequest:
    """The identifiers a request file names, and the lines it refused (``FILE line N: why``)."""

    identifiers: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def read_request(path: Path) -> ErasureRequest:
    """Lead ids or emails: a CSV with a ``lead_id`` or ``email`` column (read as ``leadscore suppress``
    reads it), or a plain list, one per line (blank lines and ``#`` comments skipped).

    Bad lines are refused by number and the good ones still count: one typo must not hold back the others.
    """
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    request = ErasureRequest()
    if "," in first or first.lower() in _HEADERS:
        parsed = read_suppression_file(path)
        request.identifiers = [value for _, value in parsed.values]
        request.refused = [f"{path} line {r.line}, {r.field} {r.value!r}: {r.reason}" for r in parsed.rejects]
        return request
    for number, line in enumerate(lines, start=1):
        value = line.strip()
        if not value or value.startswith("#"):
            continue
        if "@" in value and not EMAIL.fullmatch(value):
            request.refused.append(f"{path} line {number}: {value!r} is not an email address")
        elif not _IDENTIFIER.match(value):
            request.refused.append(f"{path} line {number}: {value!r} is neither a lead id (no spaces) nor an email")
        else:
            request.identifiers.append(value)
    return request


def erasure_key(secret: str | None) -> TombstoneKey:
    """The tombstone key from the settings' secret; a clear error without one."""
    if not secret:
        raise ErasureKeyError(
            "erasure needs a key for its tombstones: set LEADSCORE_ERASURE_SECRET (or LEADSCORE_UNSUBSCRIBE_SECRET); "
            "`leadscore init DIR` writes one into DIR/.leadscore-secrets.env. Never change it afterwards"
        )
    return TombstoneKey(secret)


def erase_leads(
    engine: Engine,
    portfolio: Portfolio,
    identifiers: list[str],
    *,
    secret: str | None,
    actor: str,
    lock_wait_s: float = 0.0,
    at: datetime | None = None,
) -> ErasureOutcome:
    """Erase these leads under the portfolio's run lock."""
    key = erasure_key(secret)
    with writing(engine, portfolio, lock_wait_s):
        return erase(engine, identifiers, key=key, actor=actor, at=at or datetime.now(UTC), rewrite_line=hashed_line)
