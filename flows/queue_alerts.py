"""The daily pipeline's overdue-queue step: an MQL-queue item past its SLA (``sales.sla_hours``) alerts its
owner once, through the outbox like the trigger alerts.

Once per item: the message's id derives from the item (``sla:<journey>:<qualification>``), the outbox sends an id
at most once, and the item is recorded (``queue_alerts``) when the outbox has taken it; a crash between the two
finds the message already in the outbox on the re-run, which then only records it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from flows.actions import sender_for
from flows.mailing import send_messages
from nurture.mail import Mailer
from nurture.messages import Outgoing, sla_alert
from stages.portfolio import Portfolio
from store import console_queue
from store.settings import Settings

TAKEN = ("sent", "unknown", "duplicate")  # the outbox has it: never again


def _open(portfolio: Portfolio, item: dict[str, Any]) -> bool:
    """Still sales' to answer: a customer or a lost deal (a terminal stage) is not."""
    line = portfolio.product_lines.get(item["product_line"])
    return line is not None and any(stage.name == item["stage"] and not stage.terminal for stage in line.stages)


def alert_overdue(engine: Engine, portfolio: Portfolio, settings: Settings, now: datetime) -> dict[str, int]:
    """Alert the owners of the items overdue at ``now`` that were never alerted; returns counts per outcome
    (an item whose alert failed is tried again by the next run)."""
    sales = portfolio.spec.sales
    items = [item for item in console_queue.overdue(engine, sales.cutoffs(now)) if _open(portfolio, item)]
    mailer, sender = Mailer.for_portfolio(portfolio.path), sender_for(portfolio, settings.mail_from)
    records: list[dict[str, Any]] = []
    pending: dict[str, dict[str, Any]] = {}

    def alerts() -> Iterator[Outgoing]:
        for item in items:
            due = sales.due(item["qualification"], item["reached_at"])
            record = {name: item[name] for name in ("journey_id", "lead_key", "qualification")} | {"due_at": due}
            if not item["owner_email"]:  # nobody to alert: recorded, so it is not looked at every day
                records.append(record | {"to_address": None, "message_id": None, "status": "no_owner"})
                continue
            line = portfolio.line(item["product_line"])
            message = sla_alert(
                mailer,
                item=item | {"due_at": due},
                product_line={"name": line.name, "title": line.spec.title or line.name},
                to=item["owner_email"],
                sender=sender,
                run_id=f"sla-{now:%Y%m%dT%H%M%S}",
                date=now,
            )
            pending[message.message_id] = record | {"to_address": item["owner_email"], "message_id": message.message_id}
            yield message

    counts: Counter[str] = Counter()
    for result in send_messages(engine, alerts(), settings, now=now):
        counts[result.status] += 1
        if result.status in TAKEN:
            records.append(pending[result.message_id] | {"status": result.status})
    counts["no_owner"] = sum(record["status"] == "no_owner" for record in records)
    console_queue.record_alerts(engine, records)
    return {status: n for status, n in sorted(counts.items()) if n}
