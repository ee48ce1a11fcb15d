"""The frame vocabulary every scorer shares (points or probability): the result's shape, a breakdown
entry computed as a column, event times as UTC microseconds, and named values read from a column or
from a JSON text column."""

import re
from dataclasses import dataclass

import polars as pl

from store.shapes import BREAKDOWN_TYPE, UTC_US

DAY_US = 86_400_000_000
RESULT_SCHEMA = {"lead_key": pl.Int64, "score": pl.Float64, "breakdown": BREAKDOWN_TYPE}


@dataclass(frozen=True)
class RuleColumn:
    """One breakdown entry computed as a column named ``key``; ``rule`` is what the breakdown shows."""

    key: str
    rule: str


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
