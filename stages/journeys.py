"""Journeys open when a lead first shows interest in a product line; they start in its first stage."""

from datetime import datetime
from typing import Any

from stages.portfolio import Portfolio


def new_journeys(portfolio: Portfolio, interests: list[tuple[int, str, datetime]]) -> list[dict[str, Any]]:
    """Journey rows for each (lead, product line) interest, earliest time first; unknown lines are skipped."""
    first_seen: dict[tuple[int, str], datetime] = {}
    for lead_key, line, at in interests:
        if line in portfolio.product_lines and (
            (lead_key, line) not in first_seen or at < first_seen[(lead_key, line)]
        ):
            first_seen[(lead_key, line)] = at
    return [
        {
            "lead_key": lead_key,
            "product_line": line,
            "stage": portfolio.line(line).first_stage.name,
            "opened_at": at,
        }
        for (lead_key, line), at in first_seen.items()
    ]
