"""Reads and small writes of the HTTP service: preference changes, email feedback (scores: store.lookups)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import polars as pl
from sqlalchemy import Connection, Engine, String, and_, bindparam, cast, func, null, or_, select, update

from store.bulk import insert_ignore
from store.identity import Identity, remap, resolve_chains
from store.identity_tables import LeadAlias, VisitorLink
from store.nurture_tables import NurtureEnrolment
from store.outbox_tables import OutboxMessage
from store.service_tables import WebhookReceipt
from store.shapes import empty_frame
from store.tables import Event, Lead
from store.tombstones import TOMBSTONE_TABLE

_LEADS = Lead.__table__  # type: ignore[attr-defined]
_ENROLMENTS = NurtureEnrolment.__table__  # type: ignore[attr-defined]
_OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
_RECEIPTS = WebhookReceipt.__table__  # type: ignore[attr-defined]
_ALIASES = LeadAlias.__table__  # type: ignore[attr-defined]
_LINKS = VisitorLink.__table__  # type: ignore[attr-defined]


def tombstone_mark(engine: Engine) -> tuple[int, datetime | None]:
    """How many erasure tombstones there are and the latest one's time: changes with every erasure.
    Asked outside a transaction: one round trip, where a transaction adds its ``BEGIN`` and ``ROLLBACK``."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        count, latest = conn.execute(select(func.count(), func.max(TOMBSTONE_TABLE.c.erased_at))).one()
    return int(count), latest


def lead_key(engine: Engine, lead_id: str) -> int | None:
    with engine.connect() as conn:
        return conn.execute(select(_LEADS.c.key).where(_LEADS.c.lead_id == lead_id)).scalar()


def lead_identity(engine: Engine, key: int) -> Identity:
    """The identity mapping in force now, as far as one lead's scores need it: the leads merged into it
    (chains followed), the lead it was merged into (to the end of the chain) and the visitors linked to any
    of them. ``store.identity.read_identity`` reads every merge and link of the store, which a
    ``fresh=true`` look-up would pay for on each request; over ``[key, key + 1)`` both attach the same
    events and show the same journeys."""
    pairs: dict[int, int] = {}
    with engine.connect() as conn:
        # One round trip for a lead never merged (most): its visitors, and a row without one if any merge
        # in force names it; only then are the chains followed, a query per step.
        linked = conn.execute(_VISITORS_OR_MERGED, {"key": key}).all()
        if any(anonymous_id is None for anonymous_id, _ in linked):
            pairs = _merges(conn, key)
            owners = sorted({key, *pairs})
            linked = conn.execute(
                select(_LINKS.c.anonymous_id, _LINKS.c.lead_key).where(_LINKS.c.lead_key.in_(owners))
            ).all()
    # Most leads were never merged nor linked: their empty frames come from ``empty_frame`` (≈ 0.5 ms less).
    visitors = pl.DataFrame(linked, schema=_VISITORS, orient="row") if linked else empty_frame(_VISITORS)
    final = resolve_chains(list(pairs.items()))
    aliases = (
        pl.DataFrame({"merged_key": list(final), "survivor_key": list(final.values())}, schema=_ALIAS_PAIRS)
        if final
        else empty_frame(_ALIAS_PAIRS)
    )
    return Identity(aliases, remap(visitors, aliases, "lead_key"))


# The visitors linked to lead ``:key`` (``anonymous_id, lead_key``), and a row ``NULL, survivor`` for each
# merge in force that made it a survivor or merged it away. Built once (SQLAlchemy caches its SQL by shape).
_VISITORS_OR_MERGED = (
    select(_LINKS.c.anonymous_id, _LINKS.c.lead_key)
    .where(_LINKS.c.lead_key == bindparam("key"))
    .union_all(
        select(cast(null(), String), _ALIASES.c.survivor_key).where(
            _ALIASES.c.unmerged_at.is_(None),
            or_(_ALIASES.c.survivor_key == bindparam("key"), _ALIASES.c.merged_key == bindparam("key")),
        )
    )
)


def _merges(conn: Connection, key: int) -> dict[int, int]:
    """``merged → survivor`` of the merges in force down from ``key`` (the leads merged into it, chains
    followed) and up from it (the lead it went into, to the end of the chain)."""
    in_force = _ALIASES.c.unmerged_at.is_(None)
    pairs: dict[int, int] = {}
    frontier = {key}
    while frontier:  # down: the leads merged into these
        rows = conn.execute(
            select(_ALIASES.c.merged_key, _ALIASES.c.survivor_key).where(
                in_force, _ALIASES.c.survivor_key.in_(sorted(frontier))
            )
        ).all()
        frontier = {merged for merged, _ in rows if merged not in pairs}
        pairs.update((merged, survivor) for merged, survivor in rows)
    current = key
    while current not in pairs:  # up: where this lead went (a cycle stops here and fails below)
        survivor = conn.execute(
            select(_ALIASES.c.survivor_key).where(in_force, _ALIASES.c.merged_key == current)
        ).scalar()
        if survivor is None:
            break
        pairs[current] = survivor
        current = survivor
    return pairs


_VISITORS = {"anonymous_id": pl.Utf8(), "lead_key": pl.Int64()}
_ALIAS_PAIRS = {"merged_key": pl.Int64(), "survivor_key": pl.Int64()}


def resubscribe(engine: Engine, key: int, at: datetime) -> bool:
    """Clear a lead's unsubscribe (the lead asked for it in the preference centre); True if it was set."""
    stmt = (
        update(_LEADS)
        .where(_LEADS.c.key == key, _LEADS.c.unsubscribed_at.is_not(None))
        .values(unsubscribed_at=None, updated_at=at)
    )
    with engine.begin() as conn:
        return conn.execute(stmt).rowcount == 1


def end_track_enrolments(engine: Engine, key: int, tracks: Sequence[str], *, at: datetime, run_id: str) -> int:
    """End a lead's active enrolments in ``tracks`` (one product line's): an unsubscribe from that line."""
    if not tracks:
        return 0
    stmt = (
        update(_ENROLMENTS)
        .where(and_(_ENROLMENTS.c.lead_key == key, _ENROLMENTS.c.status == "active"))
        .where(_ENROLMENTS.c.track.in_(list(tracks)))
        .values(status="exited", exit_reason="unsubscribed", exited_at=at, next_step_at=None, updated_run_id=run_id)
    )
    with engine.begin() as conn:
        return int(conn.execute(stmt).rowcount)


def preferences(engine: Engine, key: int) -> tuple[datetime | None, set[str]]:
    """A lead's unsubscribe time (None: subscribed) and the product lines it stopped since it last
    resubscribed (``unsubscribe`` events of one line; a ``resubscribe`` event clears them all)."""
    events = Event.__table__  # type: ignore[attr-defined]
    last_resubscribe = (
        select(func.max(events.c.occurred_at))
        .where(events.c.lead_key == key, events.c.type == "resubscribe")
        .scalar_subquery()
    )
    lines = (
        select(events.c.product_line)
        .where(events.c.lead_key == key, events.c.type == "unsubscribe", events.c.product_line.is_not(None))
        .where(or_(last_resubscribe.is_(None), events.c.occurred_at > last_resubscribe))
        .distinct()
    )
    with engine.connect() as conn:
        unsubscribed = conn.execute(select(_LEADS.c.unsubscribed_at).where(_LEADS.c.key == key)).scalar()
        return unsubscribed, set(conn.execute(lines).scalars())


def leads_by_message(engine: Engine, message_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    """``message_id → (lead_id, lead_key)`` of the messages leadscore sent (the outbox knows the lead)."""
    if not message_ids:
        return {}
    stmt = (
        select(_OUTBOX.c.message_id, _LEADS.c.lead_id, _LEADS.c.key)
        .join(_LEADS, _LEADS.c.key == _OUTBOX.c.lead_key)
        .where(_OUTBOX.c.message_id.in_(sorted(set(message_ids))))
    )
    with engine.connect() as conn:
        return {message_id: (lead_id, key) for message_id, lead_id, key in conn.execute(stmt)}


def receipt_seen(engine: Engine, provider: str, receipt_id: str) -> bool:
    stmt = select(_RECEIPTS.c.receipt_id).where(_RECEIPTS.c.provider == provider, _RECEIPTS.c.receipt_id == receipt_id)
    with engine.connect() as conn:
        return conn.execute(stmt).first() is not None


def record_receipt(engine: Engine, provider: str, receipt_id: str, at: datetime) -> None:
    with engine.begin() as conn:
        insert_ignore(conn, _RECEIPTS, [{"provider": provider, "receipt_id": receipt_id, "received_at": at}])
