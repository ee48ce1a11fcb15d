"""Score a plain CSV of leads with one model file: marketers try a model on a list before it goes live."""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from models.bands import band_expr
from models.engine import score, top_rules
from models.spec import NUMERIC_OPS, Bands, PointsModel, Scale

ROW = "_row"


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
    """Every input column is kept; ``score``, ``band`` (when bands are known) and ``top_rules`` are added.

    Rows whose values cannot be read by the model (a number expected, text found) are rejected with
    file, line and field instead of silently scoring zero.
    """
    leads = pl.read_csv(leads_path, infer_schema=False).with_row_index(ROW)
    rejects = [_non_numeric(model, leads, leads_path)]
    good = leads.filter(~(pl.col(ROW).cast(pl.Int64) + 2).is_in(rejects[0].get_column("line").implode()))
    frame = good.with_columns(pl.col(ROW).cast(pl.Int64).alias("lead_key"))
    events = _empty_events()
    if events_path is not None:
        events, event_rejects = _read_events(events_path, frame)
        rejects.append(event_rejects)
    result = score(model, leads=frame, events=events, as_of=as_of, scale=scale or model.scale or Scale())
    bands = bands or model.bands
    out = good.join(result.rename({"lead_key": ROW}).with_columns(pl.col(ROW).cast(pl.UInt32)), on=ROW, how="left")
    extra = [pl.col("score")]
    if bands is not None:
        extra.append(band_expr(bands, pl.col("score")).alias("band"))
    extra.append(top_rules(pl.col("breakdown")).alias("top_rules"))
    scored = out.select(pl.exclude(ROW, "score", "breakdown"), *extra)
    return ScoredFile(scored, pl.concat(rejects))


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
                (pl.col(ROW).cast(pl.Int64) + 2).alias("line"),
                pl.lit(name).alias("field"),
                pl.format("not a number: '{}'", pl.col(name)).alias("reason"),
            )
        )
    return pl.concat(parts).unique("line", keep="first", maintain_order=True) if parts else _empty_rejects()


def _read_events(path: Path, leads: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Events CSV (``lead_id, type, occurred_at[, properties][, machine]``) mapped onto the leads' rows."""
    raw = pl.read_csv(path, infer_schema=False).with_row_index(ROW)
    for required in ("lead_id", "type", "occurred_at"):
        if required not in raw.columns:
            raise ValueError(f"{path}: missing column {required!r}")
    if "lead_id" not in leads.columns:
        raise ValueError("--events needs a lead_id column in the leads file")
    parsed = raw.with_columns(
        pl.col("occurred_at").str.to_datetime(time_zone="UTC", strict=False).alias("_at"),
    ).join(leads.select("lead_id", "lead_key"), on="lead_id", how="left")
    reason = (
        pl.when(pl.col("_at").is_null())
        .then(pl.lit("occurred_at: not an ISO-8601 time with a time zone"))
        .when(pl.col("lead_key").is_null())
        .then(pl.format("lead_id: unknown or rejected lead '{}'", pl.col("lead_id")))
    )
    checked = parsed.with_columns(reason.alias("_reason"))
    rejects = checked.filter(pl.col("_reason").is_not_null()).select(
        pl.lit(str(path)).alias("file"),
        (pl.col(ROW).cast(pl.Int64) + 2).alias("line"),
        pl.col("_reason").str.split(":").list.first().alias("field"),
        pl.col("_reason").alias("reason"),
    )
    good = checked.filter(pl.col("_reason").is_null())
    events = good.select(
        pl.col("lead_key").cast(pl.Int64),
        pl.col("_at").alias("occurred_at"),
        pl.col("type"),
        (
            pl.col("machine").str.to_lowercase().is_in(["true", "1", "yes"])
            if "machine" in raw.columns
            else pl.lit(False)
        ).alias("machine"),
        (pl.col("properties").fill_null("{}") if "properties" in raw.columns else pl.lit("{}")).alias("properties"),
    )
    return events, rejects


def _empty_events() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "lead_key": pl.Int64,
            "occurred_at": pl.Datetime("us", "UTC"),
            "type": pl.Utf8,
            "machine": pl.Boolean,
            "properties": pl.Utf8,
        }
    )


def _empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema={"file": pl.Utf8, "line": pl.Int64, "field": pl.Utf8, "reason": pl.Utf8})
