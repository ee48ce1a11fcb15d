"""Measured uplift: conversion of treated leads against the holdout, with confidence intervals.

Rates get Wilson score intervals; the difference between two rates gets Newcombe's hybrid score
interval (method 10 of Newcombe 1998, built from the two Wilson intervals), which keeps its coverage
for small counts and rates near 0 or 1 where the textbook normal interval does not.
"""

from __future__ import annotations

import math

import polars as pl

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials; (nan, nan) without trials."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half, centre + half)


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """``p1 - p2`` and its Newcombe hybrid score interval (method 10)."""
    if n1 == 0 or n2 == 0:
        return (math.nan, math.nan, math.nan)
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    diff = p1 - p2
    lower = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    upper = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (diff, lower, upper)


def uplift(arms: pl.DataFrame) -> pl.DataFrame:
    """``arms``: ``track, arm, enrolled, converted`` (arm ``holdout`` is the control). Adds ``rate``,
    its Wilson ``rate_lo``/``rate_hi``, and for every other arm of a track with a holdout the
    ``uplift`` (rate − holdout rate) with Newcombe's ``uplift_lo``/``uplift_hi``."""
    control = {
        row["track"]: (row["converted"], row["enrolled"])
        for row in arms.filter(pl.col("arm") == "holdout").iter_rows(named=True)
    }
    rows = []
    for row in arms.iter_rows(named=True):
        k, n = row["converted"], row["enrolled"]
        lo, hi = wilson(k, n)
        diff = d_lo = d_hi = None
        if row["arm"] != "holdout" and row["track"] in control:
            diff, d_lo, d_hi = newcombe(k, n, *control[row["track"]])
        rows.append(
            {**row, "rate": k / n if n else None, "rate_lo": lo, "rate_hi": hi, "uplift": diff,
             "uplift_lo": d_lo, "uplift_hi": d_hi}
        )  # fmt: skip
    schema = {
        **arms.schema,
        **dict.fromkeys(("rate", "rate_lo", "rate_hi", "uplift", "uplift_lo", "uplift_hi"), pl.Float64),
    }
    return pl.DataFrame(rows, schema=schema)
