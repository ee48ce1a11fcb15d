"""A points scorecard: an L2-regularised logistic regression on bins, its coefficients turned into
integer points on the portfolio scale, tiny contributions pruned, written as an ordinary points model.

The penalty and the smallest bin are chosen by inner cross-validation on the training rows: a fixed
penalty that suits 3,500 converters overfits 350 spread over hundreds of bins."""

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from models.learning.binning import Bin, BinningParams, bins_for
from models.learning.features import Feature
from models.spec import Scale

CLAMP_QUANTILES = (0.005, 0.995)  # the training scores between these fill the scale; the tails are clamped


@dataclass(frozen=True)
class ScorecardParams:
    c_grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)  # inverse L2 strengths tried, strongest first
    min_share_grid: tuple[float, ...] = (0.05, 0.02)  # smallest bin (share of leads) tried, coarsest first
    inner_folds: int = 3
    # Inner CV reads at most this many training leads (stratified): beyond them the penalty barely moves the
    # AUC, and a choice made on fewer leads errs towards less penalty per lead, which more leads support.
    inner_max_rows: int = 20_000
    prune: float = 1.0  # rules worth less than this many points are dropped
    binning: BinningParams = field(default_factory=BinningParams)


@dataclass(frozen=True)
class Choice:
    """The penalty and bin size inner cross-validation chose, and the mean inner AUC of every candidate."""

    c: float
    min_share: float
    inner_auc: dict[str, float] = field(default_factory=dict)  # "C=0.1, min share=0.02" → AUC


@dataclass(frozen=True)
class Scorecard:
    bins: list[Bin]
    points: np.ndarray  # integer points per bin (0: pruned, or a missing value training never saw)
    base: int  # base points every lead starts from (what puts the training scores on the scale)
    scale: Scale
    choice: Choice
    unseen_missing: tuple[str, ...] = ()  # columns no training lead left empty: their "missing" rule is 0

    def rules(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Fit and behaviour rules of the non-zero bins, in feature order; a column that scores keeps its
        ``missing`` rule even at 0 points, so what an empty value is worth is written, not implied."""
        scoring = {b.feature.name for b, p in zip(self.bins, self.points, strict=True) if p != 0}
        fit, behaviour = [], []
        for b, p in zip(self.bins, self.points, strict=True):
            if p != 0 or (b.kind == "missing" and b.feature.name in scoring):
                (behaviour if b.kind == "at_least" else fit).append(b.rule(int(p)))
        return fit, behaviour

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        """What the points engine gives these leads: base points plus their bins' points, clamped to the scale."""
        total = self.base + indicators(self.bins, frame) @ self.points.astype(np.float64)
        return np.clip(total, self.scale.min, self.scale.max)


def indicators(bins: list[Bin], frame: pl.DataFrame) -> sparse.csr_matrix:
    if not bins:
        return sparse.csr_matrix((frame.height, 0))
    hits = frame.select(b.indicator().alias(str(i)) for i, b in enumerate(bins)).to_numpy()
    rows, columns = np.nonzero(hits)
    return sparse.csr_matrix((np.ones(rows.size), (rows, columns)), shape=hits.shape)


def _bins(features: list[Feature], frame: pl.DataFrame, y: np.ndarray, raw: pl.DataFrame, tokens: tuple[str, ...],
          binning: BinningParams) -> list[Bin]:  # fmt: skip
    bins: list[Bin] = []
    for f in features:
        column = raw.get_column(f.name) if f.kind != "count" else None
        bins += bins_for(f, frame, y, column, tokens, binning)
    return bins


def _logistic(x: sparse.csr_matrix, y: np.ndarray, c: float) -> np.ndarray:
    return LogisticRegression(C=c, solver="newton-cholesky", max_iter=200).fit(x, y).coef_[0]


def choose(features: list[Feature], frame: pl.DataFrame, y: np.ndarray, raw: pl.DataFrame, tokens: tuple[str, ...],
           params: ScorecardParams, seed: int) -> Choice:  # fmt: skip
    """The (C, smallest bin) with the best mean AUC over inner folds of the training rows; bins are learned
    again on each inner training part, so the bin size is judged on rows that did not shape the bins.
    Candidates are tried simplest first (coarsest bins, then strongest penalty) and a later one must do better."""
    if len(params.c_grid) * len(params.min_share_grid) == 1:
        return Choice(params.c_grid[0], params.min_share_grid[0])
    if len(y) > params.inner_max_rows:
        rows, _ = train_test_split(np.arange(len(y)), train_size=params.inner_max_rows, stratify=y, random_state=seed)
        rows = np.sort(rows)
        frame, y, raw = frame[rows], y[rows], raw[rows]
    splitter = StratifiedKFold(params.inner_folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(y)), y))
    scores: dict[tuple[float, float], list[float]] = {}
    for share in params.min_share_grid:
        binning = replace(params.binning, min_share=share)
        for train, test in splits:
            bins = _bins(features, frame[train], y[train], raw[train], tokens, binning)
            x_train, x_test = indicators(bins, frame[train]), indicators(bins, frame[test])
            # One estimator along the grid, each fit starting from the previous (stronger) penalty's solution.
            model = LogisticRegression(solver="newton-cholesky", max_iter=200, warm_start=True)
            for c in sorted(params.c_grid):
                coef = model.set_params(C=c).fit(x_train, y[train]).coef_[0]
                scores.setdefault((c, share), []).append(float(roc_auc_score(y[test], x_test @ coef)))
    means = {key: float(np.mean(values)) for key, values in scores.items()}
    best = max(means, key=lambda key: round(means[key], 4))  # the first of equals: coarsest bins, strongest penalty
    return Choice(best[0], best[1], {f"C={c:g}, min share={s:g}": round(a, 4) for (c, s), a in means.items()})


def fit_scorecard(
    features: list[Feature],
    frame: pl.DataFrame,
    y: np.ndarray,
    raw: pl.DataFrame,
    tokens: tuple[str, ...],
    scale: Scale,
    params: ScorecardParams,
    seed: int = 0,
) -> Scorecard:
    """``frame``: the feature frame of the training rows; ``raw``: their attribute columns as given (for spellings)."""
    choice = choose(features, frame, y, raw, tokens, params, seed)
    binning = replace(params.binning, min_share=choice.min_share)
    bins = _bins(features, frame, y, raw, tokens, binning)
    x = indicators(bins, frame)
    beta = _logistic(x, y, choice.c)
    # A missing value no training lead had gets 0 points: the regression learned nothing about it.
    unseen = np.asarray(x.sum(axis=0)).ravel() == 0
    # A fit feature's bins cover every lead once, so shifting them all by one constant changes no ranking:
    # its worst bin becomes 0 (and is pruned), so every rule of a column is ≥ 0 and blanking the column
    # moves a score by at most its largest rule. Count thresholds stack, so they keep their sign.
    for name in {b.feature.name for b in bins if b.kind != "at_least"}:
        members = np.array([i for i, b in enumerate(bins) if b.feature.name == name])
        beta[members] -= beta[members[~unseen[members]]].min()
    beta[unseen] = 0.0
    raw_total = x @ beta
    lo, hi = np.quantile(raw_total, CLAMP_QUANTILES)
    factor = (scale.max - scale.min) / (hi - lo) if hi > lo else 1.0
    points = np.round(beta * factor)
    points[np.abs(beta * factor) < params.prune] = 0
    # Base points put the low end of the training scores on the scale minimum: their own line, so no
    # column carries the offset (and a lead with that column empty does not lose it).
    base = round(scale.min - lo * factor)
    missing = tuple(sorted({b.feature.name for b, u in zip(bins, unseen, strict=True) if u and b.kind == "missing"}))
    return Scorecard(bins, points.astype(np.int64), base, scale, choice, missing)
