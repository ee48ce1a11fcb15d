"""The frame vocabulary every scorer shares (points or probability): the result's shape, a breakdown
entry computed as a column, event times as UTC microseconds, named values read from a column or from a
JSON text column, and the per-model cache of compiled expressions."""

import re
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import polars as pl

from store.shapes import BREAKDOWN_TYPE, UTC_US

DAY_US = 86_400_000_000
RESULT_SCHEMA = {"lead_key": pl.Int64, "score": pl.Float64, "breakdown": BREAKDOWN_TYPE}
COMPILED_LIMIT = 1024  # entries kept before the cache starts again (models built on the fly come and go)

T = TypeVar("T")
_compiled: dict[tuple[int, Hashable], tuple[object, object]] = {}


def compiled(owner: object, key: Hashable, build: Callable[[], T]) -> T:
    """``build()`` once per (``owner``, ``key``), then the same value.

    A model's expressions depend only on the model and the shape of its input frames (``key``), and
    building them costs more than running them on one lead's rows (a ``fresh=true`` look-up). Keyed by
    identity: models are frozen but hold dicts (unhashable); the entry keeps its owner alive, so the
    ``id`` cannot be reused while it is cached. Polars expressions are immutable and shared safely.
    """
    slot = (id(owner), key)
    found = _compiled.get(slot)
    if found is None:
        if len(_compiled) >= COMPILED_LIMIT:
            _compiled.clear()
        found = _compiled[slot] = (owner, build())
    return found[1]  # type: ignore[return-value]


@dataclass(frozen=True)
class RuleColumn:
    """One breakdown entry computed as a column named ``key``; ``rule`` is what the breakdown shows."""

    key: str
    rule: str


_OPTIMIZED = pl.QueryOptFlags()
_optimizations: ContextVar[pl.QueryOptFlags] = ContextVar("optimizations", default=_OPTIMIZED)


@contextmanager
def one_lead() -> Iterator[None]:
    """Within it, ``collect`` runs plans as written, without Polars' optimizer passes: on one lead's rows
    (a ``fresh=true`` look-up) pushing predicates and projections down saves nothing, and the passes
    were ≈ 20 % of its plans' CPU. Results are the same; a run's partitions keep them."""
    token = _optimizations.set(pl.QueryOptFlags.none())
    try:
        yield
    finally:
        _optimizations.reset(token)


def collect(frame: pl.LazyFrame) -> pl.DataFrame:
    """``frame`` run by Polars' in-memory engine, whatever its size: on one lead's rows (a ``fresh=true``
    look-up) the streaming engine's set-up was a third of the work, and on a 25,000-lead partition it
    took ≈ 20 % more CPU for the same frames (mostly in ``models.breakdown.settle``)."""
    return frame.collect(engine="in-memory", optimizations=_optimizations.get())


def collect_streaming(frame: pl.LazyFrame) -> pl.DataFrame:
    """``frame`` by Polars' default engine (streaming), except within ``one_lead`` (then as ``collect``):
    a scan and group-by over a partition's events ran ≈ 15 % faster streaming, but on one lead's rows
    its set-up costs more than the rows."""
    if _optimizations.get() is _OPTIMIZED:
        return frame.collect()
    return collect(frame)


def collect_all(frames: list[pl.LazyFrame]) -> list[pl.DataFrame]:
    """``collect`` of several frames in one call (one hand-over to Polars, shared parts computed once)."""
    return pl.collect_all(frames, engine="in-memory", optimizations=_optimizations.get())  # type: ignore[return-value]


def extract(frame: pl.DataFrame | pl.LazyFrame, name: str, json_column: str) -> pl.Expr:
    """A named value as text: a column of the frame, else a key of its JSON column, else null."""
    columns = frame.collect_schema().names()
    if name in columns:
        return pl.col(name).cast(pl.Utf8)
    if json_column in columns:
        return pl.col(json_column).str.json_path_match(json_path(name))
    return pl.lit(None, pl.Utf8)


def json_path(name: str) -> str:
    """``$.name`` (a dotted name reads nested objects); bracket form for names a dotted path cannot spell."""
    if re.fullmatch(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*", name):
        return f"$.{name}"
    return "$['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


def utc_occurred_at(dtype: pl.DataType) -> pl.Expr:
    """``occurred_at`` (of type ``dtype``) as UTC microseconds; naive times are taken as UTC."""
    column = pl.col("occurred_at")
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        column = column.dt.replace_time_zone("UTC")
    elif isinstance(dtype, pl.Datetime) and dtype.time_zone != "UTC":
        column = column.dt.convert_time_zone("UTC")
    return column.cast(UTC_US)
