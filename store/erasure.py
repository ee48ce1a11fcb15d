"""Erasure (GDPR art. 17): a person's rows out of every table, their files off the disk, a tombstone kept.

The event log is immutable except for this one operation (DESIGN §8). One transaction deletes the
lead's rows from every table ``store.lead_data`` lists, reduces its uploaded audience lines to their
hashed cells (the next export removes them from the platforms), unlinks its console audit entries,
stores the tombstones and audits the erasure with its row counts. Files go after the commit: the
outbox's ``.eml`` files of its messages and the event-cache chunks holding its events. Aggregates
(run statistics, export counts) stay. Erasing an erased person again finds nothing and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, or_, select, update

from store import audit, event_cache
from store.lead_data import HELD, Held, Scope, names_member, same_people, scope_of, table, unlisted
from store.tombstones import TombstoneKey, bury, erased_digests, normalised_email

BATCH = 500  # leads per transaction: bounded IN lists, and a long file does not hold the store for minutes
LineRewrite = Callable[[str, str], str]
"""``(platform, line) → line``: an uploaded audience line reduced to what may stay (``nurture.audiences``)."""


class UnlistedTables(RuntimeError):
    """Tables nobody has said how they hold lead data: erasing now could leave a person's rows behind."""


@dataclass
class ErasureOutcome:
    """What an erasure did: identifiers erased, already erased before, not found; rows and files removed."""

    erased: list[str] = field(default_factory=list)
    already_erased: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0
    cache_files: int = 0
    tombstones: int = 0

    def add_rows(self, counts: dict[str, int]) -> None:
        for name, count in counts.items():
            self.rows[name] = self.rows.get(name, 0) + count


def is_email(identifier: str) -> bool:
    return "@" in identifier


def _as_named(identifier: str) -> str:
    return normalised_email(identifier) if is_email(identifier) else identifier


def find_leads(conn: Connection, identifiers: Sequence[str]) -> tuple[list[Any], dict[str, Any]]:
    """The stored leads named by ``identifiers`` (lead ids, or emails in any case), with the leads merged with
    them (one person), and which one each identifier named."""
    leads = table("leads")
    ids = [value for value in identifiers if not is_email(value)]
    emails = [normalised_email(value) for value in identifiers if is_email(value)]
    columns = [leads.c.key, leads.c.lead_id, leads.c.email]
    rows = list(
        conn.execute(select(*columns).where(or_(leads.c.lead_id.in_(ids), func.lower(leads.c.email).in_(emails))))
    )
    named: dict[str, Any] = {}
    for row in rows:
        named[row.lead_id] = row
        if row.email:
            named[normalised_email(row.email)] = row
    merged = same_people(conn, [row.key for row in rows]) - {row.key for row in rows}
    if merged:
        rows += list(conn.execute(select(*columns).where(leads.c.key.in_(merged)).order_by(leads.c.key)))
    return rows, named


def erase(
    engine: Engine,
    identifiers: Sequence[str],
    *,
    key: TombstoneKey,
    actor: str,
    at: datetime,
    rewrite_line: LineRewrite,
) -> ErasureOutcome:
    """Erase the leads named by ``identifiers`` (lead ids or emails), ``BATCH`` at a time."""
    missing = unlisted()
    if missing:
        raise UnlistedTables(
            f"tables {missing} are not in store.lead_data.HELD: say how they hold lead data before erasing anyone"
        )
    outcome = ErasureOutcome()
    wanted = list(dict.fromkeys(value.strip() for value in identifiers if value.strip()))
    for start in range(0, len(wanted), BATCH):
        _erase_batch(engine, wanted[start : start + BATCH], key, actor, at, rewrite_line, outcome)
    if engine.dialect.name == "sqlite" and outcome.rows:
        # Copy the zeroed pages (secure_delete, see below) from the write-ahead log into the file now. PASSIVE,
        # as SQLite's own auto-checkpoint: truncating the log under the ADBC readers' own SQLite fails them.
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
    return outcome


def _erase_batch(
    engine: Engine,
    identifiers: list[str],
    key: TombstoneKey,
    actor: str,
    at: datetime,
    rewrite_line: LineRewrite,
    outcome: ErasureOutcome,
) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            # Deleted content is overwritten with zeros, not left in the file's free pages (whatever the build).
            conn.exec_driver_sql("PRAGMA secure_delete = ON")
        leads, named = find_leads(conn, identifiers)
        unmatched = [value for value in identifiers if _as_named(value) not in named]
        digests = {value: key.email(value) if is_email(value) else key.lead_id(value) for value in unmatched}
        buried = erased_digests(conn, digests.values())
        outcome.already_erased += [value for value in unmatched if digests[value] in buried]
        outcome.not_found += [value for value in unmatched if digests[value] not in buried]
        outcome.erased += [value for value in identifiers if value not in unmatched]
        if not leads:
            return
        scope = scope_of(conn, leads)
        outbox = table("outbox")
        paths = [path for (path,) in conn.execute(select(outbox.c.path).where(scope.where("outbox"))) if path]
        counts = {name: count for name in HELD if (count := _erase_rows(conn, name, scope, rewrite_line))}
        tombstones = bury(conn, key, scope.lead_ids, [lead.email for lead in leads], at)
        audit.record(conn, actor, "erase", at=at, leads=len(leads), rows=counts, tombstones=tombstones)
    outcome.add_rows(counts)
    outcome.tombstones += tombstones
    for path in paths:
        file = Path(path)
        if file.exists():
            file.unlink()
            outcome.files += 1
    outcome.cache_files += event_cache.forget(engine, scope.keys)


def _erase_rows(conn: Connection, name: str, scope: Scope, rewrite_line: LineRewrite) -> int:
    """Delete (or reduce, or unlink) the scope's rows of one table; returns how many rows it touched."""
    condition = scope.where(name)
    if condition is None:
        return 0
    target = table(name)
    held = HELD[name]
    if held is Held.AUDIT:
        return int(conn.execute(update(target).where(condition).values(lead_key=None, detail={})).rowcount)
    if held is Held.NAMED_MEMBER:
        rows = [row for row in conn.execute(select(target.c.id, target.c.members).where(condition))]
        named = [(row_id, members) for row_id, members in rows if names_member(members, scope.lead_ids)]
        for row_id, members in named:
            kept = [member for member in members if not names_member([member], scope.lead_ids)]
            conn.execute(update(target).where(target.c.id == row_id).values(members=kept))
        return len(named)
    if held is Held.UPLOADED:
        c = target.c
        rows = list(conn.execute(select(c.audience, c.platform, c.lead_key, c.line).where(condition)))
        for audience, platform, lead_key, line in rows:
            conn.execute(
                update(target)
                .where(c.audience == audience, c.platform == platform, c.lead_key == lead_key)
                .values(line=rewrite_line(platform, line))
            )
        return len(rows)
    return int(conn.execute(delete(target).where(condition)).rowcount)
