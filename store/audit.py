"""The console's audit: every action (who, what, when, on which lead), written with the action it records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from store.console_tables import AuditEntry

_TABLE = AuditEntry.__table__  # type: ignore[attr-defined]


def record(
    conn: Connection,
    actor: str,
    action: str,
    *,
    lead_key: int | None = None,
    product_line: str | None = None,
    at: datetime | None = None,
    **detail: Any,
) -> None:
    """Append one entry inside the caller's transaction, so an action and its audit commit together."""
    conn.execute(
        insert(_TABLE).values(
            at=at or datetime.now(UTC),
            actor=actor,
            action=action,
            lead_key=lead_key,
            product_line=product_line,
            detail=detail,
        )
    )


def for_lead(engine: Engine, lead_key: int, limit: int = 200) -> list[dict[str, Any]]:
    """A lead's audit, newest first."""
    stmt = (
        select(_TABLE.c.at, _TABLE.c.actor, _TABLE.c.action, _TABLE.c.product_line, _TABLE.c.detail)
        .where(_TABLE.c.lead_key == lead_key)
        .order_by(_TABLE.c.at.desc(), _TABLE.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(stmt)]


def log(engine: Engine, actor: str, action: str, **detail: Any) -> None:
    """Append one entry on its own (for actions without a write of their own: sign-in, users)."""
    with engine.begin() as conn:
        record(conn, actor, action, **detail)
