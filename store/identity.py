"""Whose events count: the alias mapping (merged leads) and the visitor links, applied when reading.

Events stay where they were written. A run reads the mapping once (``read_identity``) and lays it over
each partition's events (``attach``): a merged lead's events move to its final survivor's key, a linked
visitor's anonymous events join its lead's with their original times. The event cache keeps the raw
log, so its change detection is untouched and a merge or an unmerge shows at the next read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl
from sqlalchemy import Engine, text

from store.reader import read_events, read_frame
from store.tables import to_micros

_PAIRS = {"merged_key": pl.Int64(), "survivor_key": pl.Int64()}


@dataclass(frozen=True)
class Identity:
    """``aliases``: ``merged_key → survivor_key`` (final survivor, chains resolved); ``visitors``:
    ``anonymous_id → lead_key`` (resolved through the aliases); ``hidden``: survivor journeys that a
    merge opened and that do not exist at the time read (a replay before the merge)."""

    aliases: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_PAIRS))
    visitors: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema={"anonymous_id": pl.Utf8(), "lead_key": pl.Int64()})
    )
    hidden: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return self.aliases.is_empty() and self.visitors.is_empty()

    def survivor(self, key: int) -> int:
        """The key whose journeys count for ``key`` (itself when it is no alias)."""
        found = self.aliases.filter(pl.col("merged_key") == key)["survivor_key"]
        return int(found[0]) if len(found) else key


class MergeCycle(ValueError):
    """Aliases that lead back to where they started; ``keys`` in the order of the loop."""

    def __init__(self, keys: list[int]) -> None:
        super().__init__(f"merge cycle: {' → '.join(map(str, keys))}")
        self.keys = keys


def resolve_chains(pairs: Sequence[tuple[int, int]]) -> dict[int, int]:
    """``merged → final survivor`` for pairs that may chain (a → b, b → c gives a → c and b → c)."""
    direct = dict(pairs)
    final: dict[int, int] = {}
    for start in direct:
        seen, key = [start], direct[start]
        while key in direct:
            if key in seen:
                raise MergeCycle([*seen[seen.index(key) :], key])
            seen.append(key)
            key = direct[key]
        final[start] = key
    return final


def read_identity(engine: Engine, as_of: datetime | None = None) -> Identity:
    """The mapping in force now (``as_of`` None: the current merges and links), or at ``as_of`` (a
    replay: merges made by then and not undone by then, links made by then)."""
    t = {"t": to_micros(as_of)} if as_of is not None else {}
    in_force = "merged_at <= :t AND (unmerged_at IS NULL OR unmerged_at > :t)" if t else "unmerged_at IS NULL"
    rows = read_frame(engine, f"SELECT merged_key, survivor_key FROM lead_aliases WHERE {in_force}", t, _PAIRS)
    final = resolve_chains(rows.rows())
    aliases = pl.DataFrame({"merged_key": list(final), "survivor_key": list(final.values())}, schema=_PAIRS)
    linked = read_frame(
        engine,
        "SELECT anonymous_id, lead_key FROM visitor_links" + (" WHERE linked_at <= :t" if t else ""),
        t,
        {"anonymous_id": pl.Utf8(), "lead_key": pl.Int64()},
    )
    hidden: tuple[int, ...] = ()
    if t:
        later = read_frame(
            engine, "SELECT CAST(undo AS TEXT) AS undo FROM lead_aliases WHERE merged_at > :t", t, {"undo": pl.Utf8()}
        )
        hidden = tuple(j for (undo,) in later.rows() for j in _opened(undo))
    return Identity(aliases, remap(linked, aliases, "lead_key"), hidden)


def _opened(undo: str) -> list[int]:
    import json

    return [int(j) for j in json.loads(undo).get("opened", [])]


def remap(frame: pl.DataFrame, aliases: pl.DataFrame, column: str = "lead_key") -> pl.DataFrame:
    """``frame`` with ``column`` (lead keys) replaced by their final survivors."""
    if aliases.is_empty() or frame.is_empty():
        return frame
    mapping = aliases.rename({"merged_key": column, "survivor_key": "_survivor"})
    joined = frame.join(mapping, on=column, how="left", maintain_order="left")
    return joined.with_columns(pl.coalesce("_survivor", column).alias(column)).drop("_survivor")


def visible_journeys(journeys: pl.DataFrame, identity: Identity) -> pl.DataFrame:
    """The journeys a run scores: not those of merged leads, nor survivor journeys not yet opened by a merge."""
    if identity.aliases.is_empty() and not identity.hidden:
        return journeys
    return journeys.filter(
        ~pl.col("lead_key").is_in(identity.aliases["merged_key"].implode())
        & ~pl.col("journey_id").is_in(list(identity.hidden))
    )


def attach(
    engine: Engine,
    events: pl.DataFrame,
    key_range: tuple[int, int],
    identity: Identity,
    types: Sequence[str],
    properties: Sequence[str],
) -> pl.DataFrame:
    """A partition's raw events (``read_events`` shape) as they count: merged leads' events under their
    survivors (read from wherever they were written), linked visitors' events under their leads; in
    ``(lead_key, occurred_at)`` order."""
    if identity.empty:
        return events
    lo, hi = key_range
    in_range = pl.col("survivor_key").is_between(lo, hi, closed="left")
    incoming = identity.aliases.filter(in_range)
    parts = [events.filter(~pl.col("lead_key").is_in(identity.aliases["merged_key"].implode()))]
    if not incoming.is_empty():
        moved = read_events(engine, None, None, types, properties, lead_keys=incoming["merged_key"].to_list())
        parts.append(remap(moved, incoming))
    visitors = identity.visitors.filter(pl.col("lead_key").is_between(lo, hi, closed="left"))
    if not visitors.is_empty():
        anonymous = read_events(engine, None, None, types, properties, anonymous_ids=visitors["anonymous_id"].to_list())
        parts.append(anonymous.join(visitors, on="anonymous_id", how="inner").select(events.columns))
    if len(parts) == 1:
        return parts[0]
    return pl.concat(parts).sort("lead_key", "occurred_at", maintain_order=True)


def alias_sent_steps(engine: Engine) -> pl.DataFrame:
    """``lead_key, track, step`` of the nurture emails sent to leads now merged, under their final
    survivor: a step one of them got counts as sent for the survivor."""
    identity = read_identity(engine)
    if identity.aliases.is_empty():
        return pl.DataFrame(schema={"lead_key": pl.Int64(), "track": pl.Utf8(), "step": pl.Int64()})
    sent = read_frame(
        engine,
        "SELECT DISTINCT n.lead_key, n.track, s.step FROM nurture_steps s "
        "JOIN nurture_enrolments n ON n.id = s.enrolment_id "
        "JOIN lead_aliases a ON a.merged_key = n.lead_key AND a.unmerged_at IS NULL WHERE s.action = 'email'",
        {},
        {"lead_key": pl.Int64(), "track": pl.Utf8(), "step": pl.Int64()},
    )
    return remap(sent, identity.aliases).unique()


def purge_anonymous(engine: Engine, before: datetime) -> int:
    """Delete the anonymous events older than ``before`` of visitors linked to no lead; returns how many.
    A linked visitor's events are the lead's history now: they stay."""
    with engine.begin() as conn:
        return conn.execute(
            text(
                "DELETE FROM anonymous_events WHERE occurred_at < :t "
                "AND anonymous_id NOT IN (SELECT anonymous_id FROM visitor_links)"
            ),
            {"t": to_micros(before)},
        ).rowcount


def linked_lead(engine: Engine, anonymous_id: str) -> str | None:
    """The ``lead_id`` a visitor is linked to now (the final survivor when that lead was merged), or None."""
    with engine.connect() as conn:
        key = conn.execute(
            text("SELECT lead_key FROM visitor_links WHERE anonymous_id = :a"), {"a": anonymous_id}
        ).scalar_one_or_none()
        seen: set[int] = set()
        while key is not None and key not in seen:
            seen.add(key)
            survivor = conn.execute(
                text("SELECT survivor_key FROM lead_aliases WHERE merged_key = :k AND unmerged_at IS NULL"), {"k": key}
            ).scalar_one_or_none()
            if survivor is None:
                return conn.execute(text("SELECT lead_id FROM leads WHERE key = :k"), {"k": key}).scalar_one_or_none()
            key = survivor
    return None
