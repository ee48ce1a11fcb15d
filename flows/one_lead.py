"""One lead outside a run: rescored now (after a manual adjustment) or replayed as of a past time."""

import uuid
from datetime import UTC, datetime
from typing import Any

from flows.database import engine_for
from flows.locking import writing
from flows.scoring import line_outcome, score_partition
from stages.portfolio import Portfolio
from store import partitions
from store.scores import finish_run, start_run
from store.stages import read_reached


def rescore_lead(
    portfolio: Portfolio, lead_id: str, product_line: str, database_url: str, lock_wait_s: float = 0.0
) -> float | None:
    """Rescore one lead's journey now (after a manual adjustment), outside a flow run, under the run lock."""
    from sqlmodel import Session

    from store.queries import lead_key_of

    engine = engine_for(database_url)
    with Session(engine) as session:
        key = lead_key_of(session, lead_id)
    if key is None:
        return None
    as_of = datetime.now(UTC)
    with writing(engine, portfolio, lock_wait_s) as scope:
        run_id = start_run(engine, "adjust", as_of, scope)
        token = uuid.uuid4().hex
        result = score_partition.fn(portfolio, product_line, (key, key + 1), as_of, run_id, token, database_url)
        partitions.shared_partition_reads.release(token)
        finish_run(engine, run_id, "completed", {"scored": result.scored, "changed": result.changed})
    return result.top[0]["score"] if result.top else None


def lead_as_of(
    portfolio: Portfolio, lead_id: str, as_of: datetime, database_url: str, product_line: str | None = None
) -> dict[str, Any] | None:
    """One lead's journeys as of ``as_of``, replayed like ``score --as-of``: stage, entry, status, score,
    band, current qualification level, breakdown and the milestones reached by then; None for an
    unknown lead. Read-only."""
    from sqlmodel import Session

    from store.queries import lead_key_of

    engine = engine_for(database_url)
    with Session(engine) as session:
        key = lead_key_of(session, lead_id)
    if key is None:
        return None
    token = uuid.uuid4().hex
    journeys = []
    try:
        for name in [product_line] if product_line else list(portfolio.product_lines):
            found = line_outcome(engine, portfolio, name, (key, key + 1), as_of, read_token=token, replay=True)
            if found is None:
                continue
            outcome = found[2]
            state = outcome.journeys.row(0, named=True)
            scored = outcome.scored.to_dicts()
            current = scored[0] if scored else {**state, "breakdown": []}
            reached = read_reached(engine, name, (key, key + 1), as_of)["qualification"].to_list()
            journeys.append(
                {
                    "product_line": name,
                    "stage": state["stage"],
                    "status": state["status"],
                    "stage_entered_at": state["stage_entered_at"],
                    "score": current["score"],
                    "band": current["band"],
                    "qualification": current["qualification"],
                    "milestones": reached + outcome.milestones["qualification"].to_list(),
                    "breakdown": current["breakdown"],
                }
            )
    finally:
        partitions.shared_partition_reads.release(token)
    return {"lead_id": lead_id, "as_of": as_of, "journeys": journeys}
