"""Combined rules: a bonus when two columns' values come together (``Lead Source: Reference AND Occupation:
Working Professional: +N``), the way marketers already write a "bonus for combined activity".

A per-column table cannot say "this source converts well, but only for working professionals". Candidates
are the cells of every pair of attribute columns (one bin of each, the columns' ordinary bins), screened
cheaply: the Newton gain ``G² / (H + l2)`` of the cell's residuals under the per-column fit (``G``: the
converters the fit under-predicts there, ``H``: its variance). The best few become 0/1 columns whose
non-negative bonuses are fitted with the per-column curves held, so every combined rule adds points and
the table stays additive: a lead's score is base points + one rule per column + the combined rules it meets.
How many rules (none at all included) is chosen by inner cross-validation in ``scorecard``."""

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl
from scipy import sparse
from scipy.optimize import minimize
from scipy.special import expit

from models.learning.binning import Bin, BinningParams, bins_for, indicators
from models.learning.features import Feature


@dataclass(frozen=True)
class CombinedParams:
    counts: tuple[int, ...] = (0, 1, 2, 3, 5, 8, 12, 20)  # numbers of combined rules tried, fewest first
    min_share: float = 0.01  # a combined rule holds at least this share of the training leads…
    min_rows: int = 30  # …and at least this many
    l2: float = 1.0  # ridge on the bonuses (log-odds), and in the screening gain
    # Whole pairs: ``counts`` are pairs of columns, each with a rule for every cell of their bins (free-sign
    # log-odds under a ridge of ``pair_l2``, shifted so the pair's lowest cell is 0), instead of single cells.
    whole_pairs: bool = True
    pair_l2: float = 10.0
    pair_counts: tuple[int, ...] = (0, 1, 2, 3, 5, 8)  # numbers of pairs tried, fewest first

    @property
    def tried(self) -> tuple[int, ...]:
        """The numbers of rules (or of whole pairs) inner cross-validation chooses among."""
        return self.pair_counts if self.whole_pairs else self.counts


@dataclass(frozen=True)
class Combined:
    """One combined rule: a lead meets it when it falls in both bins (of two different columns)."""

    first: Bin
    second: Bin

    @property
    def columns(self) -> tuple[str, str]:
        return self.first.feature.name, self.second.feature.name

    @property
    def name(self) -> str:
        return f"{self.first.name} AND {self.second.name}"

    def indicator(self) -> pl.Expr:
        return self.first.indicator() & self.second.indicator()

    def rule(self, points: int) -> dict[str, Any]:
        """Both bins' conditions in one rule of the points-model grammar: their ``when`` tests side by side
        (every field's tests must hold), and when both are written as alternatives (``any_of``), every
        pairing of one alternative of each, which is the same AND of two ORs."""
        one, two = self.first.rule(points), self.second.rule(points)
        rule: dict[str, Any] = {"name": self.name}
        when = {**one.get("when", {}), **two.get("when", {})}
        if when:
            rule["when"] = when
        if "any_of" in one or "any_of" in two:
            rule["any_of"] = [{**a, **b} for a in one.get("any_of", [{}]) for b in two.get("any_of", [{}])]
        return {**rule, "points": points}


def cell_bins(features: list[Feature], frame: pl.DataFrame, y: np.ndarray, raw: pl.DataFrame,
              tokens: tuple[str, ...], binning: BinningParams) -> list[Bin]:  # fmt: skip
    """Every attribute column's bins with each frequent level on its own and numbers in quantile ranges
    (event counts have no fit-rule test to combine). Neither levels grouped by their own conversion rate
    nor ranges pooled until it is monotonic: levels that convert alike on average (the two halves of an
    XOR) may convert very differently in combination."""
    apart = replace(binning, group_tolerance=-1.0, monotonic_keep=math.inf)
    out: list[Bin] = []
    for f in features:
        if f.kind != "count":
            out += bins_for(f, frame, y, raw.get_column(f.name), tokens, apart)
    return out


def screen(cells: list[Bin], hits: sparse.csr_matrix, margin: np.ndarray, y: np.ndarray, limit: int,
           min_rows: int, l2: float) -> list[Combined]:  # fmt: skip
    """The ``limit`` pairs of cells (of two columns) with the largest positive residual gain, best first.
    ``hits``: the leads' cell indicators; ``margin``: the per-column fit's log-odds for the same leads.
    One sparse product gives every pair's residual sums at once."""
    p = expit(margin + _intercept(margin, y))
    crossed = hits.T.tocsr()
    residual = (crossed @ hits.multiply((y - p)[:, None]).tocsr()).toarray()
    variance = (crossed @ hits.multiply((p * (1 - p))[:, None]).tocsr()).toarray()
    size = (crossed @ hits).toarray()
    owner = np.unique([c.feature.name for c in cells], return_inverse=True)[1]
    eligible = (owner[:, None] < owner[None, :]) & (size >= min_rows) & (residual > 0)
    gain = np.where(eligible, residual**2 / (variance + l2), 0.0)
    best = np.argsort(-gain, axis=None, kind="stable")[:limit]
    pairs = [np.unravel_index(k, gain.shape) for k in best if gain.flat[k] > 0]
    return [Combined(cells[i], cells[j]) for i, j in pairs]


def _intercept(margin: np.ndarray, y: np.ndarray) -> float:
    """The constant that makes the mean predicted rate the observed one (the curves carry no intercept):
    residuals are judged against the right base rate. Newton steps on the one-parameter log-likelihood."""
    shift = 0.0
    for _ in range(25):
        p = expit(margin + shift)
        step = float((y - p).sum() / max((p * (1 - p)).sum(), 1e-12))
        shift += step
        if abs(step) < 1e-10:
            break
    return shift


def fit_bonuses(met: sparse.csr_matrix, margin: np.ndarray, y: np.ndarray, l2: float,
                start: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """The intercept, then the non-negative bonuses (log-odds) of the combined rules ``met`` on top of the
    per-column ``margin``: an L2-penalised logistic fit with bounds, so a rule either adds or is dropped,
    never subtracts. ``start``: a first guess (a fit of fewer rules, padded with zeros)."""
    k = met.shape[1]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        eta = margin + theta[0] + met @ theta[1:]
        value = float(np.sum(np.logaddexp(0.0, eta) - y * eta)) + 0.5 * l2 * float(theta[1:] @ theta[1:])
        error = expit(eta) - y
        return value, np.concatenate([[error.sum()], met.T @ error + l2 * theta[1:]])

    first = np.zeros(k + 1) if start is None else start
    return minimize(loss, first, jac=True, method="L-BFGS-B", bounds=[(None, None)] + [(0.0, None)] * k).x


def fit_pair_cells(met: sparse.csr_matrix, margin: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """The intercept, then the log-odds of whole pairs' cells ``met`` on top of the per-column ``margin``,
    free in sign under a ridge of ``l2`` (the caller shifts each pair so its lowest cell is 0). By Newton
    steps: a few dozen cells give a small dense Hessian, so a handful of exact steps (halved while the loss
    does not fall) reach the optimum that L-BFGS-B approached in ~70 iterations, each with SciPy's
    per-iteration overhead (0.05 s for a single parameter)."""
    x = sparse.hstack([np.ones((met.shape[0], 1)), met], format="csr")
    ridge = np.full(x.shape[1], l2)
    ridge[0] = 0.0  # the intercept is free

    def loss(theta: np.ndarray) -> float:
        eta = margin + x @ theta
        return float(np.sum(np.logaddexp(0.0, eta) - y * eta)) + 0.5 * float(ridge @ theta**2)

    theta = np.zeros(x.shape[1])
    value = loss(theta)
    for _ in range(100):
        p = expit(margin + x @ theta)
        gradient = x.T @ (p - y) + ridge * theta
        hessian = (x.T @ x.multiply((p * (1 - p))[:, None])).toarray() + np.diag(ridge)
        step = np.linalg.solve(hessian + 1e-12 * np.eye(x.shape[1]), gradient)
        if np.abs(step).max() < 1e-9:
            break
        while (candidate := loss(theta - step)) > value and np.abs(step).max() >= 1e-9:
            step /= 2
        if candidate > value:
            break
        theta, gain, value = theta - step, value - candidate, candidate
        if gain <= 1e-12 * value:
            break  # converged: what is left of the step is rounding noise
    return theta


def candidates(cells: list[Bin], frame: pl.DataFrame, y: np.ndarray, margin: np.ndarray, limit: int,
               params: CombinedParams) -> list[Combined]:  # fmt: skip
    """The ``limit`` best combined rules of these leads by residual gain (``screen``), best first."""
    if limit == 0 or not cells:
        return []
    min_rows = max(math.ceil(params.min_share * len(y)), params.min_rows)
    return screen(cells, indicators(cells, frame), margin, y, limit, min_rows, params.l2)


def bonuses(rules: list[Combined], frame: pl.DataFrame, y: np.ndarray, margin: np.ndarray,
            params: CombinedParams) -> tuple[list[Combined], np.ndarray]:  # fmt: skip
    """The rules the non-negative fit gives a bonus, with their bonuses (log-odds)."""
    if not rules:
        return [], np.zeros(0)
    bonus = fit_bonuses(indicators(rules, frame), margin, y, params.l2)[1:]
    kept = bonus > 0
    return [c for c, k in zip(rules, kept, strict=True) if k], bonus[kept]


def learn_combined(cells: list[Bin], frame: pl.DataFrame, y: np.ndarray, margin: np.ndarray, count: int,
                   params: CombinedParams, screen_rows: np.ndarray) -> tuple[list[Combined], np.ndarray]:  # fmt: skip
    """Up to ``count`` combined rules (or pairs of columns), screened on the ``screen_rows`` leads, their
    bonuses fitted on all."""
    if not params.whole_pairs:
        ranked = candidates(cells, frame[screen_rows], y[screen_rows], margin[screen_rows], count, params)
        return bonuses(ranked, frame, y, margin, params)
    pairs = ranked_pairs(cells, frame[screen_rows], y[screen_rows], margin[screen_rows], count, params)
    rules = [rule for pair in pairs for rule in pair]
    if not rules:
        return [], np.zeros(0)
    met = indicators(rules, frame)
    theta = fit_pair_cells(met, margin, y, params.pair_l2)[1:]
    seen = np.asarray(met.sum(axis=0)).ravel() > 0
    start = 0
    for pair in pairs:  # a lead is in one cell of each pair: shifting a pair's cells changes no ranking
        own = slice(start, start + len(pair))
        theta[own] -= theta[own][seen[own]].min()
        start += len(pair)
    theta[~seen] = 0.0  # a cell no training lead was in: the fit learned nothing about it
    kept = theta > 0
    return [c for c, k in zip(rules, kept, strict=True) if k], theta[kept]


def ranked_pairs(cells: list[Bin], frame: pl.DataFrame, y: np.ndarray, margin: np.ndarray, limit: int,
                 params: CombinedParams) -> list[list[Combined]]:  # fmt: skip
    """The ``limit`` best pairs of columns of these leads (``top_pairs``), each as all its cells."""
    if limit == 0 or not cells:
        return []
    return top_pairs(cells, indicators(cells, frame), margin, y, limit, params.l2)


def fewest_within_noise(aucs: dict[int, list[float]]) -> int:
    """The fewest combined rules whose mean inner AUC is within one standard error (of the per-fold
    differences) of the best count's: more rules must beat fewer by more than the folds' noise."""
    means = {count: float(np.mean(values)) for count, values in aucs.items()}
    best = max(means, key=lambda count: (means[count], -count))
    for count in sorted(aucs):
        differences = np.asarray(aucs[best]) - np.asarray(aucs[count])
        noise = float(np.std(differences, ddof=1) / np.sqrt(differences.size)) if differences.size > 1 else 0.0
        if means[best] - means[count] <= noise:
            return count
    return best


def top_pairs(cells: list[Bin], hits: sparse.csr_matrix, margin: np.ndarray, y: np.ndarray, limit: int,
              l2: float) -> list[list[Combined]]:  # fmt: skip
    """The ``limit`` pairs of columns whose cells together gain most on the residuals of the per-column fit
    (each cell's Newton gain ``G² / (H + l2)`` less 1, what a cell of pure noise gains on average), best
    first, each as all its cells: every lead falls in exactly one cell of a pair."""
    p = expit(margin + _intercept(margin, y))
    crossed = hits.T.tocsr()
    residual = (crossed @ hits.multiply((y - p)[:, None]).tocsr()).toarray()
    variance = (crossed @ hits.multiply((p * (1 - p))[:, None]).tocsr()).toarray()
    names, owner = np.unique([c.feature.name for c in cells], return_inverse=True)
    gain = residual**2 / (variance + l2) - 1.0
    columns = len(names)
    total = np.zeros((columns, columns))
    np.add.at(total, (owner[:, None].repeat(len(cells), 1), owner[None, :].repeat(len(cells), 0)), gain)
    upper = np.triu(np.ones((columns, columns), dtype=bool), k=1)
    ranked = np.argsort(-np.where(upper, total, -np.inf), axis=None, kind="stable")[:limit]
    out = []
    for k in ranked:
        a, b = np.unravel_index(k, total.shape)
        if not upper[a, b] or total[a, b] <= 0:
            break
        first = [c for c, o in zip(cells, owner, strict=True) if o == a]
        second = [c for c, o in zip(cells, owner, strict=True) if o == b]
        out.append([Combined(i, j) for i in first for j in second])
    return out
