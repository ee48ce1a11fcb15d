"""A points scorecard: an L2-regularised logistic regression on bins, its coefficients turned into
integer points on the portfolio scale, tiny contributions pruned, written as an ordinary points model."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from models.learning.binning import Bin, BinningParams, bins_for
from models.learning.features import Feature
from models.spec import Scale

CLAMP_QUANTILES = (0.005, 0.995)  # the training scores between these fill the scale; the tails are clamped


@dataclass(frozen=True)
class ScorecardParams:
    c: float = 0.5  # inverse L2 strength
    prune: float = 1.0  # rules worth less than this many points are dropped
    binning: BinningParams = field(default_factory=BinningParams)


@dataclass(frozen=True)
class Scorecard:
    bins: list[Bin]
    points: np.ndarray  # integer points per bin (0: pruned)
    scale: Scale

    def rules(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Fit and behaviour rules of the non-zero bins, in feature order."""
        fit, behaviour = [], []
        for b, p in zip(self.bins, self.points, strict=True):
            if p != 0:
                (behaviour if b.kind == "at_least" else fit).append(b.rule(int(p)))
        return fit, behaviour

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        """What the points engine gives these leads: the sum of their bins' points, clamped to the scale."""
        total = indicators(self.bins, frame) @ self.points.astype(np.float64)
        return np.clip(total, self.scale.min, self.scale.max)


def indicators(bins: list[Bin], frame: pl.DataFrame) -> sparse.csr_matrix:
    if not bins:
        return sparse.csr_matrix((frame.height, 0))
    hits = frame.select(b.indicator().alias(str(i)) for i, b in enumerate(bins)).to_numpy()
    rows, columns = np.nonzero(hits)
    return sparse.csr_matrix((np.ones(rows.size), (rows, columns)), shape=hits.shape)


def fit_scorecard(
    features: list[Feature],
    frame: pl.DataFrame,
    y: np.ndarray,
    raw: pl.DataFrame,
    tokens: tuple[str, ...],
    scale: Scale,
    params: ScorecardParams,
) -> Scorecard:
    """``frame``: the feature frame of the training rows; ``raw``: their attribute columns as given (for spellings)."""
    bins: list[Bin] = []
    for f in features:
        column = raw.get_column(f.name) if f.kind != "count" else None
        bins += bins_for(f, frame, y, column, tokens, params.binning)
    x = indicators(bins, frame)
    model = LogisticRegression(C=params.c, solver="newton-cholesky", max_iter=200)
    model.fit(x, y)
    beta = model.coef_[0].copy()
    # A fit feature's bins cover every lead once, so shifting them all by one constant changes no ranking:
    # its worst bin becomes 0 (and is pruned). Count thresholds stack, so they keep their sign.
    for name in {b.feature.name for b in bins if b.kind != "at_least"}:
        members = [i for i, b in enumerate(bins) if b.feature.name == name]
        beta[members] -= beta[members].min()
    raw_total = x @ beta
    lo, hi = np.quantile(raw_total, CLAMP_QUANTILES)
    factor = (scale.max - scale.min) / (hi - lo) if hi > lo else 1.0
    points = np.round(beta * factor)
    points[np.abs(beta * factor) < params.prune] = 0
    # The offset that puts the low end of the training scores on the scale minimum goes on every bin of
    # the first fit feature (whose bins cover every lead): the points table needs no intercept rule.
    offset = round(scale.min - lo * factor)
    first = next((b.feature.name for b in bins if b.kind != "at_least"), None)
    if offset and first is not None:
        points[[i for i, b in enumerate(bins) if b.feature.name == first]] += offset
    return Scorecard(bins, points.astype(np.int64), scale)
