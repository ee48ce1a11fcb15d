"""Carry out the actions of trigger firings after the scoring transactions committed.

Firings are recorded ``pending`` in the same transaction as the scores that caused them, so a crash
between scoring and delivery loses nothing: the next run picks up whatever is still open. Tag actions
never get here (they are applied inside the scoring transaction); webhooks are POSTed with retries;
an endpoint that keeps failing is retried by later runs up to ``MAX_WEBHOOK_ATTEMPTS`` and then left
``failed`` with its last outcome: it never blocks a run.
"""

import json
import os
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from nurture.webhooks import WebhookCall, post_all
from store.stages import read_open_firings, record_firing_outcomes

MAX_WEBHOOK_ATTEMPTS = 9


def webhook_payload(firing: dict[str, Any]) -> dict[str, Any]:
    """What a receiver gets: the trigger, the journey's state and who the lead is."""
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
        "lead": {
            "lead_id": firing["lead_id"],
            "email": firing["email"],
            "first_name": firing["first_name"],
            "last_name": firing["last_name"],
            "company": firing["company"],
            "owner_email": firing["owner_email"],
        },
    }


def run_webhooks(engine: Engine, *, timeout_s: float = 10.0, backoff_s: float = 0.5) -> Counter[str]:
    """POST every open webhook firing; returns how many ended ``done``, ``retry`` and ``failed``."""
    firings = read_open_firings(engine, ["webhook"]).to_dicts()
    calls, outcomes, statuses = [], [], Counter[str]()
    for firing in firings:
        params = json.loads(firing["params"])
        secret_env = params.get("secret_env")
        secret = os.environ.get(secret_env) if secret_env else None
        if secret_env and not secret:
            # A configuration problem: keep it open so that setting the variable lets a later run deliver.
            outcomes.append((firing["id"], "retry", 0, f"environment variable {secret_env} is not set", None))
            statuses["retry"] += 1
            continue
        calls.append((firing, WebhookCall(str(firing["id"]), params["url"], webhook_payload(firing), secret)))
    results = post_all([call for _, call in calls], timeout_s=timeout_s, backoff_s=backoff_s)
    now = datetime.now(UTC)
    for (firing, _), result in zip(calls, results, strict=True):
        if result.ok:
            status = "done"
        elif result.retryable and firing["attempts"] + result.attempts < MAX_WEBHOOK_ATTEMPTS:
            status = "retry"
        else:
            status = "failed"
        statuses[status] += 1
        outcomes.append((firing["id"], status, result.attempts, result.outcome, now if status != "retry" else None))
    record_firing_outcomes(engine, outcomes)
    return statuses


def execute_actions(engine: Engine) -> dict[str, dict[str, int]]:
    """Carry out every open firing; returns counts per action and status (for the run summary)."""
    return {"webhook": dict(run_webhooks(engine))}
