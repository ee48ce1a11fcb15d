"""Access (GDPR art. 15): everything the store holds about one lead, as JSON-ready data.

It reads the same map erasure deletes by (``store.lead_data``), so what is exported is exactly what
an erasure would remove: the lead row, its events, journeys, score history, firings, emails (with the
``.eml`` as sent), audience memberships and uploaded lines, enrolments and their steps, console audit
entries, rejects naming it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from store import audit
from store.erasure import find_leads
from store.lead_data import HELD, Held, names_member, scope_of, table


class LeadNotFound(LookupError):
    """No stored lead has this id or email."""


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def export_lead(engine: Engine, identifier: str, *, actor: str, at: datetime | None = None) -> dict[str, Any]:
    """``{"lead": …, "tables": {name: [rows]}, "exported_at": …}`` for the lead with this id or email.

    Audited (who, when, how many rows per table), like an erasure. A lead id or email shared by several
    leads (duplicates) exports the first by key; the others by their own ids.
    """
    at = at or datetime.now(UTC)
    with engine.begin() as conn:
        leads, _ = find_leads(conn, [identifier.strip()])
        if not leads:
            raise LeadNotFound(f"no lead with id or email {identifier!r}")
        lead = min(leads, key=lambda row: row.key)
        scope = scope_of(conn, [lead])
        tables: dict[str, list[dict[str, Any]]] = {}
        for name, held in HELD.items():
            condition = scope.where(name)
            if condition is None or held is Held.LEAD:
                continue
            target = table(name)
            order = list(target.primary_key.columns)
            rows = conn.execute(select(target).where(condition).order_by(*order))
            if held is Held.NAMED_MEMBER:  # the JSON prefilter may catch L10 for L1
                rows = [row for row in rows if names_member(row.members, scope.lead_ids)]  # type: ignore[assignment]
            tables[name] = [{column: _plain(value) for column, value in row._mapping.items()} for row in rows]
        for message in tables.get("outbox", []):  # the email as sent: the .eml file the outbox kept
            path = Path(message["path"]) if message.get("path") else None
            message["eml"] = path.read_text(encoding="utf-8", errors="replace") if path and path.is_file() else None
        row = conn.execute(select(table("leads")).where(scope.where("leads"))).one()  # type: ignore[arg-type]
        counts = {name: len(rows) for name, rows in tables.items() if rows}
        audit.record(conn, actor, "export", lead_key=lead.key, at=at, rows=counts)
    return {
        "lead": {column: _plain(value) for column, value in row._mapping.items()},
        "tables": tables,
        "exported_at": _plain(at),
    }
