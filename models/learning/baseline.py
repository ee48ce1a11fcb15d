"""The baseline every learned model is judged against: a plain logistic regression on the same columns."""

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from models.learning.features import Feature


@dataclass(frozen=True)
class Baseline:
    """A plain logistic regression on the same columns: categories one-hot (missing as a level), numbers
    standardised with the median for missing plus a missing flag, counts as log(1 + n) scaled."""

    features: list[Feature]
    levels: dict[str, list[str]]
    centre: dict[str, tuple[float, float, float]]  # fill, mean, std
    model: LogisticRegression | None = None

    @classmethod
    def fit(cls, features: list[Feature], frame: pl.DataFrame, y: np.ndarray) -> "Baseline":
        levels, centre = {}, {}
        for f in features:
            col = frame.get_column(f.name)
            if f.kind == "categorical":
                levels[f.name] = sorted(col.drop_nulls().unique().to_list())
            else:
                values = cls._numbers(f, col)
                fill = float(np.nanmedian(values)) if np.isfinite(values).any() else 0.0
                filled = np.where(np.isnan(values), fill, values)
                centre[f.name] = (fill, float(filled.mean()), float(filled.std()) or 1.0)
        plain = cls(features, levels, centre)
        model = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=200).fit(plain.matrix(frame), y)
        return cls(features, levels, centre, model)

    @staticmethod
    def _numbers(f: Feature, col: pl.Series) -> np.ndarray:
        values = col.cast(pl.Float64).to_numpy().astype(np.float64)
        return np.log1p(values) if f.kind == "count" else values

    def matrix(self, frame: pl.DataFrame) -> sparse.csr_matrix:
        """Sparse: one-hot blocks hold one value per row, which keeps the solver's Hessian cheap."""
        n = frame.height
        parts = []
        for f in self.features:
            col = frame.get_column(f.name)
            if f.kind == "categorical":
                codes = {level: i for i, level in enumerate(self.levels[f.name])}
                missing = len(codes)
                index = col.replace_strict(codes, default=-1, return_dtype=pl.Int64).fill_null(missing).to_numpy()
                known = index >= 0
                parts.append(
                    sparse.csr_matrix(
                        (np.ones(known.sum()), (np.flatnonzero(known), index[known])), shape=(n, missing + 1)
                    )
                )
                continue
            values = self._numbers(f, col)
            fill, mean, std = self.centre[f.name]
            # Counts are scaled but not centred: mostly zero, they stay sparse.
            centre = mean if f.kind == "numeric" else 0.0
            columns = [(np.where(np.isnan(values), fill, values) - centre) / std]
            if f.kind == "numeric":
                columns.append(np.isnan(values).astype(np.float64))
            parts.append(sparse.csr_matrix(np.column_stack(columns)))
        return sparse.hstack(parts, format="csr")

    def probability(self, frame: pl.DataFrame) -> np.ndarray:
        assert self.model is not None
        return self.model.predict_proba(self.matrix(frame))[:, 1]
