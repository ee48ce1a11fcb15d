"""The report's nurture figures: enrolments by outcome, exits by reason, sent, opened and clicked."""

from datetime import UTC, datetime

from sqlalchemy import Engine, insert

from store.nurture_tables import NurtureEnrolment, NurtureStepLog
from store.outbox_tables import OutboxMessage
from store.reports import nurture_performance
from store.tables import Event, Lead

AT = datetime(2026, 11, 2, 10, tzinfo=UTC)


def test_nurture_performance_counts_human_opens_and_clicks_per_track(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(Lead.__table__), [{"key": k, "lead_id": f"L{k}", "attributes": {}} for k in (1, 2, 3, 4)])  # type: ignore[attr-defined]
        enrolments = [
            (1, "warm-up", "active", None),
            (2, "warm-up", "exited", "score_at_least"),
            (3, "warm-up", "exited", "unsubscribed"),
            (4, "warm-up", "exited", "score_at_least"),
            (1, "nudge", "completed", None),
        ]
        conn.execute(
            insert(NurtureEnrolment.__table__),  # type: ignore[attr-defined]
            [
                {"id": i, "lead_key": lead, "track": track, "status": status, "exit_reason": reason}
                | {"enrolled_at": AT, "run_id": "r"}
                for i, (lead, track, status, reason) in enumerate(enrolments, start=1)
            ],
        )
        # Emails: m1, m2 (warm-up, sent), m3 (warm-up, failed: not counted), m4 (nudge, sent).
        steps = [(1, "m1"), (2, "m2"), (3, "m3"), (5, "m4")]
        conn.execute(
            insert(NurtureStepLog.__table__),  # type: ignore[attr-defined]
            [
                {"enrolment_id": e, "step": 0, "action": "email", "detail": "intro", "at": AT, "run_id": "r"}
                | {"message_id": m}
                for e, m in steps
            ],
        )
        conn.execute(
            insert(OutboxMessage.__table__),  # type: ignore[attr-defined]
            [
                {"message_id": m, "kind": "nurture", "ref": m, "lead_key": 1, "run_id": "r", "to_address": "a@b.c"}
                | {"subject": "s", "status": "failed" if m == "m3" else "sent", "created_at": AT}
                for _, m in steps
            ],
        )
        events = [
            ("o1", 1, "email_open", "m1", False),
            ("o1b", 1, "email_open", "m1", False),  # a second open of the same message counts once
            ("c1", 1, "email_click", "m1", False),
            ("o2", 2, "email_open", "m2", True),  # a privacy proxy's prefetch: not a person
            ("o3", 3, "email_open", "m3", False),  # a message that was never sent
            ("o4", 1, "email_open", "m4", False),
        ]
        conn.execute(
            insert(Event.__table__),  # type: ignore[attr-defined]
            [
                {"event_id": eid, "lead_key": lead, "type": kind, "message_id": m, "machine": machine}
                | {"occurred_at": AT, "properties": {}}
                for eid, lead, kind, m, machine in events
            ],
        )

    rows = nurture_performance(engine).to_dicts()

    assert rows == [
        {
            "track": "nudge",
            "enrolled": 1,
            "active": 0,
            "completed": 1,
            "exited": 0,
            "sent": 1,
            "opened": 1,
            "clicked": 0,
            "exits by reason": "",
        },
        {
            "track": "warm-up",
            "enrolled": 4,
            "active": 1,
            "completed": 0,
            "exited": 3,
            "sent": 2,
            "opened": 1,
            "clicked": 1,
            "exits by reason": "score_at_least: 2, unsubscribed: 1",
        },
    ]
