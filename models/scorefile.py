"""Score a plain CSV of leads with one model file: marketers try a model on a list before it goes live."""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from models.bands import band_expr
from models.breakdown import top_rules
from models.engine import score
from models.spec import NUMERIC_OPS, Bands, PointsModel, Scale
from store.csvfile import open_csv
from store.shapes import EVENT_SCHEMA, UTC_US

LINE = "__line__"  # the physical line of a row in its file (header = 1)
ADDED = ("score", "band", "top_rules")
EVENT_COLUMNS = ("event_id", "lead_id", "type", "occurred_at", "product_line", "machine", "message_id", "properties")
ENGINE_COLUMNS = ("lead_key", "score_from")  # names the scorer uses for its own columns
REJECT_SCHEMA = {"file": pl.Utf8, "line": pl.Int64, "field": pl.Utf8, "reason": pl.Utf8}


@dataclass
class ScoredFile:
    scored: pl.DataFrame
    rejects: pl.DataFrame  # file, line, field, reason


def score_csv(
    model: PointsModel,
    leads_path: Path,
    *,
    as_of: datetime,
    events_path: Path | None = None,
    bands: Bands | None = None,
    scale: Scale | None = None,
) -> ScoredFile:
    """Every input column is kept, in order; ``score``, ``band`` (when bands are known) and ``top_rules``
    are added (replacing input columns of those names, e.g. when a scored file is scored again).

    Rows whose values cannot be read by the model (a number expected, text found) are rejected with
    file, line and field instead of silently scoring zero, as are rows with the wrong number of values.
    Lines are physical lines of the file (header = 1); blank lines are skipped.
    """
    leads, unreadable = _read_csv(leads_path)
    non_numeric = _non_numeric(model, leads, leads_path)
    rejects = [pl.concat([unreadable, non_numeric]).sort("line", maintain_order=True)]
    good = leads.filter(~pl.col(LINE).is_in(non_numeric.get_column("line").implode()))
    frame = good.with_columns(pl.col(LINE).alias("lead_key"))
    events = pl.DataFrame(schema=EVENT_SCHEMA)
    if events_path is not None:
        events, event_rejects = _read_events(events_path, frame)
        rejects.append(event_rejects)
    result = score(model, leads=frame, events=events, as_of=as_of, scale=scale or model.scale or Scale())
    bands = bands or model.bands
    extra = [pl.col("score")]
    if bands is not None:
        extra.append(band_expr(bands, pl.col("score")).alias("band"))
    extra.append(top_rules(pl.col("breakdown")).alias("top_rules"))
    added = [name for name in ADDED if name != "band" or bands is not None]
    kept = [name for name in good.columns if name != LINE and name not in added]
    out = good.select(LINE, *kept).join(result.rename({"lead_key": LINE}), on=LINE, how="left", maintain_order="left")
    scored = out.select(*kept, *extra)
    return ScoredFile(scored, pl.concat(rejects))


def _read_csv(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every cell as text (an empty cell is null) with the row's physical line in ``LINE``, and the rows
    that could not be read (a row with more or fewer values than the header). Blank lines are skipped."""
    lines: list[int] = []
    bad: list[tuple[int, str]] = []
    with open_csv(path) as (names, rows):
        if not names:
            raise ValueError(f"{path}: the file is empty; expected a header row")
        if LINE in names:
            raise ValueError(f"{path}: {LINE!r} is a reserved column name")
        columns: list[list[str | None]] = [[] for _ in names]
        for row in rows:
            if row.error:
                bad.append((row.line, row.error))
                continue
            lines.append(row.line)
            for column, value in zip(columns, row.values, strict=True):
                column.append(value if value != "" else None)
    schema = {LINE: pl.Int64, **dict.fromkeys(names, pl.Utf8)}
    frame = pl.DataFrame({LINE: lines, **dict(zip(names, columns, strict=True))}, schema=schema)
    rejects = pl.DataFrame(
        {
            "file": [str(path)] * len(bad),
            "line": [line for line, _ in bad],
            "field": [None] * len(bad),
            "reason": [reason for _, reason in bad],
        },
        schema=REJECT_SCHEMA,
    )
    return frame, rejects


def _non_numeric(model: PointsModel, leads: pl.DataFrame, path: Path) -> pl.DataFrame:
    numeric_fields = sorted(
        {
            name
            for rule in model.fit
            for condition in [rule.when, *(rule.any_of or [])]
            for name, test in condition.items()
            if any(getattr(test, op) is not None for op in NUMERIC_OPS)
        }
    )
    parts = []
    for name in numeric_fields:
        if name not in leads.columns:
            continue
        value = pl.col(name).str.strip_chars()
        bad = leads.filter((value != "") & value.cast(pl.Float64, strict=False).is_null())
        parts.append(
            bad.select(
                pl.lit(str(path)).alias("file"),
                pl.col(LINE).alias("line"),
                pl.lit(name).alias("field"),
                pl.format("not a number: '{}'", pl.col(name)).alias("reason"),
            )
        )
    if not parts:
        return pl.DataFrame(schema=REJECT_SCHEMA)
    return pl.concat(parts).sort("line", maintain_order=True).unique("line", keep="first", maintain_order=True)


def _parse_time(text: str) -> tuple[datetime | None, str | None]:
    """ISO-8601 with an offset or ``Z``, in UTC, or why not (the same rule as ingestion: no guessed zone)."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        return None, f"not an ISO-8601 time: {text!r}"
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None, f"time zone missing in {text!r}: add an offset such as +00:00 or Z"
    return parsed.astimezone(UTC), None


def _read_events(path: Path, leads: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events CSV (``lead_id, type, occurred_at[, properties][, machine]``, other columns are properties, as
    for ingestion) mapped onto the leads' rows; a row with a bad time or an unknown lead is rejected."""
    raw, rejects = _read_csv(path)
    for required in ("lead_id", "type", "occurred_at"):
        if required not in raw.columns:
            raise ValueError(f"{path}: missing column {required!r}")
    if "lead_id" not in leads.columns:
        raise ValueError("--events needs a lead_id column in the leads file")
    texts = raw.get_column("occurred_at").drop_nulls().unique().to_list()
    parsed = [_parse_time(text) for text in texts]
    times = pl.DataFrame(
        {"occurred_at": texts, "_at": [at for at, _ in parsed], "_why": [why for _, why in parsed]},
        schema={"occurred_at": pl.Utf8, "_at": UTC_US, "_why": pl.Utf8},
    )
    checked = (
        raw.join(times, on="occurred_at", how="left", maintain_order="left")
        .join(leads.select("lead_id", "lead_key"), on="lead_id", how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("lead_id").is_null())
            .then(pl.struct(field=pl.lit("lead_id"), reason=pl.lit("required")))
            .when(pl.col("type").is_null())
            .then(pl.struct(field=pl.lit("type"), reason=pl.lit("required")))
            .when(pl.col("occurred_at").is_null())
            .then(pl.struct(field=pl.lit("occurred_at"), reason=pl.lit("required")))
            .when(pl.col("_why").is_not_null())
            .then(pl.struct(field=pl.lit("occurred_at"), reason=pl.col("_why")))
            .when(pl.col("lead_key").is_null())
            .then(
                pl.struct(
                    field=pl.lit("lead_id"),
                    reason=pl.format("unknown lead_id '{}': not in the leads file, or rejected there", "lead_id"),
                )
            )
            .alias("_reject")
        )
    )
    bad = checked.filter(pl.col("_reject").is_not_null()).select(
        pl.lit(str(path)).alias("file"),
        pl.col(LINE).alias("line"),
        pl.col("_reject").struct.field("field"),
        pl.col("_reject").struct.field("reason"),
    )
    good = checked.filter(pl.col("_reject").is_null())
    has_json = "properties" in raw.columns
    extras = [
        name
        for name in raw.columns
        if name not in (LINE, *EVENT_COLUMNS, *ENGINE_COLUMNS) and not name.startswith(("_", "p:", "m:"))
    ]
    events = good.select(
        pl.col("lead_key").cast(pl.Int64),
        pl.col("_at").alias("occurred_at"),
        pl.col("type"),
        (
            pl.col("machine").str.strip_chars().str.to_lowercase().is_in(["true", "1", "yes"]).fill_null(False)
            if "machine" in raw.columns
            else pl.lit(False)
        ).alias("machine"),
        (pl.col("properties").fill_null("{}") if has_json else pl.lit("{}")).alias("properties"),
        # An extra column is a property (it wins over the same key of the JSON, as at ingestion).
        *(
            pl.coalesce(pl.col(name), pl.col("properties").str.json_path_match(f"$.{name}")).alias(name)
            if has_json
            else pl.col(name)
            for name in extras
        ),
    )
    return events, pl.concat([rejects, bad]).sort("line", maintain_order=True)
