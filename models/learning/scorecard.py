"""A points scorecard: per-column curves from an additive fit (``curves``), turned into integer points on the
portfolio scale, tiny contributions pruned, written as an ordinary points model.

Which fit (binned logistic, linear, line or bins, additive boosting), its penalty and its smallest bin are
chosen by inner cross-validation on the training rows: a fixed penalty that suits 3,500 converters overfits
350 spread over hundreds of bins, and free per-bin weights lose to a line on many weak coded columns. Then,
on top of the chosen curves, inner cross-validation decides how many combined rules of two columns
(``combined``) earn their place: none unless they raise the inner AUC by more than the folds' noise."""

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from models.learning.binning import Bin, BinningParams, indicators
from models.learning.combined import (
    Combined,
    CombinedParams,
    candidates,
    cell_bins,
    fewest_within_noise,
    fit_bonuses,
    fit_pair_cells,
    learn_combined,
    ranked_pairs,
)
from models.learning.curves import (
    BoostingParams,
    Curves,
    Design,
    binned_design,
    boosted_curves,
    linear_design,
    mixed_design,
)
from models.learning.features import Feature
from models.spec import Scale

CLAMP_QUANTILES = (0.005, 0.995)  # the training scores between these fill the scale; the tails are clamped
BINNED, LINEAR, MIXED, BOOSTING = "binned logistic", "linear", "line or bins", "additive boosting"


@dataclass(frozen=True)
class ScorecardParams:
    methods: tuple[str, ...] = (BINNED, LINEAR, MIXED, BOOSTING)  # simplest first: a later one must do better
    c_grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)  # inverse L2 strengths tried, strongest first
    min_share_grid: tuple[float, ...] = (0.05, 0.02)  # smallest bin (share of leads) tried, coarsest first
    inner_folds: int = 3
    # Inner CV reads at most this many training leads (stratified): beyond them the penalty barely moves the
    # AUC, and a choice made on fewer leads errs towards less penalty per lead, which more leads support.
    inner_max_rows: int = 20_000
    prune: float = 1.0  # rules worth less than this many points are dropped
    binning: BinningParams = field(default_factory=BinningParams)
    boosting: BoostingParams = field(default_factory=BoostingParams)
    # Additive boosting and line-or-bins are candidates up to this many training leads: beyond, the bins have
    # rows enough, and they cost more than the learn budget (100,000 leads: boosting 455 s instead of 31 s;
    # line-or-bins 59 CPU s instead of 41 without changing the AUC, 0.8766).
    small_max_rows: int = 20_000
    combined: CombinedParams = field(default_factory=CombinedParams)


@dataclass(frozen=True)
class Choice:
    """The fit inner cross-validation chose (with its penalty and bin size when it has them), and the mean
    inner AUC of every candidate."""

    method: str
    c: float | None = None
    min_share: float | None = None
    inner_auc: dict[str, float] = field(default_factory=dict)  # "binned logistic, C=0.1, min share=0.02" → AUC
    combined: int = 0  # combined rules at most (the fit may keep fewer)
    combined_auc: dict[int, float] = field(default_factory=dict)  # number of combined rules tried → mean inner AUC

    @property
    def label(self) -> str:
        parts = [self.method]
        if self.c is not None:
            parts.append(f"C={self.c:g}")
        if self.min_share is not None:
            parts.append(f"min share={self.min_share:g}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Scorecard:
    bins: list[Bin]
    points: np.ndarray  # integer points per bin (0: pruned, or a missing value training never saw)
    base: int  # base points every lead starts from (what puts the training scores on the scale)
    scale: Scale
    choice: Choice
    unseen_missing: tuple[str, ...] = ()  # columns no training lead left empty: their "missing" rule is 0
    combined: list[Combined] = field(default_factory=list)
    combined_points: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # each > 0

    def rules(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Fit and behaviour rules of the non-zero bins, in feature order; a column that scores keeps its
        ``missing`` rule even at 0 points, so what an empty value is worth is written, not implied."""
        scoring = {b.feature.name for b, p in zip(self.bins, self.points, strict=True) if p != 0}
        fit, behaviour = [], []
        for b, p in zip(self.bins, self.points, strict=True):
            if p != 0 or (b.kind == "missing" and b.feature.name in scoring):
                (behaviour if b.kind == "at_least" else fit).append(b.rule(int(p)))
        fit += [c.rule(int(p)) for c, p in zip(self.combined, self.combined_points, strict=True)]
        return fit, behaviour

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        """What the points engine gives these leads: base points plus their bins' points, clamped to the scale."""
        total = self.base + indicators(self.bins, frame) @ self.points.astype(np.float64)
        total += indicators(self.combined, frame) @ self.combined_points.astype(np.float64)
        return np.clip(total, self.scale.min, self.scale.max)


def _candidates(params: ScorecardParams, rows: int) -> list[Choice]:
    """Every candidate for ``rows`` training leads, simplest first: coarsest bins, then strongest penalty."""
    out: list[Choice] = []
    for method in params.methods:
        if method in (BOOSTING, MIXED) and rows > params.small_max_rows:
            continue
        if method in (BINNED, MIXED):
            out += [Choice(method, c, s) for s in params.min_share_grid for c in sorted(params.c_grid)]
        elif method == LINEAR:
            out += [Choice(LINEAR, c) for c in sorted(params.c_grid)]
        elif method == BOOSTING:
            out.append(Choice(BOOSTING))
        else:
            raise ValueError(f"unknown scorecard method {method!r}; expected {BINNED}, {LINEAR}, {MIXED} or {BOOSTING}")
    return out


def _design(method: str, features: list[Feature], frame: pl.DataFrame, y: np.ndarray, raw: pl.DataFrame,
            tokens: tuple[str, ...], binning: BinningParams) -> Design:  # fmt: skip
    build = {BINNED: binned_design, LINEAR: linear_design, MIXED: mixed_design}[method]
    return build(features, frame, y, raw, tokens, binning)


def _binning(choice: Choice, params: ScorecardParams) -> BinningParams:
    return replace(params.binning, min_share=choice.min_share) if choice.min_share is not None else params.binning


def _logistic(c: float) -> LogisticRegression:
    return LogisticRegression(C=c, solver="newton-cholesky", max_iter=200)


Margins = list[tuple[np.ndarray, np.ndarray]]  # per inner fold: a fit's log-odds on its training and test part


def choose(features: list[Feature], frame: pl.DataFrame, y: np.ndarray, raw: pl.DataFrame, tokens: tuple[str, ...],
           params: ScorecardParams, seed: int) -> tuple[Choice, Margins]:  # fmt: skip
    """The candidate with the best mean AUC over inner folds of the training rows; bins are learned again on
    each inner training part, so the bin size is judged on rows that did not shape the bins. Candidates are
    tried simplest first and a later one must do better. Also the winner's log-odds on each inner fold
    (none when there was nothing to choose), which the combined rules are screened and judged against."""
    candidates = _candidates(params, len(y))
    if len(candidates) == 1:
        return candidates[0], []
    rows = inner_rows(y, params, seed)
    frame, y, raw = frame[rows], y[rows], raw[rows]
    splitter = StratifiedKFold(params.inner_folds, shuffle=True, random_state=seed)
    scores: dict[str, list[float]] = {c.label: [] for c in candidates}
    margins: dict[str, Margins] = {c.label: [] for c in candidates}
    # One design per (method, bin size) and fold; along the C grid one estimator, each fit starting from the
    # previous (stronger) penalty's solution.
    designs = dict.fromkeys((c.method, c.min_share) for c in candidates if c.method != BOOSTING)
    for train, test in splitter.split(np.zeros(len(y)), y):
        part = (features, frame[train], y[train], raw[train], tokens)
        for method, share in designs:
            design = _design(method, *part, _binning(Choice(method, None, share), params))
            x_train, x_test = design.matrix(frame[train]), design.matrix(frame[test])
            model = _logistic(1.0).set_params(warm_start=True)
            for choice in (c for c in candidates if (c.method, c.min_share) == (method, share)):
                coef = model.set_params(C=choice.c).fit(x_train, y[train]).coef_[0]
                scores[choice.label].append(float(roc_auc_score(y[test], x_test @ coef)))
                margins[choice.label].append((x_train @ coef, x_test @ coef))
        if any(c.method == BOOSTING for c in candidates):
            curves = boosted_curves(*part, params.boosting, seed)
            raw_scores = indicators(curves.bins, frame[test]) @ curves.weights
            scores[Choice(BOOSTING).label].append(float(roc_auc_score(y[test], raw_scores)))
            margins[Choice(BOOSTING).label].append((indicators(curves.bins, frame[train]) @ curves.weights, raw_scores))
    means = {label: round(float(np.mean(values)), 4) for label, values in scores.items()}
    best = max(candidates, key=lambda c: means[c.label])  # the first of equals: the simplest
    return replace(best, inner_auc=means), margins[best.label]


def inner_rows(y: np.ndarray, params: ScorecardParams, seed: int) -> np.ndarray:
    """The training leads inner cross-validation reads: all, or a stratified ``inner_max_rows`` of them."""
    if len(y) <= params.inner_max_rows:
        return np.arange(len(y))
    rows, _ = train_test_split(np.arange(len(y)), train_size=params.inner_max_rows, stratify=y, random_state=seed)
    return np.sort(rows)


def choose_combined(choice: Choice, margins: Margins, features: list[Feature], frame: pl.DataFrame,
                    y: np.ndarray, raw: pl.DataFrame, tokens: tuple[str, ...], params: ScorecardParams,
                    seed: int) -> Choice:  # fmt: skip
    """``choice`` with the number of combined rules inner cross-validation keeps: on each inner training
    part (the folds ``choose`` used, with the chosen fit's ``margins``, or the chosen curves fitted here when
    there were none) the best pairs are screened once and each count's bonuses fitted on the same ranking;
    the fewest rules within the folds' noise of the best count win (0 when none helps)."""
    counts = sorted(set(params.combined.tried))
    if counts == [0] or not any(f.kind != "count" for f in features):
        return choice
    rows = inner_rows(y, params, seed)
    frame, y, raw = frame[rows], y[rows], raw[rows]
    splitter = StratifiedKFold(params.inner_folds, shuffle=True, random_state=seed)
    aucs: dict[int, list[float]] = {count: [] for count in counts}
    for number, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y)):
        part = (features, frame[train], y[train], raw[train], tokens)
        if margins:
            margin, test_margin = margins[number]
        else:
            curves = fit_curves(choice, *part, params, seed)
            margin, test_margin = (indicators(curves.bins, f) @ curves.weights for f in (frame[train], frame[test]))
        cells = cell_bins(*part, params.binning)
        if params.combined.whole_pairs:
            pairs = ranked_pairs(cells, frame[train], y[train], margin, max(counts), params.combined)
            rules = [rule for pair in pairs for rule in pair]  # each pair's cells together, best pair first
            met, test_met = indicators(rules, frame[train]), indicators(rules, frame[test])
            ends = np.cumsum([0, *(len(pair) for pair in pairs)])
            for count in counts:
                k = ends[min(count, len(pairs))]
                theta = fit_pair_cells(met[:, :k], margin, y[train], params.combined.pair_l2)
                aucs[count].append(float(roc_auc_score(y[test], test_margin + test_met[:, :k] @ theta[1:])))
            continue
        ranked = candidates(cells, frame[train], y[train], margin, max(counts), params.combined)
        met, test_met = indicators(ranked, frame[train]), indicators(ranked, frame[test])
        theta = np.zeros(1)  # each count's fit starts from the previous count's solution
        for count in counts:
            k = min(count, len(ranked))
            theta = fit_bonuses(
                met[:, :k], margin, y[train], params.combined.l2, np.pad(theta, (0, k + 1 - theta.size))
            )
            aucs[count].append(float(roc_auc_score(y[test], test_margin + test_met[:, :k] @ theta[1:])))
    means = {count: round(float(np.mean(values)), 4) for count, values in aucs.items()}
    return replace(choice, combined=fewest_within_noise(aucs), combined_auc=means)


def fit_curves(choice: Choice, features: list[Feature], frame: pl.DataFrame, y: np.ndarray, raw: pl.DataFrame,
               tokens: tuple[str, ...], params: ScorecardParams, seed: int) -> Curves:  # fmt: skip
    """The chosen fit on these rows, as bins and their log-odds weights."""
    if choice.method == BOOSTING:
        return boosted_curves(features, frame, y, raw, tokens, params.boosting, seed)
    assert choice.c is not None
    design = _design(choice.method, features, frame, y, raw, tokens, _binning(choice, params))
    coef = _logistic(choice.c).fit(design.matrix(frame), y).coef_[0]
    return Curves(design.bins, design.weights(coef))


def merged(bins: list[Bin], points: np.ndarray) -> tuple[list[Bin], np.ndarray]:
    """The same scores in fewer, wider rules: adjacent ranges of a column with equal points become one range
    (never one without bounds, which no rule could test), levels with equal points one list."""
    out: list[Bin] = []
    values: list[int] = []
    for b, p in zip(bins, points.tolist(), strict=True):
        if out and b.kind == "range" and out[-1].kind == "range" and out[-1].feature == b.feature:
            last = out[-1]
            if values[-1] == p and last.hi == b.lo and (last.lo is not None or b.hi is not None):
                out[-1] = replace(last, hi=b.hi)
                continue
        if b.kind == "levels":
            same = [i for i, o in enumerate(out) if o.feature == b.feature and o.kind == "levels" and values[i] == p]
            if same:
                o = out[same[0]]
                out[same[0]] = replace(o, levels=o.levels + b.levels, shown=o.shown + b.shown)
                continue
        out.append(b)
        values.append(p)
    return out, np.asarray(values, dtype=np.int64)


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
    choice = choose_combined(*choose(features, frame, y, raw, tokens, params, seed), features, frame, y, raw, tokens,
                             params, seed)  # fmt: skip
    curves = fit_curves(choice, features, frame, y, raw, tokens, params, seed)
    bins, beta = curves.bins, curves.weights.copy()
    x = indicators(bins, frame)
    cells = cell_bins(features, frame, y, raw, tokens, params.binning) if choice.combined else []
    combined, bonus = learn_combined(cells, frame, y, x @ beta, choice.combined, params.combined,
                                     inner_rows(y, params, seed))  # fmt: skip
    # A missing value no training lead had gets 0 points: the fit learned nothing about it.
    unseen = np.asarray(x.sum(axis=0)).ravel() == 0
    # A fit feature's bins cover every lead once, so shifting them all by one constant changes no ranking:
    # its worst bin becomes 0 (and is pruned), so every rule of a column is ≥ 0 and blanking the column
    # moves a score by at most its largest rule. Count thresholds stack, so they keep their sign.
    for name in {b.feature.name for b in bins if b.kind != "at_least"}:
        members = np.array([i for i, b in enumerate(bins) if b.feature.name == name])
        beta[members] -= beta[members[~unseen[members]]].min()
    beta[unseen] = 0.0
    raw_total = x @ beta + indicators(combined, frame) @ bonus
    lo, hi = np.quantile(raw_total, CLAMP_QUANTILES)
    factor = (scale.max - scale.min) / (hi - lo) if hi > lo else 1.0
    points = np.round(beta * factor)
    points[np.abs(beta * factor) < params.prune] = 0
    # Base points put the low end of the training scores on the scale minimum: their own line, so no
    # column carries the offset (and a lead with that column empty does not lose it).
    base = round(scale.min - lo * factor)
    missing = tuple(sorted({b.feature.name for b, u in zip(bins, unseen, strict=True) if u and b.kind == "missing"}))
    bins, points = merged(bins, points.astype(np.int64))
    combined_points = np.round(bonus * factor).astype(np.int64)
    kept = combined_points >= max(params.prune, 1)
    combined = [c for c, k in zip(combined, kept, strict=True) if k]
    return Scorecard(bins, points, base, scale, choice, missing, combined, combined_points[kept])


def header_lines(card: Scorecard, params: ScorecardParams) -> list[str]:
    """The model file's account of the scorecard: the chosen curves, every candidate's inner AUC, how to read it."""
    choice = card.choice
    if choice.method == "additive boosting":
        settings = "boosted trees of one column each, every column's step curve read as its rules"
    elif choice.method == LINEAR:
        settings = f"points per unit of each numeric column, L2 strength C = {choice.c:g}"
    elif choice.method == MIXED:
        settings = (
            f"each column of numbers a line (points per unit) or a rule per value, whichever its training leads "
            f"favour; L2 strength C = {choice.c:g}, smallest bin of other columns {choice.min_share:.0%} of the leads"
        )
    else:
        settings = f"L2 strength C = {choice.c:g}, smallest bin {choice.min_share:.0%} of the leads"
    by_method: dict[str, list[str]] = {}
    for label, auc in choice.inner_auc.items():
        method, _, setting = label.partition(", ")
        by_method.setdefault(method, []).append(f"{setting} {auc:.4f}" if setting else f"{auc:.4f}")
    lines = [
        f"Chosen by {params.inner_folds}-fold inner cross-validation on the training leads: {choice.method} "
        f"({settings}). Mean inner AUC of each candidate:",
        *(f"  {method}: {', '.join(aucs)}" for method, aucs in by_method.items()),
        "Every lead starts from base_points; each column adds the points of the one rule its value falls in",
        "(0 for the column's least converting values), so blanking a column moves a score by at most its",
        "largest rule. An empty value scores its column's 'missing' rule.",
    ]
    if choice.combined_auc:
        tried = ", ".join(f"{count} → {auc:.4f}" for count, auc in choice.combined_auc.items())
        whole = params.combined.whole_pairs
        unit = "pairs of columns, each a rule per cell above the pair's lowest" if whole else "rules"
        lines += [
            f"Combined rules (a bonus when two columns' values come together): at most {choice.combined} {unit} "
            f"kept, the fewest within the inner folds' noise of the best (mean inner AUC by number: {tried}).",
            "A combined rule only adds points, so blanking a column moves a score by at most its largest rule",
            "plus, for each column it is combined with, that pair's largest combined rule.",
        ]
    if card.unseen_missing:
        lines.append(
            "No training lead left these columns empty, so their 'missing' rule is worth 0: "
            + ", ".join(card.unseen_missing)
            + "."
        )
    return lines
