"""Event types that few events have and that are read by type alone, over the whole store: nurture's
suppressions and the report's served content. A partial index holds just them (``ix_events_sparse_type``,
migration 0022), so those reads seek instead of scanning every event, and bulk loads of the common types
(page views, email events) write nothing into it. Its condition is an OR of equalities, not an ``IN`` list:
SQLite evaluates the index's condition for every inserted row, and an ``IN`` list there cost 0.65 of 5.5
CPU s of inserting 1M plain events, the equalities next to nothing (migration 0026)."""

from collections.abc import Sequence

SPARSE_EVENT_TYPES = ("unsubscribe", "resubscribe", "spam_complaint", "email_bounce", "content_served")


def sparse_types_term(alias: str = "") -> str:
    """The partial index's own condition (``alias`` qualifies the column)."""
    return "(" + " OR ".join(f"{alias}type = '{kind}'" for kind in SPARSE_EVENT_TYPES) + ")"


def of_sparse_types(types: Sequence[str], alias: str = "") -> str:
    """A WHERE term for the events of ``types`` (some of ``SPARSE_EVENT_TYPES``) that both databases answer
    from the partial index: SQLite uses one only when the query repeats the index's own term, so that term
    comes first and the narrower one after it."""
    unknown = set(types) - set(SPARSE_EVENT_TYPES)
    if unknown:
        raise ValueError(f"not sparse event types: {sorted(unknown)}")
    wanted = ", ".join(f"'{kind}'" for kind in types)
    return f"{sparse_types_term(alias)} AND {alias}type IN ({wanted})"
