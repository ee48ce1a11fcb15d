"""Reading a history of leads with their outcome, and their events, with errors that name file, line and column."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

DEFAULT_MISSING = ("", "select", "n/a", "na", "nan", "null", "none", "-")
"""Values meaning "left empty" (compared trimmed and lower-case): web forms often submit a placeholder."""
TRUE_WORDS, FALSE_WORDS = ("1", "1.0", "true", "yes", "y"), ("0", "0.0", "false", "no", "n")
ROW = "__row__"  # position of a lead in the history (0-based)


class LearnError(ValueError):
    """Input that cannot make a trustworthy model; the message names what to fix."""


@dataclass(frozen=True)
class History:
    """One row per historical lead: attribute columns as text, the outcome, and each row's file line."""

    path: Path
    frame: pl.DataFrame  # ROW + the attribute columns (text; nulls for empty cells)
    target: np.ndarray  # int8 0/1
    target_column: str
    id_column: str | None
    lines: np.ndarray  # line of each row (header = 1)
    ids: pl.Series | None  # the id column, trimmed (never a feature)
    cutoff: pl.Series | None  # per-lead UTC time before which events count (None: every event counts)

    @property
    def attributes(self) -> list[str]:
        return [c for c in self.frame.columns if c != ROW]


def read_history(
    path: Path,
    *,
    target: str,
    id_column: str | None = None,
    cutoff_column: str | None = None,
    drop: tuple[str, ...] = (),
) -> History:
    """Read ``path`` (CSV, every cell as text). The target may be 1/0, true/false, yes/no in any case."""
    path = Path(path)
    if not path.is_file():
        raise LearnError(f"{path}: file not found")
    try:
        raw = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy", separator=delimiter(path))
    except pl.exceptions.PolarsError as exc:
        raise LearnError(f"{path}: not a readable CSV file: {exc}") from exc
    # An unnamed, entirely empty column (a trailing comma on every line) carries nothing.
    raw = raw.select(c for c in raw.columns if c.strip() or raw[c].null_count() < raw.height)
    named = [c for c in (target, id_column, cutoff_column, *drop) if c is not None]
    missing = [c for c in named if c not in raw.columns]
    if missing:
        raise LearnError(f"{path}: no column {missing[0]!r}; columns: {raw.columns}")
    lines = np.arange(raw.height, dtype=np.int64) + 2
    outcome = _target(path, raw.get_column(target), lines)
    cutoff = None
    if cutoff_column is not None:
        cutoff = parse_times(path, raw.get_column(cutoff_column), lines, cutoff_column)
    features = [c for c in raw.columns if c not in {target, cutoff_column, id_column, *drop}]
    frame = raw.select(pl.int_range(pl.len(), dtype=pl.Int64).alias(ROW), *features)
    ids = raw.get_column(id_column).str.strip_chars() if id_column is not None else None
    return History(
        path=path,
        frame=frame,
        target=outcome,
        target_column=target,
        id_column=id_column,
        lines=lines,
        ids=ids,
        cutoff=cutoff,
    )


def delimiter(path: Path) -> str:
    """``;`` when the header line has more semicolons than commas (European spreadsheet exports, the UCI
    bank data), else ``,``: a semicolon file read with commas is one column and every name looks unknown."""
    with path.open("rb") as handle:
        header = handle.readline()
    return ";" if header.count(b";") > header.count(b",") else ","


def _target(path: Path, column: pl.Series, lines: np.ndarray) -> np.ndarray:
    text = column.str.strip_chars().str.to_lowercase()
    ones = text.is_in(list(TRUE_WORDS)).fill_null(False).to_numpy()
    zeros = text.is_in(list(FALSE_WORDS)).fill_null(False).to_numpy()
    bad = np.flatnonzero(~(ones | zeros))
    if bad.size:
        shown = "; ".join(f"line {lines[i]}: {column[int(i)]!r}" for i in bad[:5])
        raise LearnError(
            f"{path}: column {column.name!r}: {bad.size} value(s) are not an outcome (1/0, true/false, yes/no): {shown}"
        )
    return ones.astype(np.int8)


def parse_times(path: Path, column: pl.Series, lines: np.ndarray, name: str) -> pl.Series:
    """ISO-8601 times with an offset (or ``Z``) as UTC; a missing, unreadable or zone-less time is an error."""
    parsed = column.str.strip_chars().str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
    bad = np.flatnonzero(parsed.is_null().to_numpy())
    if bad.size:
        shown = "; ".join(f"line {lines[i]}: {column[int(i)]!r}" for i in bad[:5])
        raise LearnError(
            f"{path}: column {name!r}: {bad.size} value(s) are not ISO-8601 times with a time zone "
            f"(e.g. 2026-03-01T09:30:00Z): {shown}"
        )
    return parsed.alias(name)


def read_events(path: Path, history: History, *, properties: bool = False) -> pl.DataFrame:
    """Events (ingestion schema: ``lead_id, type, occurred_at[, machine][, properties]``; other columns ignored)
    of the history's leads, as ``ROW, type, occurred_at, machine`` (and ``properties``, JSON text, when asked:
    hand-written rules may test them; learning does not read them). Events of leads not in the history are
    skipped."""
    path = Path(path)
    if history.id_column is None:
        raise LearnError("--events needs --id-column: the history column that events' lead_id refers to")
    if not path.is_file():
        raise LearnError(f"{path}: file not found")
    try:
        separator = delimiter(path)
        header = pl.read_csv(path, infer_schema=False, n_rows=0, separator=separator).columns
        wanted = [
            c for c in header if c in ("lead_id", "type", "occurred_at", "machine", *(["properties"] * properties))
        ]
        raw = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy", columns=wanted, separator=separator)
    except pl.exceptions.PolarsError as exc:
        raise LearnError(f"{path}: not a readable CSV file: {exc}") from exc
    for required in ("lead_id", "type", "occurred_at"):
        if required not in raw.columns:
            raise LearnError(f"{path}: missing column {required!r}; columns: {raw.columns}")
    ids = read_ids(history)
    lines = np.arange(raw.height, dtype=np.int64) + 2
    raw = raw.with_columns(parse_times(path, raw.get_column("occurred_at"), lines, "occurred_at"))
    machine = (
        pl.col("machine").str.strip_chars().str.to_lowercase().is_in(list(TRUE_WORDS)).fill_null(False)
        if "machine" in raw.columns
        else pl.lit(False)
    )
    kept = [pl.col("properties").fill_null("{}") if "properties" in raw.columns else pl.lit("{}")] if properties else []
    return raw.join(ids, on="lead_id", how="inner").select(
        ROW,
        pl.col("type").str.strip_chars(),
        "occurred_at",
        machine.alias("machine"),
        *(k.alias("properties") for k in kept),
    )


def read_ids(history: History) -> pl.DataFrame:
    """``lead_id, ROW`` from the history's id column (ids must be unique: events are joined on them)."""
    assert history.ids is not None
    ids = pl.DataFrame({"lead_id": history.ids, ROW: np.arange(history.ids.len(), dtype=np.int64)})
    repeated = ids.filter(pl.col("lead_id").is_duplicated() | pl.col("lead_id").is_null())
    if repeated.height:
        row = repeated.row(0, named=True)
        raise LearnError(
            f"{history.path}: line {row[ROW] + 2}: column {history.id_column!r}: "
            f"id {row['lead_id']!r} is empty or repeated"
        )
    return ids
