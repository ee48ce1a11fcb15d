"""Per-column point curves: what each bin of a column is worth in log-odds, from one of four additive fits
the scorecard chooses among by inner cross-validation.

- ``binned logistic``: an L2 logistic regression on binned one-hot columns (a free weight per bin).
- ``linear``: numeric columns get a straight line (a weight per unit, read out per distinct value or fine
  bin), the way a plain logistic regression uses them; categories and counts keep their bins. Coded
  columns with hundreds of weak effects are where free per-bin weights overfit and a line does not.
- ``line or bins``: each column of numbers (coded columns included) a line or a free weight per value,
  whichever its training leads favour by a penalised deviance; text columns keep their bins. Sparse coded
  data mixes names written as codes (a customer type: bins) with weak ordinal levels (a line).
- ``additive boosting``: gradient-boosted trees that may each split on one column only
  (``interaction_cst``), so the model is a sum of one step curve per column (EBM-like); each column's
  curve is read exactly by varying that column alone, its steps becoming the bins.

Every fit ends as bins with weights, so each becomes the same readable points table."""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import polars as pl
from scipy import sparse
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from models.learning.binning import Bin, BinningParams, bins_for, indicators, missing_bin, round_edge
from models.learning.features import Feature

FINE_BINS = 20  # a numeric column's line is read out per distinct value up to this many, else per quantile bin
# A column of numbers gets free bins in ``mixed_design`` when they lower the deviance below a line's by more
# than this per extra weight: 2 (AIC) gave bins to 5 of 85 columns whose truth was a line (sparse stand-in:
# AUC 0.7253 against 0.7304); 4 gave none there and still bins to a 40-level nominal code; 8 lost it.
BIN_DEVIANCE = 4.0
LINE_SCALE = 0.3  # √(0.1 × 0.9): the standard deviation of a bin holding a tenth of the leads
CURVE_POINTS = 1024  # at most this many values of a numeric column are evaluated to find its curve's steps


@dataclass(frozen=True)
class BoostingParams:
    # Half the usual step: each one-column tree moves a curve less, so on a few hundred converters the
    # curves average over more trees (bank sample: points AUC 0.7777 against 0.7740 at 0.1, Leads.csv and
    # the sparse set unchanged); early stopping still decides how many trees.
    learning_rate: float = 0.05
    max_iter: int = 500  # early stopping on a held-out tenth usually stops far sooner
    max_leaf_nodes: int = 3  # each tree: a two- or three-step curve of one column
    l2_regularization: float = 1.0
    # Levels rarer than this many training leads are pooled as "other" (the trees' own floor on leaf size).
    min_rows: int = 30


@dataclass(frozen=True)
class Curves:
    """Bins and their weights (log-odds; a lead's raw score is the sum of its bins' weights)."""

    bins: list[Bin]
    weights: np.ndarray


@dataclass(frozen=True)
class Design:
    """Bins and how the regression sees them: its columns are ``indicators(bins) @ projection``, and a bin's
    weight is ``projection @ coefficients``. One-hot bins are unit columns; a numeric column's ranges share
    one column holding each range's standardised mean value (one weight per unit)."""

    bins: list[Bin]
    projection: sparse.csr_matrix = field(repr=False)

    def matrix(self, frame: pl.DataFrame) -> sparse.csr_matrix:
        return (indicators(self.bins, frame) @ self.projection).tocsr()

    def weights(self, coefficients: np.ndarray) -> np.ndarray:
        return self.projection @ coefficients


def _raw(raw: pl.DataFrame, f: Feature) -> pl.Series | None:
    return raw.get_column(f.name) if f.kind != "count" else None


def binned_design(features: list[Feature], frame: pl.DataFrame, y: np.ndarray, raw: pl.DataFrame,
                  tokens: tuple[str, ...], binning: BinningParams) -> Design:  # fmt: skip
    """A free weight per bin."""
    bins: list[Bin] = []
    for f in features:
        bins += bins_for(f, frame, y, _raw(raw, f), tokens, binning)
    return Design(bins, sparse.identity(len(bins), format="csr"))


def linear_design(features: list[Feature], frame: pl.DataFrame, y: np.ndarray, raw: pl.DataFrame,
                  tokens: tuple[str, ...], binning: BinningParams) -> Design:  # fmt: skip
    """One weight per unit for each numeric column (its "missing" bin free), a free weight per other bin."""

    def column(f: Feature) -> Column:
        if f.kind != "numeric":
            return bins_for(f, frame, y, _raw(raw, f), tokens, binning), None
        ranges, means = _line(f, frame)
        return [*ranges, missing_bin(f, _raw(raw, f), tokens)], means

    return _design(features, column)


def mixed_design(features: list[Feature], frame: pl.DataFrame, y: np.ndarray, raw: pl.DataFrame,
                 tokens: tuple[str, ...], binning: BinningParams) -> Design:  # fmt: skip
    """Each column of numbers (numeric, or categories that are all numbers: codes, counts) a line or free
    bins, whichever its training leads favour once each extra weight costs ``BIN_DEVIANCE`` in deviance.
    A coded column's bins are one per value, since its codes may name things (a customer type) rather than
    rank them: a nominal code gets bins, a weakly ordinal one a line. Text columns keep their bins. A line's
    column is scaled to ``LINE_SCALE`` standard deviations, about a typical bin indicator's, so that one L2
    penalty holds back a line's weight as much as a bin's (unscaled, the lines of 85 mostly idle coded
    columns take a penalty too weak for them, or the bins one too strong)."""

    def column(f: Feature) -> Column:
        if f.kind == "numeric":
            ranges, means = _line(f, frame)
            line = [*ranges, missing_bin(f, _raw(raw, f), tokens)]
            free = line if len(ranges) <= FINE_BINS else bins_for(f, frame, y, _raw(raw, f), tokens, binning)
        elif f.kind == "categorical" and (coded := _coded_levels(f, frame, y, raw, tokens)) is not None:
            free, ranges = coded, coded[:-1]
            means = _standardised([float(b.levels[0]) for b in ranges], f, frame)
            line = [*ranges, missing_bin(f, _raw(raw, f), tokens)]
        else:
            return bins_for(f, frame, y, _raw(raw, f), tokens, binning), None
        values = _values(f, frame)
        present = ~np.isnan(values)
        if y[present].min() == y[present].max():
            return line, LINE_SCALE * means  # nothing to tell apart
        extra = BIN_DEVIANCE * (sum(b.kind != "missing" for b in free) - 2)  # weights beyond a line's two
        bent = _deviance(indicators(free, frame)[present], y[present]) + extra
        if bent < _line_deviance(values[present], y[present]):
            return free, None
        return line, LINE_SCALE * means

    return _design(features, column)


# A column's bins, and the standardised values a line reads them at (None: each bin a free weight).
Column = tuple[list[Bin], np.ndarray | None]


def _design(features: list[Feature], column: Callable[[Feature], Column]) -> Design:
    """Each feature's bins from ``column``: a line's bins (all but the last, "missing") share one regression
    column holding their values (one weight per unit); free bins have a column each."""
    bins: list[Bin] = []
    entries: list[tuple[int, int, float]] = []  # (bin, regression column, value)
    width = 0
    for f in features:
        own, values = column(f)
        if values is None:
            entries += [(len(bins) + i, width + i, 1.0) for i in range(len(own))]
            width += len(own)
        else:
            entries += [(len(bins) + i, width, float(v)) for i, v in enumerate(values)]
            entries.append((len(bins) + len(own) - 1, width + 1, 1.0))
            width += 2
        bins += own
    rows, columns, values_ = zip(*entries, strict=True) if entries else ((), (), ())
    return Design(bins, sparse.csr_matrix((values_, (rows, columns)), shape=(len(bins), width)))


def _line(f: Feature, frame: pl.DataFrame) -> tuple[list[Bin], np.ndarray]:
    """A numeric column's ranges for reading out a line, and each range's mean training value (standardised)."""
    present = frame.get_column(f.name).drop_nulls().to_numpy()
    ranges = fine_ranges(f, present)
    return ranges, _standardised(_range_means(ranges, present), f, frame)


def _values(f: Feature, frame: pl.DataFrame) -> np.ndarray:
    """The column as numbers (NaN: empty)."""
    return frame.get_column(f.name).cast(pl.Float64, strict=False).to_numpy().astype(np.float64)


def _standardised(values: np.ndarray | list[float], f: Feature, frame: pl.DataFrame) -> np.ndarray:
    """``values`` less the column's training mean, over its standard deviation: a line's penalty is per
    standard deviation, as in the baseline."""
    present = _values(f, frame)
    present = present[~np.isnan(present)]
    return (np.asarray(values, dtype=np.float64) - present.mean()) / (float(present.std()) or 1.0)


def _coded_levels(f: Feature, frame: pl.DataFrame, y: np.ndarray, raw: pl.DataFrame,
                  tokens: tuple[str, ...]) -> list[Bin] | None:  # fmt: skip
    """A bin per level of a category whose levels are all numbers (at most ``FINE_BINS``), then "missing"."""
    levels = frame.get_column(f.name).drop_nulls().unique()
    if levels.len() > FINE_BINS or not np.isfinite(levels.cast(pl.Float64, strict=False).to_numpy()).all():
        return None
    apart = BinningParams(min_share=0.0, min_rows=1, group_tolerance=-1.0)
    *own, missing = bins_for(f, frame, y, _raw(raw, f), tokens, apart)
    return [*sorted(own, key=lambda b: float(b.levels[0])), missing]


def _deviance(hits: sparse.csr_matrix, y: np.ndarray) -> float:
    """Deviance of one rate per bin (``hits``: the bin each lead falls in)."""
    bin_of = np.asarray(hits.argmax(axis=1)).ravel()
    n = np.bincount(bin_of)
    rate = np.bincount(bin_of, weights=y) / np.maximum(n, 1)
    return _binomial_deviance(rate[bin_of], y)


def _line_deviance(values: np.ndarray, y: np.ndarray) -> float:
    """Deviance of a logistic line in ``values`` (unpenalised), fitted on each distinct value's converters
    and others: a few dozen weighted rows instead of every lead, once per column and inner fold."""
    distinct, index = np.unique(values, return_inverse=True)
    n, won = np.bincount(index), np.bincount(index, weights=y)
    x = ((distinct - values.mean()) / (values.std() or 1.0))[:, None]
    line = LogisticRegression(C=1e6, solver="newton-cholesky")
    line.fit(np.vstack([x, x]), np.repeat([1, 0], distinct.size), sample_weight=np.concatenate([won, n - won]))
    p = np.clip(line.predict_proba(x)[:, 1], 1e-12, 1 - 1e-12)
    return float(-2 * np.sum(won * np.log(p) + (n - won) * np.log(1 - p)))


def _binomial_deviance(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-2 * np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fine_ranges(feature: Feature, present: np.ndarray) -> list[Bin]:
    """Ranges for reading out a line: one per distinct value of a coded column, else quantile bins."""
    distinct = np.unique(present)
    if distinct.size <= FINE_BINS:
        edges = [simple_between(float(a), float(b)) for a, b in pairwise(distinct)]
    else:
        quantiles = np.quantile(present, np.linspace(0, 1, FINE_BINS + 1)[1:-1])
        edges = sorted({round_edge(float(q)) for q in quantiles})
        edges = [e for e in edges if distinct[0] < e <= distinct[-1]]
    return _ranges(feature, edges)


def _ranges(feature: Feature, edges: list[float]) -> list[Bin]:
    bounds: list[float | None] = [None, *edges, None]
    return [Bin(feature, "range", lo=bounds[i], hi=bounds[i + 1]) for i in range(len(bounds) - 1)]


def _range_means(ranges: list[Bin], present: np.ndarray) -> np.ndarray:
    """Each range's mean training value (an empty range: its midpoint or its one bound)."""
    edges = np.asarray([b.lo for b in ranges[1:]], dtype=np.float64)
    assigned = np.searchsorted(edges, present, side="right")
    counts = np.bincount(assigned, minlength=len(ranges))
    sums = np.bincount(assigned, weights=present, minlength=len(ranges))
    fallback = [np.mean([v for v in (b.lo, b.hi) if v is not None] or [0.0]) for b in ranges]
    return np.where(counts > 0, sums / np.maximum(counts, 1), fallback)


def simple_between(lo: float, hi: float) -> float:
    """The roundest number ``e`` with ``lo < e ≤ hi``: an edge that reads well and still splits the training
    values exactly where the fit did."""
    for digits in range(-12, 13):
        step = 10.0**-digits
        edge = round((math.floor(lo / step) + 1) * step, max(digits, 0))
        if lo < edge <= hi:
            return float(edge)
    return hi


def boosted_curves(features: list[Feature], frame: pl.DataFrame, y: np.ndarray, raw: pl.DataFrame,
                   tokens: tuple[str, ...], params: BoostingParams, seed: int) -> Curves:  # fmt: skip
    """An additive boosted model (one column per tree), read back as each column's step curve."""
    levels = BinningParams(min_share=0.0, min_rows=params.min_rows, group_tolerance=-1.0)  # one bin per level
    inputs, categorical, level_bins = [], [], {}
    for f in features:
        if f.kind == "categorical":
            own = bins_for(f, frame, y, _raw(raw, f), tokens, levels)
            if not own:
                continue
            hits = indicators(own, frame)
            code = np.asarray(hits.argmax(axis=1)).ravel().astype(np.float64)
            code[code == len(own) - 1] = np.nan  # the "missing" bin comes last
            level_bins[f.name] = own
            inputs.append((f, code))
        else:
            inputs.append((f, frame.get_column(f.name).cast(pl.Float64).to_numpy().astype(np.float64)))
        categorical.append(f.kind == "categorical")
    if not inputs:
        return Curves([], np.zeros(0))
    x = np.column_stack([values for _, values in inputs])
    model = HistGradientBoostingClassifier(
        learning_rate=params.learning_rate,
        max_iter=params.max_iter,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_rows,
        l2_regularization=params.l2_regularization,
        categorical_features=np.asarray(categorical),
        interaction_cst=[[j] for j in range(x.shape[1])],
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=20,
        random_state=seed,
    ).fit(x, y)
    # Additive: varying one column with the others held (at "missing") moves the log-odds by that column's
    # curve alone, so every column's curve is read from one batch of predictions.
    probes = [_probe_values(f, values, len(level_bins.get(f.name, ())) - 1) for f, values in inputs]
    grid = np.full((1 + sum(p.size for p in probes), x.shape[1]), np.nan)
    row = 1
    for j, p in enumerate(probes):
        grid[row : row + p.size, j] = p
        row += p.size
    raw_curve = model.decision_function(grid)
    curve = raw_curve[1:] - raw_curve[0]
    bins: list[Bin] = []
    weights: list[float] = []
    start = 0
    for (f, _), p in zip(inputs, probes, strict=True):
        f_values = curve[start : start + p.size]
        start += p.size
        if f.kind == "categorical":
            own = level_bins[f.name]
            bins += own
            weights += list(f_values)  # the codes in bin order, then NaN for "missing"
            continue
        steps = _steps(f, p[:-1], f_values[:-1])
        if steps is None:
            continue
        own_bins, own_weights = steps
        bins += own_bins
        weights += own_weights
        if f.kind == "numeric":
            bins.append(missing_bin(f, _raw(raw, f), tokens))
            weights.append(f_values[-1])
    return Curves(bins, np.asarray(weights, dtype=np.float64))


def _probe_values(f: Feature, values: np.ndarray, codes: int) -> np.ndarray:
    """The values a column's curve is read at: its ``codes`` category codes, or its distinct training
    numbers (quantiles when there are very many); then NaN for an empty value."""
    if f.kind == "categorical":
        return np.append(np.arange(codes, dtype=np.float64), np.nan)
    present = values[~np.isnan(values)]
    distinct = np.unique(present)
    if distinct.size > CURVE_POINTS:
        distinct = np.unique(np.quantile(present, np.linspace(0, 1, CURVE_POINTS)))
    return np.append(distinct, np.nan)


def _steps(f: Feature, probes: np.ndarray, values: np.ndarray) -> tuple[list[Bin], list[float]] | None:
    """A numeric column's curve as ranges (or a count's as stacked ``at least`` thresholds); None when flat."""
    changes = np.flatnonzero(np.abs(np.diff(values)) > 1e-12)
    if changes.size == 0:
        return None
    edges = [simple_between(float(probes[k]), float(probes[k + 1])) for k in changes]
    if f.kind == "count":
        thresholds = [Bin(f, "at_least", threshold=math.ceil(e)) for e in edges]
        return thresholds, [float(values[k + 1] - values[k]) for k in changes]
    levels = [values[0], *(values[k + 1] for k in changes)]
    return _ranges(f, edges), [float(v) for v in levels]
