"""The shapes that cross the store/domain boundary, named once.

The domain rooms build frames the store writes (transitions, milestones, arm rows, firings, score
breakdowns) and read frames the store returns; both sides name those shapes from here, so a column
added on one side cannot silently go missing on the other. Plain data only: no table, no engine.
"""

import functools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import polars as pl

DataType = pl.DataType | type[pl.DataType]

# Every time in a frame: timezone-aware UTC in microseconds (the store keeps epoch microseconds).
UTC_US = pl.Datetime("us", "UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def empty_frame(schema: Mapping[str, DataType]) -> pl.DataFrame:
    """``pl.DataFrame(schema=schema)``, cleared from one made once per schema: Polars spends ≈ 0.3 ms of
    Python building a frame's schema, which a ``fresh=true`` look-up paid for each empty result."""
    return _empty_frame(tuple(schema.items())).clear()


@functools.lru_cache(maxsize=256)
def _empty_frame(columns: tuple[tuple[str, DataType], ...]) -> pl.DataFrame:
    return pl.DataFrame(schema=dict(columns))


def utc_instant(when: datetime) -> pl.Expr:
    """``pl.lit(when).cast(UTC_US)`` (a naive ``when`` taken as UTC), built from its epoch microseconds:
    ``pl.lit`` of an aware datetime runs two small Polars queries (≈ 0.13 ms), which a ``fresh=true``
    look-up paid five times."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return pl.lit((aware - _EPOCH) // timedelta(microseconds=1), pl.Int64).cast(UTC_US)


# The lead's own text columns (table ``leads``, ingestion's ``LeadRow``); every other column of a
# leads file is a free attribute kept in ``attributes``.
LEAD_COLUMNS = (
    "lead_id",
    "email",
    "first_name",
    "last_name",
    "phone",
    "company",
    "city",
    "state",
    "zip",
    "country",
    "owner_email",
)
# What an ad audience may carry about a lead: its own columns but the salesperson's address.
AUDIENCE_LEAD_COLUMNS = tuple(name for name in LEAD_COLUMNS if name != "owner_email")
# What a trigger action (owner alert, webhook) says about the lead.
LEAD_CONTACT_COLUMNS = ("lead_id", "email", "first_name", "last_name", "company", "owner_email")

# A lead's events as the scoring engine reads them (``store.reader``); ``properties`` is the JSON text.
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "lead_key": pl.Int64(),
    "occurred_at": UTC_US,
    "type": pl.Utf8(),
    "product_line": pl.Utf8(),
    "machine": pl.Boolean(),
    "properties": pl.Utf8(),
}

# A score's explanation: each rule that gave points, in rule order; the entries sum to the score.
BREAKDOWN_TYPE = pl.List(pl.Struct({"rule": pl.Utf8, "points": pl.Float64}))

# A journey moving between stages, as ``stages.transitions`` decides it and ``stage_transitions`` keeps it.
TRANSITION_SCHEMA: dict[str, pl.DataType] = {
    "journey_id": pl.Int64(),
    "lead_key": pl.Int64(),
    "from_stage": pl.Utf8(),
    "to_stage": pl.Utf8(),
    "at": UTC_US,
    "reason": pl.Utf8(),  # threshold | external
    "source": pl.Utf8(),  # who moved it (external updates)
    "score_before": pl.Float64(),  # the score in from_stage that led to the move (external: the last known one)
    "score_after": pl.Float64(),  # the score in to_stage once rescored (filled by ``advance``)
    "score_from": UTC_US,  # the journey's new score_from (the entry policy applied)
    "status": pl.Utf8(),  # the journey's new status
}
# A stage change reported by the CRM, not yet applied by a run.
STAGE_UPDATE_SCHEMA: dict[str, pl.DataType] = {
    "lead_key": pl.Int64(),
    "stage": pl.Utf8(),
    "changed_at": UTC_US,
    "source": pl.Utf8(),
}
# Whether a (journey, trigger) may fire, and when that was last written.
ARM_SCHEMA: dict[str, pl.DataType] = {
    "journey_id": pl.Int64(),
    "trigger": pl.Utf8(),
    "armed": pl.Boolean(),
    "as_of": UTC_US,
}
# One action of a trigger that fired in a run (what ``stages.triggers.fire`` returns).
FIRING_SCHEMA: dict[str, pl.DataType] = {
    "journey_id": pl.Int64(),
    "lead_key": pl.Int64(),
    "trigger": pl.Utf8(),
    "step": pl.Int32(),
    "direction": pl.Utf8(),  # up | down | reached | entered
    "action_index": pl.Int32(),
    "action": pl.Utf8(),  # notify_owner | tag | untag | enrol | exit | webhook
    "params": pl.Utf8(),  # the action's arguments, JSON
    "stage": pl.Utf8(),
    "score": pl.Float64(),
    "score_before": pl.Float64(),
    # The state that crossed: what an alert or a webhook describes.
    "band": pl.Utf8(),
    "qualification": pl.Utf8(),
    "breakdown": BREAKDOWN_TYPE,
    "armed_at": pl.Int64(),  # the crossing: when the trigger was armed (epoch µs of its arm row; 0: always)
}
FIRING_STATE_COLUMNS = ("band", "qualification", "breakdown")
# A qualification a journey reached for the first time (sticky: never lost by a later reset).
MILESTONE_SCHEMA: dict[str, pl.DataType] = {
    "journey_id": pl.Int64(),
    "lead_key": pl.Int64(),
    "qualification": pl.Utf8(),
    "threshold": pl.Float64(),
    "reached_at": UTC_US,
    "stage": pl.Utf8(),
    "score": pl.Float64(),
    "step": pl.Int32(),
}
