"""Carry out account trigger firings: the account owner's alert naming the members and their reasons
(through the outbox, at most once per firing), and webhooks — the same delivery as lead firings."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from flows.actions import Outcome, run_webhooks, send_alerts, sender_for
from nurture.mail import Mailer
from nurture.messages import Outgoing, account_alert
from stages.portfolio import Portfolio
from store.accounts import read_open_account_firings
from store.settings import Settings
from store.stages import record_firing_outcomes


def account_payload(firing: dict[str, Any]) -> dict[str, Any]:
    """What a webhook receives for an account firing."""
    return {
        "event": "account_trigger.fired",
        "firing_id": firing["id"],
        "run_id": firing["run_id"],
        "trigger": firing["trigger"],
        "direction": firing["direction"],
        "fired_at": firing["fired_at"].isoformat(),
        "product_line": firing["product_line"],
        "account": {"account_id": firing["account_id"], "name": firing["name"], "owner": firing["owner"]},
        "score": firing["score"],
        "score_before": firing["score_before"],
        "band": firing["band"],
        "qualifications": firing["qualifications"] or [],
        "members": firing["members"] or [],
    }


def notify_account_owners(
    engine: Engine, portfolio: Portfolio, firings: list[dict[str, Any]], settings: Settings
) -> list[Outcome]:
    """One alert per firing to the account's owner (or the trigger's fixed ``to``)."""
    outcomes: list[Outcome] = []
    if not firings:
        return outcomes
    mailer, now = Mailer.for_portfolio(portfolio.path), datetime.now(UTC)
    sender = sender_for(portfolio, settings.mail_from)
    firings_of: dict[str, list[int]] = {}

    def alerts() -> Iterator[Outgoing]:
        for firing in firings:
            params = firing["params"] or {}
            to = params.get("to") or firing["owner"]
            if not to:
                outcomes.append((firing["id"], "failed", 0, "the account has no owner and the trigger no 'to'", now))
                continue
            line = portfolio.line(firing["product_line"])
            template = params.get("template")
            template = "account_alert" if template in (None, "owner_alert") else template  # the default is a lead's
            message = account_alert(
                mailer,
                firing_id=firing["id"],
                account={
                    "account_id": firing["account_id"],
                    "name": firing["name"],
                    "score": firing["score"],
                    "band": firing["band"],
                    "qualifications": firing["qualifications"] or [],
                },
                product_line={"name": line.name, "title": line.spec.title or line.name},
                trigger={
                    "name": firing["trigger"],
                    "direction": firing["direction"],
                    "score_before": firing["score_before"],
                },
                members=firing["members"] or [],
                to=to,
                sender=sender,
                run_id=firing["run_id"],
                date=now,
                template=template,
            )
            firings_of[message.message_id] = [firing["id"]]
            yield message

    sent = send_alerts(engine, alerts(), firings, firings_of, settings, now)
    return outcomes + sent


def execute_account_actions(engine: Engine, portfolio: Portfolio, settings: Settings) -> dict[str, dict[str, int]]:
    """Carry out every open account firing; counts per action and status."""
    firings = read_open_account_firings(engine)
    alerts = [firing for firing in firings if firing["action"] == "notify_owner"]
    hooks = [firing for firing in firings if firing["action"] == "webhook"]
    outcomes = notify_account_owners(engine, portfolio, alerts, settings) + run_webhooks(
        hooks, deadline_s=settings.webhook_deadline, budget_s=settings.webhook_budget, payload=account_payload
    )
    record_firing_outcomes(engine, outcomes, "account_firings")
    action_of = {firing["id"]: firing["action"] for firing in firings}
    counts: dict[str, dict[str, int]] = {}
    for firing_id, status, *_ in outcomes:
        per = counts.setdefault(action_of[firing_id], {})
        per[status] = per.get(status, 0) + 1
    return counts
