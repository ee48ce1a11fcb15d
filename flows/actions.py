"""Carry out the actions of trigger firings after the scoring transactions committed.

Firings are recorded ``pending`` in the same transaction as the scores that caused them, so a crash
between scoring and delivery loses nothing: the next run picks up whatever is still open. Tag actions
never get here (they are applied inside the scoring transaction). Owner notifications go through the
outbox, at most once per firing (the Message-ID derives from the firing id); track enrol/exit become
requests that the next nurture run honours with its consent and re-entry rules; webhooks are POSTed
with retries, each try within ``LEADSCORE_WEBHOOK_DEADLINE`` seconds and the whole step within
``LEADSCORE_WEBHOOK_BUDGET``; an endpoint that keeps failing (or an alert whose ``.eml`` could not
be written, or that the mail server refused for now) is retried by later runs up to ``MAX_ATTEMPTS``
and then left ``failed`` with its last outcome: it never blocks a run.
"""

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from flows.digest import digest_message, is_digest, send_digests
from flows.mailing import send_messages
from nurture.chat import slack_message, teams_message
from nurture.mail import Mailer, Sender
from nurture.messages import Outgoing, owner_alert
from nurture.spec import nurture_section
from nurture.webhooks import WebhookCall, WebhookResult, post_all
from stages.portfolio import Portfolio
from store.nurture import request_enrolments, request_exits
from store.settings import Settings
from store.shapes import LEAD_CONTACT_COLUMNS
from store.stages import read_open_firings, record_firing_outcomes

MAX_ATTEMPTS = 9
Outcome = tuple[int, str, int, str, datetime | None]  # firing id, status, attempts now, outcome, completed


def _breakdown(firing: dict[str, Any]) -> list[dict[str, Any]]:
    """The crossing state's breakdown, largest contributions first (the top reasons lead)."""
    entries = json.loads(firing["breakdown"]) if firing["breakdown"] else None
    return sorted(entries or [], key=lambda entry: -abs(entry["points"]))


def webhook_payload(firing: dict[str, Any]) -> dict[str, Any]:
    """What a receiver gets: the trigger, the state that crossed (stage, score, band, qualification,
    breakdown), the stage a promotion in the same run then took the journey to, and who the lead is."""
    return {
        "event": "trigger.fired",
        "firing_id": firing["id"],
        "run_id": firing["run_id"],
        "trigger": firing["trigger"],
        "direction": firing["direction"],
        "fired_at": firing["fired_at"].isoformat(),
        "product_line": firing["product_line"],
        "stage": firing["stage"],
        "score": firing["score"],
        "score_before": firing["score_before"],
        "band": firing["band"],
        "qualification": firing["qualification"],
        "breakdown": _breakdown(firing),
        "promoted_to": firing["promoted_to"],
        "lead": {name: firing[name] for name in LEAD_CONTACT_COLUMNS},
    }


def run_webhooks(
    firings: list[dict[str, Any]],
    *,
    deadline_s: float = 5.0,
    budget_s: float = 30.0,
    payload: Callable[[dict[str, Any]], dict[str, Any]] = webhook_payload,
) -> list[Outcome]:
    """POST the webhook firings within ``budget_s`` (each try within ``deadline_s``); what is cut off
    or failed temporarily stays ``retry`` for the next run, up to ``MAX_ATTEMPTS``. ``payload`` makes the
    body (an account firing's differs from a lead's)."""
    outcomes: list[Outcome] = []
    calls = []
    for firing in firings:
        params = firing["params"] if isinstance(firing["params"], dict) else json.loads(firing["params"])
        secret_env = params.get("secret_env")
        secret = os.environ.get(secret_env) if secret_env else None
        if secret_env and not secret:
            # A configuration problem: keep it open so that setting the variable lets a later run deliver.
            outcomes.append((firing["id"], "retry", 0, f"environment variable {secret_env} is not set", None))
            continue
        calls.append((firing, WebhookCall(str(firing["id"]), params["url"], payload(firing), secret)))
    return outcomes + _settle(calls, post_all([call for _, call in calls], deadline_s=deadline_s, budget_s=budget_s))


def _settle(calls: list[tuple[dict[str, Any], WebhookCall]], results: list[WebhookResult]) -> list[Outcome]:
    """Done, retried by a later run (up to ``MAX_ATTEMPTS``), or failed for good."""
    outcomes: list[Outcome] = []
    now = datetime.now(UTC)
    for (firing, _), result in zip(calls, results, strict=True):
        if result.ok:
            status = "done"
        elif result.retryable and firing["attempts"] + result.attempts < MAX_ATTEMPTS:
            status = "retry"
        else:
            status = "failed"
        outcomes.append((firing["id"], status, result.attempts, result.outcome, None if status == "retry" else now))
    return outcomes


def post_to_chats(firings: list[dict[str, Any]], *, deadline_s: float = 5.0, budget_s: float = 30.0) -> list[Outcome]:
    """Chat actions: each firing posted to its Slack or Teams incoming webhook (retried like webhooks)."""
    outcomes: list[Outcome] = []
    calls = []
    for firing in firings:
        params = json.loads(firing["params"])
        url = os.environ.get(params["url_env"])
        if not url:  # configuration: setting the variable lets a later run post it
            outcomes.append((firing["id"], "retry", 0, f"environment variable {params['url_env']} is not set", None))
            continue
        message = (slack_message if params["platform"] == "slack" else teams_message)(webhook_payload(firing))
        calls.append((firing, WebhookCall(str(firing["id"]), url, message)))
    return outcomes + _settle(calls, post_all([call for _, call in calls], deadline_s=deadline_s, budget_s=budget_s))


def sender_for(portfolio: Portfolio, mail_from: str) -> Sender:
    """The portfolio's nurture sender when it has one, else ``mail_from`` (``LEADSCORE_MAIL_FROM``)."""
    spec = nurture_section(portfolio)  # the sender only: rendering every track's templates costs ≈ 0.1 s
    if spec.sender is not None:
        return spec.sender.sender()
    return Sender("leadscore", mail_from)


def notify_owners(
    engine: Engine, portfolio: Portfolio, firings: list[dict[str, Any]], settings: Settings
) -> list[Outcome]:
    """One alert email per firing to the lead's owner (or the trigger's fixed ``to``), via the outbox; an owner
    whose alerts of one run outnumber ``sales.digest_alerts_above`` gets that run's as one digest instead.

    A first run on a back-filled store crosses thousands of thresholds: a salesperson would find
    hundreds of alerts in the inbox (and rendering each costs ≈ 0.5 ms). The digest's Message-ID derives
    from the run and the owner, and a run's firings for an owner stay the same set until they are done,
    so a re-run after a crash recognises the digest it already sent.
    """
    outcomes: list[Outcome] = []
    if not firings:
        return outcomes
    mailer, now = Mailer.for_portfolio(portfolio.path), datetime.now(UTC)
    sender = sender_for(portfolio, settings.mail_from)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for firing in firings:
        to = json.loads(firing["params"]).get("to") or firing["owner_email"]
        if not to:
            outcomes.append((firing["id"], "failed", 0, "the lead has no owner_email and the trigger no 'to'", now))
            continue
        groups.setdefault((firing["run_id"], to), []).append(firing | {"to": to})
    limit = portfolio.spec.sales.digest_alerts_above
    digested = {key: group for key, group in groups.items() if limit is not None and len(group) > limit}
    single = [firing for key, group in groups.items() if key not in digested for firing in group]
    firings_of: dict[str, list[int]] = {}

    def alerts() -> Iterator[Outgoing]:  # made as delivery takes them: a first run alerts thousands
        for firing in sorted(single, key=lambda firing: firing["id"]):
            message = _alert(mailer, portfolio, firing, sender, now)
            firings_of[message.message_id] = [firing["id"]]
            yield message
        zone = ZoneInfo(portfolio.spec.timezone)
        for (run_id, to), group in sorted(digested.items()):
            day = group[0]["fired_at"].astimezone(zone).date()
            message = digest_message(
                mailer, portfolio, group, to=to, sender=sender, ref=f"alerts:{run_id}:{to}", day=day, run_id=run_id
            )
            firings_of[message.message_id] = [firing["id"] for firing in group]
            yield message

    return outcomes + send_alerts(engine, alerts(), firings, firings_of, settings, now)


def _alert(mailer: Mailer, portfolio: Portfolio, firing: dict[str, Any], sender: Sender, now: datetime) -> Outgoing:
    """The owner's alert for one firing (its ``to`` resolved)."""
    line = portfolio.line(firing["product_line"])
    return owner_alert(
        mailer,
        firing_id=firing["id"],
        lead={"key": firing["lead_key"]} | {name: firing[name] for name in LEAD_CONTACT_COLUMNS},
        product_line={"name": line.name, "title": line.spec.title or line.name},
        journey={
            "stage": firing["stage"],
            "score": firing["score"],
            "band": firing["band"],
            "qualification": firing["qualification"],
            "promoted_to": firing["promoted_to"],
        },
        trigger={"name": firing["trigger"], "direction": firing["direction"], "score_before": firing["score_before"]},
        breakdown=_breakdown(firing),
        to=firing["to"],
        sender=sender,
        run_id=firing["run_id"],
        date=now,
        template=json.loads(firing["params"]).get("template", "owner_alert"),
    )


def send_alerts(
    engine: Engine,
    alerts: Iterator[Outgoing],
    firings: list[dict[str, Any]],
    firings_of: dict[str, list[int]],
    settings: Settings,
    now: datetime,
) -> list[Outcome]:
    """Deliver alert emails (``firings_of``: Message-ID → the firings it tells of, filled as ``alerts``
    yields) and say what came of each firing: done, retried by a later run (up to ``MAX_ATTEMPTS``) or
    failed."""
    outcomes: list[Outcome] = []
    attempts_before = {firing["id"]: firing["attempts"] for firing in firings}
    for result in send_messages(engine, alerts, settings, now=now):
        detail = (
            result.status + (f": {result.error}" if result.error else "") + (f" ({result.path})" if result.path else "")
        )
        for firing_id in firings_of[result.message_id]:
            if result.status in ("sent", "unknown", "duplicate"):
                outcomes.append((firing_id, "done", result.attempts, detail, now))
            elif result.retryable and attempts_before[firing_id] + result.attempts < MAX_ATTEMPTS:
                outcomes.append((firing_id, "retry", result.attempts, detail, None))  # e.g. the outbox disk was full
            else:
                outcomes.append((firing_id, "failed", result.attempts, detail, now))
    return outcomes


def request_track_moves(engine: Engine, firings: list[dict[str, Any]]) -> list[Outcome]:
    """Enrol/exit actions become nurture requests, grouped per track and firing time."""
    outcomes: list[Outcome] = []
    groups: dict[tuple[str, str, str, str, datetime], list[dict[str, Any]]] = {}
    for firing in firings:
        track = json.loads(firing["params"])["track"]
        key = (firing["action"], track, firing["trigger"], firing["run_id"], firing["fired_at"])
        groups.setdefault(key, []).append(firing)
    now = datetime.now(UTC)
    for (action, track, trigger, run_id, fired_at), group in groups.items():
        request = request_enrolments if action == "enrol" else request_exits
        request(
            engine, track, [f["lead_key"] for f in group], run_id=run_id, as_of=fired_at, reason=f"trigger: {trigger}"
        )
        outcomes += [(f["id"], "done", 1, f"{action} requested for track {track}", now) for f in group]
    return outcomes


def execute_actions(engine: Engine, portfolio: Portfolio, settings: Settings) -> dict[str, dict[str, int]]:
    """Carry out every open firing; returns counts per action and final status (for the run summary)."""
    firings = read_open_firings(engine, ["notify_owner", "webhook", "chat", "enrol", "exit"]).to_dicts()
    by_action: dict[str, list[dict[str, Any]]] = {}
    for firing in firings:
        by_action.setdefault(firing["action"], []).append(firing)
    alerts = by_action.get("notify_owner", [])
    deadline = settings.webhook_deadline
    daily: list[dict[str, Any]] = []
    immediate: list[dict[str, Any]] = []
    for firing in alerts:
        (daily if is_digest(firing) else immediate).append(firing)
    outcomes = (
        send_digests(engine, portfolio, daily, sender_for(portfolio, settings.mail_from), settings, datetime.now(UTC))
        + notify_owners(engine, portfolio, immediate, settings)
        + run_webhooks(by_action.get("webhook", []), deadline_s=deadline, budget_s=settings.webhook_budget)
        + post_to_chats(by_action.get("chat", []), deadline_s=deadline, budget_s=settings.webhook_budget)
        + request_track_moves(engine, by_action.get("enrol", []) + by_action.get("exit", []))
    )
    record_firing_outcomes(engine, outcomes)
    action_of = {firing["id"]: firing["action"] for firing in firings}
    counts: dict[str, Counter[str]] = {}
    for firing_id, status, *_ in outcomes:
        counts.setdefault(action_of[firing_id], Counter())[status] += 1
    return {action: dict(counter) for action, counter in sorted(counts.items())}
