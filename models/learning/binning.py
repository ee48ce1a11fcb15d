"""Bins: numeric ranges (monotonic where the data allows), grouped categories with rare levels pooled,
and count thresholds. Each bin is both an indicator column for the regression and a points-model rule."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import polars as pl
from scipy import sparse

from models.learning.features import Feature

MAX_NUMERIC_BINS = 8
MAX_LEVELS = 20


@dataclass(frozen=True)
class BinningParams:
    min_share: float = 0.02  # a bin holds at least this share of the leads (and ``min_rows``)
    min_rows: int = 30
    group_tolerance: float = 0.015  # categories whose conversion rates differ by less are grouped
    monotonic_keep: float = 0.9  # keep the monotonic binning if it keeps this share of the information value


@dataclass(frozen=True)
class Bin:
    """One rule of a scorecard: ``range`` [lo, hi), ``levels``, ``missing``, ``other`` or ``at_least`` (counts)."""

    feature: Feature
    kind: Literal["range", "levels", "missing", "other", "at_least"]
    lo: float | None = None
    hi: float | None = None
    levels: tuple[str, ...] = ()  # normalised (trimmed, lower-case)
    shown: tuple[str, ...] = ()  # the levels as most often spelled in the data
    tokens: tuple[str, ...] = ()  # missing-value words seen in this column (``missing``/``other`` rules)
    known: tuple[str, ...] = ()  # every named level of the feature (for ``other``)
    threshold: int = 0

    @property
    def name(self) -> str:
        label = self.feature.label
        if self.kind == "range":
            if self.lo is None:
                return f"{label} < {_num(self.hi)}"
            if self.hi is None:
                return f"{label} ≥ {_num(self.lo)}"
            return f"{label} {_num(self.lo)} to < {_num(self.hi)}"
        if self.kind == "levels":
            return f"{label}: {' / '.join(self.shown)}"
        if self.kind == "missing":
            return f"{label}: missing"
        if self.kind == "other":
            return f"{label}: other"
        window = f" in {self.feature.window:g} days" if self.feature.window is not None else ""
        return f"{self.feature.event} ≥ {self.threshold}{window}"

    def indicator(self) -> pl.Expr:
        """True where a lead falls in the bin, on the feature frame (numbers as Float64, text normalised)."""
        col = pl.col(self.feature.name)
        if self.kind == "range":
            hit = pl.lit(True)
            if self.lo is not None:
                hit = hit & (col >= self.lo)
            if self.hi is not None:
                hit = hit & (col < self.hi)
            return hit.fill_null(False)
        if self.kind == "levels":
            return col.is_in(list(self.levels)).fill_null(False)
        if self.kind == "missing":
            return col.is_null()
        if self.kind == "other":
            return col.is_not_null() & ~col.is_in(list(self.known)).fill_null(False)
        return col >= self.threshold

    def rule(self, points: int) -> dict[str, Any]:
        """The same bin as a rule of the points-model grammar."""
        name, attribute = self.name, self.feature.name
        tokens = [t for t in self.tokens if t]
        if self.kind == "range":
            test: dict[str, float] = {}
            if self.lo is not None:
                test["ge"] = self.lo
            if self.hi is not None:
                test["lt"] = self.hi
            return {"name": name, "when": {attribute: test}, "points": points}
        if self.kind == "levels":
            return {"name": name, "when": {attribute: {"in": list(self.shown)}}, "points": points}
        if self.kind == "missing":
            if not tokens:
                return {"name": name, "when": {attribute: {"present": False}}, "points": points}
            options = [{attribute: {"present": False}}, {attribute: {"in": tokens}}]
            return {"name": name, "any_of": options, "points": points}
        if self.kind == "other":
            return {
                "name": name,
                "when": {attribute: {"present": True, "not_in": [*self.known, *tokens]}},
                "points": points,
            }
        rule: dict[str, Any] = {"name": name, "event": self.feature.event, "count_at_least": self.threshold}
        if self.feature.window is not None:
            rule["within_days"] = self.feature.window
        return {**rule, "points": points}


class Testable(Protocol):
    """Anything a lead falls in or not: a bin, or a combined rule of two bins."""

    def indicator(self) -> pl.Expr: ...


def indicators(bins: Sequence[Testable], frame: pl.DataFrame) -> sparse.csr_matrix:
    """One 0/1 column per bin (or combined rule): which leads of ``frame`` fall in it."""
    if not bins:
        return sparse.csr_matrix((frame.height, 0))
    hits = frame.select(b.indicator().alias(str(i)) for i, b in enumerate(bins)).to_numpy()
    rows, columns = np.nonzero(hits)
    return sparse.csr_matrix((np.ones(rows.size), (rows, columns)), shape=hits.shape)


def _num(value: float | None) -> str:
    return f"{value:g}" if value is not None else ""


def round_edge(value: float) -> float:
    """Three significant digits: readable edges in the YAML, and the same edges in training."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    digits = 2 - math.floor(math.log10(abs(value)))
    return float(round(value, digits))


def bins_for(feature: Feature, frame: pl.DataFrame, y: np.ndarray, raw: pl.Series | None, tokens: tuple[str, ...],
             params: BinningParams) -> list[Bin]:  # fmt: skip
    """The bins of one feature learned on ``frame`` (the feature frame of the training rows). An attribute
    always gets a ``missing`` bin, whether or not its training values had gaps: every lead falls in exactly
    one bin of the feature, and the scorecard decides what an empty value is worth."""
    values = frame.get_column(feature.name)
    min_rows = max(params.min_rows, math.ceil(params.min_share * len(y)))
    if feature.kind == "count":
        return _count_bins(feature, values.to_numpy(), min_rows)
    if feature.kind == "numeric":
        return _numeric_bins(feature, values, y, min_rows, params, missing_bin(feature, raw, tokens))
    return _categorical_bins(feature, values, y, raw, min_rows, params, missing_bin(feature, raw, tokens))


def missing_bin(feature: Feature, raw: pl.Series | None, tokens: tuple[str, ...]) -> Bin:
    """An attribute's "missing" bin. It names the missing-value words seen in the column, or every one when
    it had none (a form may still send "Select" at scoring time, and the "missing" rule must catch it)."""
    seen = (_seen_tokens(raw, tokens) if raw is not None else ()) or tuple(t for t in tokens if t)
    return Bin(feature, "missing", tokens=seen)


def _seen_tokens(raw: pl.Series, tokens: tuple[str, ...]) -> tuple[str, ...]:
    text = raw.cast(pl.Utf8).str.strip_chars()
    found = text.filter(text.str.to_lowercase().is_in(list(tokens))).unique().sort().to_list()
    return tuple(t for t in found if t)


def _count_bins(feature: Feature, counts: np.ndarray, min_rows: int) -> list[Bin]:
    positive = counts[counts > 0]
    if positive.size < min_rows:
        return []
    candidates = {1, *(int(np.quantile(positive, q)) for q in (0.5, 0.75, 0.9))}
    kept = [t for t in sorted(candidates) if (counts >= t).sum() >= min_rows]
    return [Bin(feature, "at_least", threshold=t) for t in kept]


def _numeric_bins(feature: Feature, values: pl.Series, y: np.ndarray, min_rows: int, params: BinningParams,
                  missing: Bin) -> list[Bin]:  # fmt: skip
    known = values.is_not_null().to_numpy()
    v, target = values.to_numpy()[known], y[known]
    edges = sorted({round_edge(float(q)) for q in np.quantile(v, np.linspace(0, 1, MAX_NUMERIC_BINS + 1)[1:-1])})
    edges = [e for e in edges if v.min() < e <= v.max()]
    groups = _merge_small(_assign(v, edges), target, len(edges) + 1, min_rows)
    edges = [edges[g - 1] for g in groups[1:]]
    free = edges
    if len(edges) > 1:
        direction = np.sign(np.corrcoef(np.argsort(np.argsort(v)), target)[0, 1]) or 1.0
        mono = _monotonic(v, target, edges, direction)
        if _iv(v, target, mono) >= params.monotonic_keep * _iv(v, target, free):
            edges = mono
    bounds = [None, *edges, None]
    bins = [Bin(feature, "range", lo=bounds[i], hi=bounds[i + 1]) for i in range(len(bounds) - 1)]
    bins.append(missing)
    return bins if len(bins) > 2 else []


def _assign(v: np.ndarray, edges: list[float]) -> np.ndarray:
    return np.searchsorted(np.asarray(edges), v, side="right")


def _merge_small(assigned: np.ndarray, y: np.ndarray, n: int, min_rows: int) -> list[int]:
    """Starts of bins (indices into the initial bins) after merging each too-small bin into its neighbour."""
    starts = list(range(n))
    sizes = list(np.bincount(assigned, minlength=n))
    i = 0
    while len(starts) > 1 and i < len(starts):
        if sizes[i] >= min_rows:
            i += 1
            continue
        j = i - 1 if i == len(starts) - 1 else i  # merge with the next bin, the last one with the previous
        sizes[j] += sizes[j + 1]
        del sizes[j + 1], starts[j + 1]
        i = max(j, 0)
    return starts


def _monotonic(v: np.ndarray, y: np.ndarray, edges: list[float], direction: float) -> list[float]:
    """Pool adjacent bins until conversion rates move in one direction (pool-adjacent-violators)."""
    assigned = _assign(v, edges)
    blocks = [[int((assigned == i).sum()), float(y[assigned == i].sum()), i] for i in range(len(edges) + 1)]
    merged: list[list[float]] = []
    for block in blocks:
        merged.append(block)
        while len(merged) > 1 and direction * (merged[-1][1] / merged[-1][0] - merged[-2][1] / merged[-2][0]) < 0:
            last = merged.pop()
            merged[-1] = [merged[-1][0] + last[0], merged[-1][1] + last[1], merged[-1][2]]
    return [edges[int(block[2]) - 1] for block in merged[1:]]


def _iv(v: np.ndarray, y: np.ndarray, edges: list[float]) -> float:
    """Information value: how much the binning separates converters from the rest."""
    assigned = _assign(v, edges)
    pos = np.bincount(assigned, weights=y, minlength=len(edges) + 1) + 0.5
    neg = np.bincount(assigned, weights=1 - y, minlength=len(edges) + 1) + 0.5
    p, n = pos / pos.sum(), neg / neg.sum()
    return float(((p - n) * np.log(p / n)).sum())


def _categorical_bins(feature: Feature, values: pl.Series, y: np.ndarray, raw: pl.Series | None, min_rows: int,
                      params: BinningParams, missing: Bin) -> list[Bin]:  # fmt: skip
    frame = pl.DataFrame({"v": values, "y": y, "raw": raw.str.strip_chars() if raw is not None else values})
    stats = (
        frame.filter(pl.col("v").is_not_null())
        .group_by("v")
        .agg(pl.len().alias("n"), pl.col("y").mean().alias("rate"), pl.col("raw").mode().sort().first().alias("shown"))
        .sort("n", "v", descending=[True, False])
    )
    kept = stats.filter(pl.col("n") >= min_rows).head(MAX_LEVELS).sort("rate", "v")
    groups: list[list[dict[str, Any]]] = []
    for level in kept.iter_rows(named=True):
        group = groups[-1] if groups else None
        if group is not None:
            pooled = sum(g["rate"] * g["n"] for g in group) / sum(g["n"] for g in group)
            if abs(level["rate"] - pooled) < params.group_tolerance:
                group.append(level)
                continue
        groups.append([level])
    known = tuple(sorted(g["v"] for group in groups for g in group))
    bins = [
        Bin(feature, "levels", levels=tuple(g["v"] for g in group), shown=tuple(g["shown"] for g in group))
        for group in groups
    ]
    if kept.height < stats.height:
        bins.append(Bin(feature, "other", tokens=missing.tokens, known=known))
    bins.append(missing)
    return bins if len(bins) > 2 else []
