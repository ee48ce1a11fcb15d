"""Where a lead's data lives: every table of the store, and how one lead's rows in it are found.

Erasure and access (GDPR art. 17 and 15) both work from this map, so they cannot disagree. Every table
registered on the metadata must be listed in ``HELD``: a table added later stops erasure (``unlisted``)
until someone decides how it holds lead data, instead of silently keeping erased people's rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import Connection, String, Table, func, or_, select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import SQLModel

from store.tombstones import normalised_email


class Held(Enum):
    """How a table holds a lead's data, and so how erasure treats its rows."""

    LEAD = "the lead itself (key): deleted"
    BY_LEAD = "rows with the lead's lead_key: deleted"
    BY_JOURNEY = "rows of the lead's journeys (journey_id): deleted"
    BY_ENROLMENT = "rows of the lead's nurture enrolments (enrolment_id): deleted"
    UPLOADED = "audience lines uploaded for the lead: reduced to their hashed cells until the next removal"
    AUDIT = "console audit entries on the lead: kept (who did what, when), unlinked, details dropped"
    RAW = "rows as a file sent them (ingest rejects), found by the lead's id or email: deleted"
    BY_VISITOR = "anonymous events of the visitors linked to the lead: deleted"
    ALIAS = "merges the lead took part in, on either side: deleted"
    NAMED_MEMBER = "account alerts naming the lead among the members: its entry removed, the alert kept"
    NONE = "no lead data"


HELD: dict[str, Held] = {
    "leads": Held.LEAD,
    "events": Held.BY_LEAD,
    "journeys": Held.BY_LEAD,
    "score_snapshots": Held.BY_LEAD,
    "stage_updates": Held.BY_LEAD,
    "stage_transitions": Held.BY_LEAD,
    "qualification_milestones": Held.BY_LEAD,
    "trigger_firings": Held.BY_LEAD,
    "lead_tags": Held.BY_LEAD,
    "nurture_enrolments": Held.BY_LEAD,
    "nurture_requests": Held.BY_LEAD,
    "outbox": Held.BY_LEAD,
    "audience_members": Held.BY_LEAD,
    "audience_phones": Held.BY_LEAD,
    "queue_decisions": Held.BY_LEAD,
    "queue_alerts": Held.BY_LEAD,
    "visitor_links": Held.BY_LEAD,
    "account_members": Held.BY_LEAD,
    "anonymous_events": Held.BY_VISITOR,
    "lead_aliases": Held.ALIAS,
    "account_firings": Held.NAMED_MEMBER,
    "trigger_arms": Held.BY_JOURNEY,
    "trigger_arm_log": Held.BY_JOURNEY,
    "nurture_steps": Held.BY_ENROLMENT,
    "audience_export_rows": Held.UPLOADED,
    "console_audit": Held.AUDIT,
    "ingest_rejects": Held.RAW,
    # Counts, configuration and people who are not leads:
    "runs": Held.NONE,
    "run_locks": Held.NONE,
    "audience_exports": Held.NONE,
    "api_keys": Held.NONE,
    "webhook_receipts": Held.NONE,
    "console_users": Held.NONE,
    "erasure_tombstones": Held.NONE,
    "accounts": Held.NONE,  # companies; their owners are users, not leads
    "account_scores": Held.NONE,  # roll-ups: counts and sums, no member named
    "account_trigger_arms": Held.NONE,
    "event_generations": Held.NONE,  # a change counter per lead key
    "event_block_leads": Held.NONE,  # lead keys a block counter bump touched (bare numbers, the last 16 bumps)
    "event_mirror_epoch": Held.NONE,
}


def unlisted() -> list[str]:
    """Tables on the metadata that ``HELD`` does not say anything about."""
    return sorted(set(SQLModel.metadata.tables) - HELD.keys())


def table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


@dataclass(frozen=True)
class Scope:
    """One or more leads, and the ids their rows are found by in each kind of table."""

    keys: list[int]
    lead_ids: list[str]
    emails: list[str]  # normalised
    journeys: list[int]
    enrolments: list[int]
    rejects: list[int]
    visitors: list[str]

    def where(self, name: str) -> ColumnElement[bool] | None:
        """The condition that selects the scope's rows of table ``name`` (None: the table holds none)."""
        held, columns = HELD[name], table(name).c
        match held:
            case Held.LEAD:
                return columns.key.in_(self.keys)
            case Held.BY_LEAD | Held.UPLOADED | Held.AUDIT:
                return columns.lead_key.in_(self.keys)
            case Held.BY_JOURNEY:
                return columns.journey_id.in_(self.journeys)
            case Held.BY_ENROLMENT:
                return columns.enrolment_id.in_(self.enrolments)
            case Held.RAW:
                return columns.id.in_(self.rejects)
            case Held.BY_VISITOR:
                return columns.anonymous_id.in_(self.visitors)
            case Held.ALIAS:
                return or_(columns.merged_key.in_(self.keys), columns.survivor_key.in_(self.keys))
            case Held.NAMED_MEMBER:  # a prefilter on the JSON text: ``names_member`` decides exactly
                text = func.cast(columns.members, String)
                return or_(*(text.contains(lead_id) for lead_id in self.lead_ids))
        return None


def scope_of(conn: Connection, leads: Sequence[Any]) -> Scope:
    """The scope of ``leads`` (rows with ``key``, ``lead_id`` and ``email``)."""
    keys = [int(lead.key) for lead in leads]
    lead_ids = [str(lead.lead_id) for lead in leads]
    emails = [normalised_email(lead.email) for lead in leads if lead.email]
    journeys, enrolments, links = table("journeys"), table("nurture_enrolments"), table("visitor_links")
    return Scope(
        keys=keys,
        lead_ids=lead_ids,
        emails=emails,
        journeys=list(conn.execute(select(journeys.c.id).where(journeys.c.lead_key.in_(keys))).scalars()),
        enrolments=list(conn.execute(select(enrolments.c.id).where(enrolments.c.lead_key.in_(keys))).scalars()),
        rejects=_rejects_naming(conn, lead_ids, emails),
        visitors=list(conn.execute(select(links.c.anonymous_id).where(links.c.lead_key.in_(keys))).scalars()),
    )


def names_member(members: Any, lead_ids: Sequence[str]) -> bool:
    """Whether an account alert's ``members`` list names one of ``lead_ids``."""
    return any(isinstance(member, dict) and member.get("lead_id") in lead_ids for member in members or [])


def same_people(conn: Connection, keys: Iterable[int]) -> set[int]:
    """``keys`` and every lead merged with one of them (either side, chains followed): one person's leads."""
    aliases = table("lead_aliases").c
    found, frontier = set(keys), set(keys)
    while frontier:
        pairs = conn.execute(
            select(aliases.merged_key, aliases.survivor_key).where(
                aliases.unmerged_at.is_(None),
                or_(aliases.merged_key.in_(frontier), aliases.survivor_key.in_(frontier)),
            )
        )
        frontier = {key for pair in pairs for key in pair} - found
        found |= frontier
    return found


def _rejects_naming(conn: Connection, lead_ids: list[str], emails: list[str]) -> list[int]:
    """Ingest rejects whose row names one of these lead ids or emails (any field, exact value).

    The JSON text is searched first (a cheap prefilter on a table that is usually small), then each
    candidate's values are compared exactly, so ``L1`` does not catch ``L10``.
    """
    wanted = set(lead_ids) | set(emails)
    if not wanted:
        return []
    rejects = table("ingest_rejects")
    text = func.lower(func.cast(rejects.c.raw, rejects.c.reason.type))
    found = conn.execute(
        select(rejects.c.id, rejects.c.raw).where(or_(*(text.contains(value.lower()) for value in wanted)))
    )
    return [reject_id for reject_id, raw in found if _names(raw, wanted)]


def _names(raw: Any, wanted: set[str]) -> bool:
    values: Iterable[Any] = raw.values() if isinstance(raw, dict) else raw if isinstance(raw, list) else [raw]
    for value in values:
        if isinstance(value, dict | list):
            if _names(value, wanted):
                return True
        elif value is not None and (str(value).strip() in wanted or normalised_email(str(value)) in wanted):
            return True
    return False
