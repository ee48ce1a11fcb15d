"""Fit points: who the lead is, from its attribute columns (or its ``attributes`` JSON). Never decays."""

import polars as pl

from models.conditions import condition
from models.frames import RuleColumn, extract
from models.spec import PointsModel


def fit_points(
    model: PointsModel, journeys: pl.DataFrame, leads: pl.DataFrame
) -> tuple[list[RuleColumn], pl.DataFrame | None]:
    """One column per fit rule (its points where ``when`` holds, and one of ``any_of`` when given)."""
    if not model.fit:
        return [], None
    names = {name for rule in model.fit for cond in [rule.when, *(rule.any_of or [])] for name in cond}
    base = journeys.select("lead_key").join(
        leads.with_columns(pl.col("lead_key").cast(pl.Int64)), on="lead_key", how="left"
    )
    base = base.with_columns(extract(base, name, "attributes").alias(f"a:{name}") for name in sorted(names))
    columns = [RuleColumn(f"fit:{i}", rule.name) for i, rule in enumerate(model.fit)]
    exprs = []
    for column, rule in zip(columns, model.fit, strict=True):
        holds = condition(rule.when, "a:")
        if rule.any_of:
            holds = holds & pl.any_horizontal([condition(c, "a:") for c in rule.any_of])
        exprs.append(pl.when(holds).then(float(rule.points)).otherwise(0.0).alias(column.key))
    return columns, base.select("lead_key", *exprs)
