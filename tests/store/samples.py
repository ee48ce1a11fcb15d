"""Sample files for the store tests: every kind of bad row next to good ones, with known line numbers."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from stages.spec import BUILTIN_EVENT_TYPES
from store.identity_tables import ANONYMOUS_EVENTS, VisitorLink
from store.ingest import IngestReport
from store.tables import Event, IngestReject, Lead

PRODUCT_LINES = {"crm", "analytics"}

# Line numbers are physical lines: the header is line 1.
LEADS_CSV = """\
lead_id,email,first_name,last_name,company,email_opt_in,ads_opt_in,unsubscribed_at,job_title,company_size,product_interest
L1, Alice@Example.COM ,Alice,Smith,Acme,yes,0,,CTO,250,crm;analytics
L2,bob@example.com,Bob,,Beta,TRUE,false,,Engineer,,crm
,nokey@example.com,No,Key,,,,,,,
L4,not-an-email,Dan,,,,,,,,
L5,eve@example.com,Eve,,,maybe,,,,,
L6,fay@example.com,Fay,,,,,2024-01-01T00:00:00,,,
L7,gus@example.com,Gus,,,,,,,,ghost

L3,cy@example.com,Cy,,,no,no,2024-02-01T10:00:00Z,,,
L8,too,many,values,,,,,,,,,,
"""

# Expected lead rejects: line → (field, reason)
LEAD_REJECTS = {
    4: ("lead_id", "required"),
    5: ("email", "value is not a valid email address: 'not-an-email' (expected name@domain.tld)"),
    6: ("email_opt_in", "expected true/false/yes/no/1/0, got 'maybe'"),
    7: ("unsubscribed_at", "timezone missing in '2024-01-01T00:00:00': add an offset such as +00:00 or Z"),
    8: ("product_interest", "unknown product line(s) ['ghost']; known: analytics, crm"),
    11: (None, "row has 14 values but the header has 11 columns"),
}

GMAIL_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"

EVENTS_JSONL = "\n".join(
    [
        '{"event_id":"e1","lead_id":"L1","type":"page_view","occurred_at":"2024-03-01T10:00:00Z",'
        '"product_line":"crm","properties":{"url":"/pricing"}}',
        '{"event_id":"e2","lead_id":"L1","type":"email_delivered","occurred_at":"2024-03-01T10:00:00+00:00",'
        '"properties":{"message_id":"m1"}}',
        # 1 s after the delivery of m1, written in another zone: a machine open.
        '{"event_id":"e3","lead_id":"L1","type":"email_open","occurred_at":"2024-03-01T11:00:01+01:00",'
        '"properties":{"message_id":"m1"}}',
        '{"event_id":"e4","lead_id":"L2","type":"email_delivered","occurred_at":"2024-03-01T11:00:00Z",'
        '"message_id":"m2"}',
        # An hour after its delivery: a person.
        '{"event_id":"e5","lead_id":"L2","type":"email_open","occurred_at":"2024-03-01T12:00:00Z","message_id":"m2"}',
        '{"event_id":"e6","lead_id":"L2","type":"email_open","occurred_at":"2024-03-02T09:00:00Z",'
        f'"properties":{{"message_id":"m3","user_agent":"{GMAIL_PROXY}"}}}}',
        '{"event_id": "e7", "lead_id": ',
        '{"event_id":"e8","lead_id":"L1","type":"teleport","occurred_at":"2024-03-01T10:00:00Z"}',
        '{"event_id":"e9","lead_id":"L1","type":"page_view","occurred_at":"2024-03-01T10:00:00"}',
        '{"event_id":"e10","lead_id":"L1","type":"page_view","occurred_at":"yesterday"}',
        '{"event_id":"e11","lead_id":"L99","type":"page_view","occurred_at":"2024-03-01T10:00:00Z"}',
        '{"event_id":"e12","lead_id":"L1","type":"page_view","occurred_at":"2024-03-01T10:00:00Z",'
        '"product_line":"ghost"}',
        '{"event_id":"e13","lead_id":"L1","type":"manual_adjustment","occurred_at":"2024-03-01T10:00:00Z",'
        '"properties":{"points":10}}',
        '{"event_id":"e14","lead_id":"L3","type":"manual_adjustment","occurred_at":"2024-03-03T10:00:00Z",'
        '"product_line":"analytics","properties":{"points":-5,"reason":"met at the fair","author":"ann"}}',
        '{"lead_id":"L1","type":"page_view","occurred_at":"2024-03-01T10:00:00Z"}',
        '{"event_id":"e16","lead_id":"L3","type":"page_view","occurred_at":"2024-03-05T10:00:00Z"}',
        # A proxy agent, but the row says it is a person: the explicit flag wins.
        '{"event_id":"e17","lead_id":"L2","type":"email_click","occurred_at":"2024-03-02T09:00:00Z",'
        '"machine":false,"properties":{"user_agent":"GoogleImageProxy"}}',
        "[1, 2]",
        "",
    ]
)

ALLOWED = ", ".join(sorted(BUILTIN_EVENT_TYPES))
EVENT_REJECTS = {
    7: (None, "not valid JSON"),  # prefix: the decoder's own words follow
    8: (
        "type",
        f"unknown event type 'teleport'; allowed: {ALLOWED} (declare custom types under event_types: in the portfolio)",
    ),
    9: ("occurred_at", "timezone missing in '2024-03-01T10:00:00': add an offset such as +00:00 or Z"),
    10: ("occurred_at", "not an ISO-8601 timestamp: 'yesterday'"),
    11: ("lead_id", "unknown lead_id 'L99' (ingest leads first)"),
    12: ("product_line", "unknown product line 'ghost'; known: analytics, crm"),
    13: ("properties", "manual_adjustment needs a non-empty 'reason' property"),
    15: ("event_id", "required"),
    18: (None, "expected a JSON object, got list"),
}
GOOD_EVENTS = ["e1", "e2", "e3", "e4", "e5", "e6", "e14", "e16", "e17"]


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Loaded:
    """A store with the sample leads and events ingested."""

    engine: Engine
    leads_path: Path
    events_path: Path
    leads: IngestReport
    events: IngestReport
    keys: dict[str, int]


def lead_keys(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(Lead.lead_id, Lead.key)).all())  # type: ignore[call-overload]


def ingest_summary(report: IngestReport) -> tuple[Any, ...]:
    """What an ingestion call reports, comparable between the fast path and the row-by-row reference."""
    rejects = [(r.line, r.field, r.reason, json.dumps(r.raw, sort_keys=True)) for r in report.rejects]
    counts = (report.read, report.accepted, report.inserted, report.updated, report.rejected)
    return counts, rejects, sorted(report.interests)


def stored_events(engine: Engine) -> tuple[list[Any], list[Any]]:
    """Every stored event (lead and anonymous), visitor link and reject, in a fixed order."""
    rejects = IngestReject.__table__
    with engine.connect() as conn:
        stored = [
            row
            for table in (Event.__table__, ANONYMOUS_EVENTS)
            for row in conn.execute(
                select(*(c for c in table.c if c.name != "ingested_at")).order_by(table.c.event_id)
            ).all()
        ]
        stored += conn.execute(select(VisitorLink.__table__).order_by(VisitorLink.__table__.c.anonymous_id)).all()
        refused = conn.execute(
            select(rejects.c.kind, rejects.c.line, rejects.c.field, rejects.c.reason, rejects.c.row_hash).order_by(
                rejects.c.source, rejects.c.line
            )
        ).all()
    return [tuple(row) for row in stored], [tuple(row) for row in refused]
