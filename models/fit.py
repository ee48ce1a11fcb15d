"""Fit points: who the lead is, from its attribute columns (or its ``attributes`` JSON). Never decays."""

import polars as pl

from models.conditions import condition
from models.frames import RuleColumn, collect, compiled, extract
from models.spec import PointsModel


def fit_points(
    model: PointsModel, journeys: pl.DataFrame, leads: pl.DataFrame
) -> tuple[list[RuleColumn], pl.DataFrame | None]:
    """One column per fit rule (its points where ``when`` holds, and one of ``any_of`` when given)."""
    columns, frame = fit_plan(model, journeys, leads)
    return columns, None if frame is None else collect(frame)


def fit_plan(
    model: PointsModel, journeys: pl.DataFrame, leads: pl.DataFrame
) -> tuple[list[RuleColumn], pl.LazyFrame | None]:
    """``fit_points`` as a lazy frame, for a caller that joins it into a larger plan."""
    if not model.fit:
        return [], None
    values, columns, exprs = compiled(model, ("fit", tuple(leads.columns)), lambda: _fit_exprs(model, leads))
    base = (
        journeys.lazy()
        .select("lead_key")
        .join(leads.lazy().with_columns(pl.col("lead_key").cast(pl.Int64)), on="lead_key", how="left")
    )
    return columns, base.with_columns(values).select("lead_key", *exprs)


def _fit_exprs(model: PointsModel, leads: pl.DataFrame) -> tuple[list[pl.Expr], list[RuleColumn], list[pl.Expr]]:
    """The ``a:NAME`` values the rules read (from ``leads``' columns or its JSON), the rules' columns and
    their expressions."""
    names = {name for rule in model.fit for cond in [rule.when, *(rule.any_of or [])] for name in cond}
    values = [extract(leads, name, "attributes").alias(f"a:{name}") for name in sorted(names)]
    columns = [RuleColumn(f"fit:{i}", rule.name) for i, rule in enumerate(model.fit)]
    exprs = []
    for column, rule in zip(columns, model.fit, strict=True):
        holds = condition(rule.when, "a:")
        if rule.any_of:
            holds = holds & pl.any_horizontal([condition(c, "a:") for c in rule.any_of])
        exprs.append(pl.when(holds).then(float(rule.points)).otherwise(0.0).alias(column.key))
    return values, columns, exprs
