"""Reads of the few event types read by type alone (nurture's suppressions, the report's served content):
the same rows as before, answered from the partial index ``ix_events_sparse_type`` rather than a scan of
every event."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, text

from store.nurture import read_suppression_events
from store.reports import content_served
from store.sparse_events import of_sparse_types
from store.tables import Event, Lead, to_micros

AT = datetime(2026, 11, 2, 10, tzinfo=UTC)
SERVED = {"slot": "hero", "variant": "b", "bands": {"crm": "hot"}, "qualifications": {"crm": "mql"}}


def _store(engine: Engine) -> None:
    """Lead 1 has one event of every kind below; lead 2 is already unsubscribed and bounced."""
    with engine.begin() as conn:
        conn.execute(
            insert(Lead.__table__),  # type: ignore[attr-defined]
            [
                {"key": 1, "lead_id": "L1", "attributes": {}, "unsubscribed_at": None, "bounced_at": None},
                {"key": 2, "lead_id": "L2", "attributes": {}, "unsubscribed_at": AT, "bounced_at": AT},
            ],
        )
        events = [
            ("p1", 1, "page_view", None, {}, 5),
            ("o1", 1, "email_open", None, {}, 4),
            ("u1", 1, "unsubscribe", "crm", {}, 3),
            ("b1", 1, "email_bounce", None, {"bounce": "hard"}, 2),
            ("c1", 1, "content_served", None, SERVED, 1),
            ("late", 1, "spam_complaint", None, {}, -1),  # after as_of
            ("u2", 2, "unsubscribe", None, {}, 3),  # a lead already both unsubscribed and bounced
        ]
        conn.execute(
            insert(Event.__table__),  # type: ignore[attr-defined]
            [
                {"event_id": eid, "lead_key": lead, "type": kind, "product_line": line, "properties": props}
                | {"occurred_at": AT - timedelta(hours=hours_before)}
                for eid, lead, kind, line, props, hours_before in events
            ],
        )


def test_suppression_events_are_those_of_leads_not_yet_both_unsubscribed_and_bounced(engine: Engine) -> None:
    _store(engine)
    events = read_suppression_events(engine, AT).sort("occurred_at")
    assert events.select("lead_key", "type", "product_line").rows() == [
        (1, "unsubscribe", "crm"),
        (1, "email_bounce", None),
    ]
    assert [json.loads(p) for p in events["properties"]] == [{}, {"bounce": "hard"}]


def test_content_served_reads_only_the_served_views_since(engine: Engine) -> None:
    _store(engine)
    assert content_served(engine, ["crm"], AT - timedelta(hours=2)).rows() == [(1, "hero", "b", "crm", "hot", "mql")]
    assert content_served(engine, ["crm"], AT).is_empty()


def test_reads_by_sparse_type_use_the_partial_index(engine: Engine) -> None:
    where = f"{of_sparse_types(['unsubscribe', 'email_bounce'], 'e.')} AND e.occurred_at <= :t"
    sql = f"SELECT e.lead_key FROM events e WHERE {where}"
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = " ".join(row[3] for row in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"), {"t": to_micros(AT)}))
        else:  # an empty table is cheaper to scan: ask whether the index can answer at all
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(row[0] for row in conn.execute(text(f"EXPLAIN {sql}"), {"t": to_micros(AT)}))
    assert "ix_events_sparse_type" in plan


def test_only_sparse_types_can_be_read_by_type() -> None:
    with pytest.raises(ValueError, match=r"not sparse event types: \['page_view'\]"):
        of_sparse_types(["unsubscribe", "page_view"])
