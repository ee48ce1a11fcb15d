"""Anonymous visitors at ingestion: their events go to ``anonymous_events``; an event that names both a
lead and a visitor (``identify``) links the visitor to the lead from the event's time on. Both ingestion
paths (and the service) write them through ``Visitors``, so they store the same rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from store.bulk import insert_ignore
from store.identity_tables import ANONYMOUS_EVENTS, VisitorLink

_LINKS = VisitorLink.__table__


@dataclass
class Visitors:
    """A chunk's anonymous events and visitor links, written after its lead events."""

    events: list[dict[str, Any]] = field(default_factory=list)
    links: dict[str, dict[str, Any]] = field(default_factory=dict)

    def event(self, anonymous_id: str, values: dict[str, Any]) -> None:
        """``values``: the event's columns as for ``events``, without ``lead_key``."""
        self.events.append({"anonymous_id": anonymous_id, **values})

    def link(self, anonymous_id: str, lead_key: int, at: datetime, source: str = "identify") -> None:
        """The first link of a visitor wins (within the chunk by time, then across runs: stored ones stay)."""
        known = self.links.get(anonymous_id)
        if known is None or at < known["linked_at"]:
            self.links[anonymous_id] = {
                "anonymous_id": anonymous_id,
                "lead_key": lead_key,
                "linked_at": at,
                "source": source,
            }

    def write(self, conn: Connection) -> int:
        """Store both; returns the anonymous events inserted (an ``event_id`` already stored is skipped)."""
        self.events.sort(key=lambda row: row["anonymous_id"])
        inserted = insert_ignore(conn, ANONYMOUS_EVENTS, self.events)
        insert_ignore(conn, _LINKS, sorted(self.links.values(), key=lambda row: row["anonymous_id"]))  # type: ignore[arg-type]
        return inserted
