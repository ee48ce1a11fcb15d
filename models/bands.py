"""Band labels as a Polars expression."""

import polars as pl

from models.spec import Bands


def band_expr(bands: Bands, score: pl.Expr) -> pl.Expr:
    """Half-open ``[lo, hi)`` bands, the top one closed; a score is always clamped into the scale."""
    expr: pl.Expr = pl.lit(bands.ordered[0][0])
    for name, lo, _ in bands.ordered[1:]:
        expr = pl.when(score >= lo).then(pl.lit(name)).otherwise(expr)
    return expr
