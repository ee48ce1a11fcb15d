"""How a probability model's inputs become the estimator's matrix: category codes by frequency and each
input's typical value, learned from the training leads or read back from the model file."""

from dataclasses import dataclass

import numpy as np
import polars as pl

from models.learning.features import Feature
from models.spec import PointsModel, ProbabilityFeature

MAX_LEVELS = 60


@dataclass(frozen=True)
class Encoding:
    """How the feature frame becomes the estimator's matrix: category codes, and each input's reference."""

    features: list[Feature]
    levels: dict[str, list[str]]
    reference: dict[str, float]

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        columns = []
        for f in self.features:
            if f.kind == "categorical":
                codes = {level: float(i) for i, level in enumerate(self.levels[f.name])}
                other = float(len(codes))
                col = frame.get_column(f.name)
                coded = col.replace_strict(codes, default=other, return_dtype=pl.Float64).to_numpy().copy()
                coded[col.is_null().to_numpy()] = np.nan
                columns.append(coded)
            else:
                columns.append(frame.get_column(f.name).cast(pl.Float64).to_numpy())
        return np.column_stack(columns) if columns else np.empty((frame.height, 0))

    def spec(self) -> list[ProbabilityFeature]:
        out = []
        for f in self.features:
            ref: float | str | None = self.reference[f.name]
            if f.kind == "categorical":
                levels = self.levels[f.name]
                ref = levels[int(ref)] if ref is not None and int(ref) < len(levels) else None
            out.append(
                ProbabilityFeature(
                    name=f.name if f.kind != "count" else f.label,
                    kind=f.kind,
                    event=f.event,
                    within_days=f.window,
                    levels=self.levels.get(f.name, []),
                    reference=ref,
                )
            )
        return out


def encode(features: list[Feature], frame: pl.DataFrame) -> Encoding:
    """Category codes by frequency (the ``MAX_LEVELS`` most common; the rest share "other"); references are
    the median (numbers, counts) or the most common level."""
    levels: dict[str, list[str]] = {}
    reference: dict[str, float] = {}
    for f in features:
        col = frame.get_column(f.name)
        if f.kind == "categorical":
            counts = col.drop_nulls().value_counts(sort=True, name="n").sort(["n", f.name], descending=[True, False])
            levels[f.name] = counts.get_column(f.name).head(MAX_LEVELS).to_list()
            reference[f.name] = 0.0
        else:
            median = col.cast(pl.Float64).median()
            reference[f.name] = float(median) if median is not None else float("nan")
    return Encoding(features, levels, reference)


def from_spec(model: PointsModel) -> Encoding:
    """The encoding a probability model file describes."""
    assert model.probability is not None
    features, levels, reference = [], {}, {}
    for spec in model.probability.features:
        if spec.kind == "count":
            assert spec.event is not None
            f = Feature(f"{spec.event}|{'ever' if spec.within_days is None else f'{spec.within_days:g}'}", "count",
                        spec.event, spec.within_days)  # fmt: skip
        else:
            f = Feature(spec.name, spec.kind)
        features.append(f)
        if spec.kind == "categorical":
            levels[f.name] = spec.levels
            reference[f.name] = float(spec.levels.index(spec.reference)) if spec.reference in spec.levels else 0.0
        else:
            reference[f.name] = float(spec.reference) if spec.reference is not None else float("nan")
    return Encoding(features, levels, reference)
