"""The lift chart on live outcomes: conversion per score decile, per product line and stage."""

import polars as pl

from models.learning.review import lift_by_decile


def test_conversion_per_score_decile_per_line_and_stage() -> None:
    # crm/discovery: 20 outcomes scored 0..95; every lead scored 50 or more converted, and one scored 10.
    scores = [float(5 * i) for i in range(20)]
    converted = [1 if s >= 50 or s == 10 else 0 for s in scores]
    outcomes = pl.DataFrame(
        {
            "product_line": ["crm"] * 23,
            "stage": ["discovery"] * 20 + ["evaluation"] * 3,
            "score": [*scores, 40.0, 40.0, 90.0],  # evaluation: two tied scores share a decile
            "converted": [*converted, 0, 1, 1],
        }
    )
    lift = lift_by_decile(outcomes)
    discovery = lift.filter(pl.col("stage") == "discovery")
    assert discovery.get_column("decile").to_list() == list(range(1, 11))
    assert discovery.get_column("leads").to_list() == [2] * 10
    assert discovery.get_column("converted").to_list() == [0, 1, 0, 0, 0, 2, 2, 2, 2, 2]
    assert discovery.get_column("lift").to_list() == [0.0, 0.909, 0.0, 0.0, 0.0, 1.818, 1.818, 1.818, 1.818, 1.818]
    assert lift.filter(pl.col("stage") == "evaluation").rows() == [
        ("crm", "evaluation", 1, 2, 1, 0.5, 0.75),
        ("crm", "evaluation", 7, 1, 1, 1.0, 1.5),
    ]


def test_no_outcomes_no_rows() -> None:
    empty = pl.DataFrame(schema={"product_line": pl.Utf8, "stage": pl.Utf8, "score": pl.Float64, "converted": pl.Int8})
    assert lift_by_decile(empty).columns == ["product_line", "stage", "decile", "leads", "converted", "rate", "lift"]
    assert lift_by_decile(empty).height == 0
