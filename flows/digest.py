"""Owner digests: one email per owner per day listing the leads whose triggers fired for them.

A ``notify_owner`` action with ``digest: "08:00"`` does not email per firing: its firings stay open
until the first run at or after that time of day (the portfolio's time zone), which sends each owner
(the lead's ``owner_email``, or the action's ``to``) one message listing the leads with their stage,
score, qualification and top three reasons. The Message-ID derives from ``digest:<owner>:<day>``, so a
re-run the same day never sends a second digest; firings that arrive after it wait for the next day.
"""

import json
from collections.abc import Iterator
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from flows.mailing import send_messages
from nurture.mail import Mailer, Sender, lead_context
from nurture.messages import Outgoing, compose, message_id_for
from stages.portfolio import Portfolio
from store.outbox import SqlOutbox
from store.settings import Settings

Outcome = tuple[int, str, int, str, datetime | None]


def is_digest(firing: dict[str, Any]) -> bool:
    return json.loads(firing["params"]).get("digest") is not None


def send_digests(
    engine: Engine,
    portfolio: Portfolio,
    firings: list[dict[str, Any]],
    sender: Sender,
    settings: Settings,
    now: datetime,
) -> list[Outcome]:
    """Digest the open firings whose digest time has come today; the others stay open (no outcome)."""
    zone = ZoneInfo(portfolio.spec.timezone)
    local = now.astimezone(zone)
    due: dict[str, list[dict[str, Any]]] = {}
    outcomes: list[Outcome] = []
    for firing in firings:
        params = json.loads(firing["params"])
        if local.time() < time.fromisoformat(params["digest"]):
            continue
        to = params.get("to") or firing["owner_email"]
        if not to:
            outcomes.append((firing["id"], "failed", 0, "the lead has no owner_email and the trigger no 'to'", now))
            continue
        due.setdefault(to, []).append(firing)
    day = local.date()
    refs = {to: message_id_for("owner_alert", f"digest:{to}:{day.isoformat()}", sender.domain) for to in due}
    already = SqlOutbox(engine).statuses(list(refs.values()))
    due = {to: group for to, group in due.items() if refs[to] not in already}  # today's went: wait for tomorrow
    if not due:
        return outcomes
    mailer = Mailer.for_portfolio(portfolio.path)
    firings_of: dict[str, list[int]] = {}

    def digests() -> Iterator[Outgoing]:
        for to, group in sorted(due.items()):
            ref = f"digest:{to}:{day.isoformat()}"
            message = digest_message(mailer, portfolio, group, to=to, sender=sender, ref=ref, day=day)
            firings_of[message.message_id] = [firing["id"] for firing in group]
            yield message

    for result in send_messages(engine, digests(), settings, now=now):
        ok = result.status in ("sent", "unknown", "duplicate")
        detail = f"digest {result.status}" + (f": {result.error}" if result.error else "")
        outcomes += [
            (firing_id, "done" if ok else "failed", 1, detail, now) for firing_id in firings_of[result.message_id]
        ]
    return outcomes


def digest_message(
    mailer: Mailer,
    portfolio: Portfolio,
    group: list[dict[str, Any]],
    *,
    to: str,
    sender: Sender,
    ref: str,
    day: date,
    run_id: str | None = None,
) -> Outgoing:
    """One ``owner_digest`` email to ``to`` listing the leads of ``group`` (open firings) with their top three
    reasons; ``run_id`` names the scoring run whose alerts it gathers (``flows.actions``), None for the
    daily digest. Its Message-ID derives from ``ref``."""
    leads = []
    for firing in group:
        breakdown = json.loads(firing["breakdown"]) if firing["breakdown"] else []
        reasons = sorted((e for e in breakdown if e.get("points", 0) > 0), key=lambda e: -e["points"])[:3]
        name = " ".join(part for part in (firing["first_name"], firing["last_name"]) if part) or firing["lead_id"]
        line = portfolio.line(firing["product_line"])
        leads.append(
            {
                "lead_id": firing["lead_id"], "name": name, "company": firing["company"], "trigger": firing["trigger"],
                "product_line": line.spec.title or line.name, "stage": firing["stage"], "score": firing["score"],
                "qualification": firing["qualification"], "reasons": reasons,
            }
        )  # fmt: skip
    first = group[0]
    context = {
        "lead": lead_context(
            {name: first[name] for name in ("lead_id", "email", "first_name", "last_name", "company")}
        ),
        "leads": leads,
        "day": day.isoformat(),
        "run_id": run_id,
    }
    return compose(
        mailer, "owner_digest", context, kind="owner_alert", ref=ref,
        lead_key=int(first["lead_key"]), run_id=first["run_id"], to=to, sender=sender,
    )  # fmt: skip
