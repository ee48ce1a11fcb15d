"""Trigger firings as chat messages: Slack and Microsoft Teams incoming webhooks.

Slack's incoming webhooks take ``{"text": …, "blocks": […]}`` (``text`` is the notification's fallback,
Block Kit ``section``/``fields`` the message); Teams' (Workflows "post to a channel when a webhook
request is received") take a ``message`` whose attachment is an Adaptive Card 1.4 with a ``TextBlock``
title and a ``FactSet``. The webhook URL is a secret (anyone holding it can post): the portfolio names
the environment variable that holds it.
"""

from __future__ import annotations

from typing import Any


def _facts(firing: dict[str, Any]) -> list[tuple[str, str]]:
    reasons = sorted((entry for entry in firing["breakdown"] if entry.get("points", 0) > 0), key=lambda e: -e["points"])
    lead = firing["lead"]
    name = " ".join(part for part in (lead.get("first_name"), lead.get("last_name")) if part) or lead["lead_id"]
    return [
        ("Lead", f"{name} ({lead['lead_id']})" + (f", {lead['company']}" if lead.get("company") else "")),
        ("Product line", str(firing["product_line"])),
        ("Stage", str(firing["stage"])),
        (
            "Score",
            f"{firing['score']:.1f}"
            + (f" (was {firing['score_before']:.1f})" if firing["score_before"] is not None else ""),
        ),
        ("Band", str(firing["band"] or "–")),
        ("Top reasons", ", ".join(f"{e['rule']} (+{e['points']:g})" for e in reasons[:3]) or "–"),
    ]


def _title(firing: dict[str, Any]) -> str:
    return f"Trigger {firing['trigger']}: {firing['lead']['lead_id']} {firing['direction'] or ''}".strip()


def slack_message(firing: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook body for a firing (``webhook_payload``'s shape)."""
    fields = [{"type": "mrkdwn", "text": f"*{name}*\n{_escape(value)}"} for name, value in _facts(firing)]
    return {
        "text": _title(firing),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _title(firing)[:150]}},
            {"type": "section", "fields": fields},
        ],
    }


def teams_message(firing: dict[str, Any]) -> dict[str, Any]:
    """A Microsoft Teams (Workflows) webhook body: an Adaptive Card with the firing's facts."""
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": _title(firing), "weight": "Bolder", "size": "Medium", "wrap": True},
            {"type": "FactSet", "facts": [{"title": name, "value": value} for name, value in _facts(firing)]},
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def _escape(text: str) -> str:
    """Slack mrkdwn's three control characters (its documented escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
