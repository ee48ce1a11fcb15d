"""Settled partitions: a (product line, lead partition) whose inputs are exactly those its last run left
behind is not scored again.

A run is a pure function of its inputs (the line's models, ``as_of``, the partition's journeys, leads,
events, pending CRM updates, trigger arms and milestones, the merges and visitor links), and scoring
its own outcome again at the same ``as_of`` changes nothing. So after a partition is written, the
state the next run will read is derived from what was read and what was written (nothing read back:
a write by anyone else in between makes the next read differ), and its digest is kept with the
partition's summary. A run whose digest of what it reads equals the kept one returns that summary
instead of scoring. What the digest cannot see is never skipped: events of merged or linked visitors
come from outside the partition, so a partition with any of them is always scored. Events are known
by the database's change log (``store.change_log``), read before the events themselves, so a write
racing a run makes the next run score, never skip.

The digests live beside the event cache (``settled/`` in its folder): delete them at any time.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine

from store import event_cache, partitions
from store.change_log import ensure_tracking, generations_params, generations_query
from store.identity import Identity
from store.reader import read_frame
from store.shapes import UTC_US

FORMAT = 1
"""Bump when what a run reads or how it scores changes in a way the digest does not name."""


@dataclass(frozen=True)
class PartitionState:
    """What a run reads of one (product line, partition), besides its events: ``journeys`` as stored
    (``store.scores.read_journeys``, merged leads' included), ``leads`` (``read_leads``), pending
    ``updates``, trigger ``armed`` rows and ``reached`` milestones (``store.stages``' reads)."""

    journeys: pl.DataFrame
    leads: pl.DataFrame
    updates: pl.DataFrame
    armed: pl.DataFrame
    reached: pl.DataFrame

    def after(
        self,
        *,
        moved: pl.DataFrame,
        changed: pl.DataFrame,
        applied_updates: Sequence[int],
        arms: pl.DataFrame,
        milestones: pl.DataFrame,
    ) -> PartitionState:
        """The state the next run reads once this run's writes (``store.stages.write_partition``'s) are
        stored: journeys moved and rescored, updates applied, arms upserted, milestones added."""
        journeys = _overwrite(self.journeys, moved, ("stage", "stage_entered_at", "score_from", "status", "entered_by"))
        journeys = _overwrite(journeys, changed, ("score", "band", "qualification"))
        last_arms = arms.unique(["journey_id", "trigger"], keep="last", maintain_order=True)
        armed = pl.concat(
            [
                self.armed.join(last_arms, on=["journey_id", "trigger"], how="anti"),
                last_arms.select(pl.col(name).cast(dtype) for name, dtype in self.armed.schema.items()),
            ]
        )
        reached = pl.concat(
            [self.reached, milestones.select(pl.col(n).cast(t) for n, t in self.reached.schema.items())]
        ).unique()
        updates = self.updates.filter(~pl.col("id").is_in(list(applied_updates)))
        return PartitionState(journeys, self.leads, updates, armed, reached)


def _overwrite(frame: pl.DataFrame, new: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """``frame`` with ``columns`` replaced by ``new``'s values on the rows (``journey_id``) it names."""
    if new.is_empty():
        return frame
    values = new.select("journey_id", *(pl.col(name).cast(frame.schema[name]) for name in columns))
    return frame.update(values, on="journey_id", how="left", include_nulls=True)


def line_context(
    portfolio_parts: Sequence[str], line_parts: Sequence[str], artifacts: Sequence[Path], as_of: datetime
) -> str:
    """What a partition's outcome depends on besides its data: the serialised specs, the model artifacts'
    bytes, ``as_of`` (every time-dependent rule moves with it), and the code that scores."""
    digest = hashlib.sha256()
    for part in [*portfolio_parts, *line_parts, as_of.isoformat(), str(FORMAT), _version(), pl.__version__]:
        digest.update(part.encode())
        digest.update(b"\0")
    for path in artifacts:
        digest.update(path.read_bytes() if path.is_file() else b"missing")
    return digest.hexdigest()


def _version() -> str:
    try:
        return metadata.version("leadscore")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class PartitionDigest:
    """Digests of one (product line, partition)'s reads for a run: the change log's counters (read before
    the events) and the identity mapping are fixed when it is made; the state is given to each digest."""

    path: Path
    context: str
    fixed: tuple[pl.DataFrame, ...]

    @classmethod
    def of(
        cls, engine: Engine, line_name: str, key_range: tuple[int, int], context: str, identity: Identity
    ) -> PartitionDigest | None:
        """None when the digest cannot see everything the run reads: events of merged leads or linked
        visitors come from outside the range; a range too small for the event cache is not kept either."""
        lo, hi = key_range
        if hi - lo < partitions.CACHE_MIN_KEYS or not event_cache.supported(engine):
            return None
        incoming = identity.aliases.filter(pl.col("survivor_key").is_between(lo, hi, closed="left"))
        linked = identity.visitors.filter(pl.col("lead_key").is_between(lo, hi, closed="left"))
        if not incoming.is_empty() or not linked.is_empty():
            return None
        merged = identity.aliases.filter(pl.col("merged_key").is_between(lo, hi, closed="left"))
        path = _folder(engine) / _file_name(line_name, key_range)
        return cls(path, context, (_generations(engine, key_range), merged))

    def digest(self, state: PartitionState) -> str:
        digest = hashlib.sha256(self.context.encode())
        for frame in [*self.fixed, *(getattr(state, name) for name in PartitionState.__dataclass_fields__)]:
            digest.update(_frame_digest(frame))
        return digest.hexdigest()

    def kept_summary(self, state: PartitionState) -> dict[str, Any] | None:
        """The summary kept with the last run's digest when ``state`` has that digest; else None."""
        try:
            kept = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if kept.get("context") != self.context:  # another as_of or portfolio: no need to hash the state
            return None
        return kept["summary"] if kept.get("digest") == self.digest(state) else None

    def forget(self) -> None:
        """Drop the kept digest before writing: a crash between the write and ``settle`` must not leave
        an older digest that a later state could match."""
        self.path.unlink(missing_ok=True)

    def settle(self, left: PartitionState, summary: dict[str, Any]) -> None:
        """Keep the digest of the state the run ``left`` (``PartitionState.after``) with its summary, written
        atomically once the run's transaction has committed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
        try:
            kept = {"context": self.context, "digest": self.digest(left), "summary": summary}
            temporary.write_text(json.dumps(kept))
            os.replace(temporary, self.path)
        finally:
            temporary.unlink(missing_ok=True)


def keep_only(engine: Engine, partitions_now: Sequence[tuple[str, tuple[int, int]]]) -> None:
    """Delete the digests of (line, key range) pairs a run no longer has: ranges move as leads arrive."""
    if not event_cache.supported(engine):
        return
    kept = {_file_name(line_name, key_range) for line_name, key_range in partitions_now}
    for path in _folder(engine).glob("*.json"):
        if path.name not in kept:
            path.unlink(missing_ok=True)


def _folder(engine: Engine) -> Path:
    return event_cache.cache_dir(engine) / "settled"


def _file_name(line_name: str, key_range: tuple[int, int]) -> str:
    return f"{hashlib.sha256(line_name.encode()).hexdigest()[:16]}-{key_range[0]}-{key_range[1]}.json"


def _generations(engine: Engine, key_range: tuple[int, int]) -> pl.DataFrame:
    """The change log's counters of the range's leads, with the tracking epoch (installed if missing)."""
    epoch = ensure_tracking(engine)
    frame = read_frame(
        engine,
        generations_query(),
        generations_params(key_range),
        {"lead_key": pl.Int64(), "generation": pl.Int64()},
    )
    return frame.with_columns(pl.lit(epoch).alias("epoch"))


def _frame_digest(frame: pl.DataFrame) -> bytes:
    """Order-independent digest of a frame's rows (times as epoch microseconds), with its column names."""
    canonical = frame.select(
        pl.col(name).cast(UTC_US).dt.epoch("us") if isinstance(dtype, pl.Datetime) else pl.col(name)
        for name, dtype in sorted(frame.schema.items())
    )
    names = json.dumps([[name, str(dtype)] for name, dtype in canonical.schema.items()]).encode()
    hashes = canonical.hash_rows(seed=0).sort()
    return hashlib.sha256(names + hashes.to_numpy().tobytes()).digest()
