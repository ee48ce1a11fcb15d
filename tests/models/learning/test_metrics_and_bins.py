"""Backtest metrics with exact values, and the binning rules."""

import itertools

import numpy as np
import polars as pl

from models.learning.binning import BinningParams, bins_for, round_edge
from models.learning.features import Feature
from models.learning.metrics import bands_table, calibration, capture, default_bands, summary
from models.spec import Bands, Scale


def test_capture_counts_ties_straddling_the_cut_in_proportion() -> None:
    scores = np.array([9, 8, 8, 8, 8, 1, 1, 1, 1, 1], dtype=float)
    y = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    assert capture(scores, y, 0.10) == 1 / 3  # the single top lead converted: 1 of 3 converters
    assert capture(scores, y, 0.30) == (1 + 0.5 * 1) / 3  # two of the four 8s: half of their converter
    assert capture(scores, y, 1.0) == 1.0


def test_bands_table_counts_and_rates() -> None:
    bands = Bands.model_validate({"cold": [0, 40], "hot": [40, 100]})
    rows = bands_table(np.array([0, 39.9, 40, 100]), np.array([0, 1, 1, 1]), bands)
    assert rows == [
        {"band": "cold", "from": 0, "to": 40, "leads": 2, "converted": 1, "rate": 0.5},
        {"band": "hot", "from": 40, "to": 100, "leads": 2, "converted": 2, "rate": 1.0},
    ]


def test_default_bands_split_the_scale_evenly() -> None:
    assert default_bands(Scale(min=0, max=100), 4).ordered == [
        ("0-25", 0, 25), ("25-50", 25, 50), ("50-75", 50, 75), ("75-100", 75, 100),
    ]  # fmt: skip


def test_summary_and_calibration() -> None:
    folds = [(np.array([0.9, 0.1, 0.8, 0.2]), np.array([1, 0, 0, 1])), (np.array([0.7, 0.3]), np.array([1, 0]))]
    result = summary(folds, default_bands(Scale(min=0, max=1), 2), probability=np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3]))
    assert result["fold_aucs"] == [0.75, 1.0]  # fold 1: 3 of the 4 (converter, other) pairs in order
    assert result["auc"] == 0.875
    assert result["leads"] == 6 and result["converted"] == 3
    assert result["lift_top10"] == round(
        capture(np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3]), np.array([1, 0, 0, 1, 1, 0]), 0.1) / 0.1, 3
    )
    assert result["calibration"]["brier"] == round(
        float(np.mean((np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3]) - np.array([1, 0, 0, 1, 1, 0])) ** 2)), 4
    )
    assert calibration(np.array([0.2, 0.4]), np.array([0, 1]), bins=2)["deciles"] == [
        {"predicted": 0.2, "observed": 0.0, "leads": 1},
        {"predicted": 0.4, "observed": 1.0, "leads": 1},
    ]


def test_round_edge_keeps_three_significant_digits() -> None:
    assert [round_edge(v) for v in (1234.5, 0.012345, 7.0, 0.0)] == [1230.0, 0.0123, 7.0, 0.0]


def test_numeric_bins_are_monotonic_when_the_data_allows() -> None:
    rng = np.random.default_rng(0)
    v = rng.uniform(0, 100, 2000)
    y = (rng.random(2000) < 0.1 + 0.6 * (v / 100)).astype(np.int8)
    f = Feature("size", "numeric")
    bins = bins_for(f, pl.DataFrame({"size": v}), y, None, (), BinningParams())
    # no value was missing in training, yet the column gets its "missing" rule (the scorecard prices it)
    assert bins[-1].kind == "missing" and bins[-1].rule(0) == {
        "name": "size: missing", "when": {"size": {"present": False}}, "points": 0
    }  # fmt: skip
    bins = bins[:-1]
    assert all(b.kind == "range" for b in bins) and len(bins) >= 3
    rates = []
    for b in bins:
        inside = pl.DataFrame({"size": v}).select(b.indicator()).to_series().to_numpy()
        rates.append(y[inside].mean())
    assert rates == sorted(rates)
    assert bins[0].lo is None and bins[-1].hi is None
    assert all(a.hi == b.lo for a, b in itertools.pairwise(bins))


def test_categories_pool_rare_levels_and_group_similar_ones() -> None:
    values = ["a"] * 500 + ["b"] * 500 + ["c"] * 500 + ["rare"] * 5 + [None] * 100
    y = np.array([1] * 250 + [0] * 250 + [1] * 255 + [0] * 245 + [1] * 50 + [0] * 450 + [1] * 5 + [0] * 50 + [1] * 50)
    raw = pl.Series("kind", [v.upper() if v else "Select" for v in values])
    f = Feature("kind", "categorical")
    bins = bins_for(f, pl.DataFrame({"kind": values}), y, raw, ("", "select"), BinningParams())
    assert [(b.kind, b.shown) for b in bins] == [
        ("levels", ("C",)), ("levels", ("A", "B")), ("other", ()), ("missing", ()),
    ]  # fmt: skip
    assert bins[-1].rule(3) == {
        "name": "kind: missing",
        "any_of": [{"kind": {"present": False}}, {"kind": {"in": ["Select"]}}],
        "points": 3,
    }
    assert bins[2].rule(-2) == {
        "name": "kind: other",
        "when": {"kind": {"present": True, "not_in": ["a", "b", "c", "Select"]}},
        "points": -2,
    }


def test_count_thresholds_become_behaviour_rules() -> None:
    counts = np.array([0] * 100 + [1] * 100 + [2] * 60 + [5] * 40 + [12] * 35)
    f = Feature("page_view|30", "count", "page_view", 30)
    bins = bins_for(
        f, pl.DataFrame({"page_view|30": counts}), np.zeros(len(counts), dtype=np.int8), None, (), BinningParams()
    )
    # 1, then the median, 75th and 90th percentiles of the non-zero counts, each held by >= 30 leads
    assert [b.threshold for b in bins] == [1, 2, 5, 12]
    assert bins[1].rule(4) == {"name": "page_view ≥ 2 in 30 days", "event": "page_view", "count_at_least": 2,
                               "within_days": 30, "points": 4}  # fmt: skip
