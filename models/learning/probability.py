"""A probability model: logistic regression, gradient boosting or a stack of both, chosen by inner CV, with
calibrated probabilities mapped onto the scale and per-lead reasons (how much each input moved this lead's
score away from a typical value)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV, _fit_calibrator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, StackingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, LabelEncoder, OneHotEncoder, StandardScaler
from sklearn.utils import Bunch
from threadpoolctl import threadpool_limits

from models.frames import RESULT_SCHEMA, extract, utc_occurred_at
from models.learning.artifacts import load
from models.learning.encoding import Encoding, from_spec
from models.learning.features import Feature, attribute_frame, event_counts
from models.learning.history import ROW
from models.spec import PointsModel, Scale
from store.shapes import BREAKDOWN_TYPE, utc_instant

LOGISTIC, BOOSTING, STACK = "logistic regression", "gradient boosting", "stack of both"
BASE_RULE, OTHER_RULE = "scale: typical lead", "other factors"
# One OpenMP thread: on a shared machine, gradient boosting's spinning threads slow it down up to 6x
# (measured: 10.6 s with the default threads against 1.8 s with one, on 2 busy cores).


@dataclass(frozen=True)
class ProbabilityParams:
    max_iter: int = 200
    learning_rate: float = 0.06
    max_leaf_nodes: int = 15
    l2_regularization: float = 1.0
    # Estimators tried by inner CV on the training leads: on a small or sparse history a logistic regression
    # ranks better than boosting, on a large one boosting wins, and often a stack of both (a logistic
    # regression on the two members' out-of-fold log-odds) beats either.
    candidates: tuple[str, ...] = (LOGISTIC, BOOSTING, STACK)
    # The stack is chosen only when it beats the better member by more than this many standard errors of
    # their per-fold AUC differences: on the sparse synthetic set a lead of one to two SE did not hold.
    stack_margin: float = 2.0
    select_folds: int = 5  # 3 folds on Leads.csv picked a blend 0.001 under boosting alone: too noisy
    # Beyond this many training leads, 2 folds: each member is fitted on half the leads (one full fit's cost)
    # and the out-of-fold AUC still reads every lead, so the estimate stays stable.
    large_rows: int = 10_000
    large_select_folds: int = 2
    # Beyond this many training leads the choice (with the calibration or the stack's weights) is made on a
    # stratified sample of them, the chosen estimator still fitted on all: on 100,000 leads the inner fits
    # were half of learn's time, and 40,000 leads judge the choice as surely.
    select_rows: int = 40_000


def _logistic(encoding: Encoding) -> Any:
    """A plain logistic regression on the estimator's matrix: category codes one-hot (missing and "other" as
    levels), numbers standardised with the median for missing plus a missing flag, counts as log(1 + n)."""
    kinds = [f.kind for f in encoding.features]
    columns = {kind: [i for i, k in enumerate(kinds) if k == kind] for kind in ("categorical", "numeric", "count")}
    steps = {
        "categorical": make_pipeline(SimpleImputer(strategy="constant", fill_value=-1.0),
                                     OneHotEncoder(handle_unknown="ignore")),
        "numeric": make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
        "count": make_pipeline(FunctionTransformer(np.log1p), StandardScaler()),
    }  # fmt: skip
    encoder = ColumnTransformer([(kind, steps[kind], index) for kind, index in columns.items() if index])
    return make_pipeline(encoder, LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=200))


def member(name: str, encoding: Encoding, seed: int, params: ProbabilityParams) -> Any:
    """One of the two estimators every candidate is made of: ``LOGISTIC`` or ``BOOSTING``."""
    if name == LOGISTIC:
        return _logistic(encoding)
    categorical = np.array([f.kind == "categorical" for f in encoding.features], dtype=bool)
    return HistGradientBoostingClassifier(
        max_iter=params.max_iter,
        learning_rate=params.learning_rate,
        max_leaf_nodes=params.max_leaf_nodes,
        l2_regularization=params.l2_regularization,
        categorical_features=categorical if categorical.any() else None,
        # sklearn's "auto": stop when 10 rounds no longer improve a 10 % validation part, only beyond 10,000
        # leads (where it saves most of the 200 rounds and the part costs nothing); small histories use all rows.
        early_stopping="auto",
        random_state=seed,
    )


def members_of(name: str) -> tuple[str, ...]:
    return (LOGISTIC, BOOSTING) if name == STACK else (name,)


def _stacker(decision: np.ndarray, y: np.ndarray) -> LogisticRegression:
    """The stack's final estimator: a logistic regression on the members' log-odds (``decision``, one
    column each) — it weighs them and calibrates the result in one fit."""
    return LogisticRegression().fit(decision, y)


@dataclass(frozen=True)
class InnerCV:
    """Out-of-fold decision values of the members on the training leads, and the folds: what the choice
    compares and what the chosen estimator's calibration (or the stack's weights) is fitted on."""

    decision: dict[str, np.ndarray]
    folds: list[tuple[np.ndarray, np.ndarray]]
    rows: np.ndarray | None = None  # the training leads judged (a sample of many), positions; None: all

    def judged(self, y: np.ndarray) -> np.ndarray:
        return y if self.rows is None else y[self.rows]

    def stacked(self) -> np.ndarray:
        return np.column_stack([self.decision[name] for name in members_of(STACK)])

    def fold_aucs(self, name: str, y: np.ndarray) -> np.ndarray:
        """A candidate's AUC on each inner fold. The stack's weights for a fold are fitted on the other
        folds' out-of-fold values, so the stack is judged on leads its weights never saw, like the members."""
        aucs, stacked = [], self.stacked() if name == STACK else None
        for _, test in self.folds:
            if stacked is not None:
                rest = np.setdiff1d(np.arange(len(y)), test)
                stacker = _stacker(stacked[rest], y[rest])
                aucs.append(roc_auc_score(y[test], stacker.decision_function(stacked[test])))
            else:
                aucs.append(roc_auc_score(y[test], self.decision[name][test]))
        return np.array(aucs)


def inner_cv(matrix: np.ndarray, y: np.ndarray, encoding: Encoding, seed: int, params: ProbabilityParams) -> InnerCV:
    """Each member fitted once per inner fold; the stack reuses the members' out-of-fold values."""
    rows = None
    if len(y) > params.select_rows:
        rows = np.sort(train_test_split(np.arange(len(y)), train_size=params.select_rows, stratify=y,
                                        random_state=seed)[0])  # fmt: skip
        matrix, y = matrix[rows], y[rows]
    k = params.select_folds if len(y) <= params.large_rows else params.large_select_folds
    folds = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(matrix, y))
    needed = [name for name in (LOGISTIC, BOOSTING) if any(name in members_of(c) for c in params.candidates)]
    with threadpool_limits(1, user_api="openmp"):
        decision = {
            name: cross_val_predict(
                member(name, encoding, seed, params), matrix, y, cv=folds, method="decision_function"
            )
            for name in needed
        }
    return InnerCV(decision, folds, rows)


def choose_estimator(y: np.ndarray, cv: InnerCV, params: ProbabilityParams) -> dict[str, Any]:
    """The member (logistic regression or boosting, as the exact baselines) with the better mean inner-fold
    AUC, or the stack when it beats that member by more than ``params.stack_margin`` standard errors of
    their per-fold differences; and why. So the choice is never worse than the best candidate's inner AUC
    by more than that margin, and a stack's lead within the folds' noise keeps the plain member."""
    aucs = {name: cv.fold_aucs(name, y) for name in params.candidates}
    mean = {name: float(a.mean()) for name, a in aucs.items()}
    members = [name for name in params.candidates if name != STACK]
    chosen = max(members, key=lambda name: mean[name]) if members else STACK  # on equal AUC the simpler
    why = f"the better member's {len(cv.folds)}-fold inner AUC" if members else "the only candidate"
    if STACK in aucs and chosen != STACK:
        gap = aucs[STACK] - aucs[chosen]
        if gap.mean() > params.stack_margin * gap.std(ddof=1) / np.sqrt(len(gap)):
            chosen, why = (
                STACK,
                f"the stack's {len(cv.folds)}-fold inner AUC beyond {params.stack_margin:g} SE of {chosen}'s",
            )
        else:
            why += f"; the stack not beyond {params.stack_margin:g} SE of it"
    return {"estimator": chosen, "inner_cv_auc": {name: round(a, 4) for name, a in mean.items()},
            "why": f"{why}, on {len(y)} training leads"}  # fmt: skip


def stack(fitted: dict[str, Any], decision: np.ndarray, y: np.ndarray) -> StackingClassifier:
    """What ``StackingClassifier(members, LogisticRegression(), cv=inner folds,
    stack_method="decision_function")`` fits, assembled from the members fitted on every lead and the
    inner CV's out-of-fold values instead of refitting each member once per fold again."""
    names = members_of(STACK)
    model = StackingClassifier([(name, clone(fitted[name])) for name in names], LogisticRegression(),
                               stack_method="decision_function")  # fmt: skip
    model.estimators_ = [fitted[name] for name in names]
    model.named_estimators_ = Bunch(**{name: fitted[name] for name in names})
    model.stack_method_ = ["decision_function"] * len(names)
    model._label_encoder = LabelEncoder().fit(y)
    model.classes_ = model._label_encoder.classes_
    model.final_estimator_ = _stacker(decision, y)
    return model


def calibrated(fitted: Any, decision: np.ndarray, y: np.ndarray) -> CalibratedClassifierCV:
    """What ``CalibratedClassifierCV(estimator, method="sigmoid", cv=inner folds, ensemble=False)`` fits,
    built from the inner CV's out-of-fold values instead of refitting the estimator once per fold."""
    model = CalibratedClassifierCV(clone(fitted), method="sigmoid", ensemble=False)
    model.classes_ = np.unique(y)
    model.calibrated_classifiers_ = [
        _fit_calibrator(fitted, decision.reshape(-1, 1), y, model.classes_, "sigmoid", xp=np)
    ]
    model.n_features_in_ = fitted.n_features_in_
    return model


def fit_estimator(
    matrix: np.ndarray, y: np.ndarray, encoding: Encoding, seed: int, params: ProbabilityParams
) -> tuple[Any, dict[str, Any]]:
    """The chosen estimator (``choose_estimator``) fitted on every training lead, with calibrated
    probabilities, and the choice.

    A member is sigmoid-calibrated on its out-of-fold values (``calibrated``); the stack's final logistic
    regression is its calibration. Both keep the estimator's order (isotonic steps would tie leads and cost
    AUC), and one estimator on all rows predicts faster than an average of one per fold; reasons need a
    prediction per input."""
    cv = inner_cv(matrix, y, encoding, seed, params)
    choice = choose_estimator(cv.judged(y), cv, params)
    name = choice["estimator"]
    with threadpool_limits(1, user_api="openmp"):
        fitted = {m: member(m, encoding, seed, params).fit(matrix, y) for m in members_of(name)}
    if name != STACK:
        return calibrated(fitted[name], cv.decision[name], cv.judged(y)), choice
    model = stack(fitted, cv.stacked(), cv.judged(y))
    weights = model.final_estimator_.coef_[0]
    choice["stack_weights"] = {m: round(float(w), 4) for m, w in zip(members_of(STACK), weights, strict=True)}
    return model, choice


def predict(estimator: Any, matrix: np.ndarray) -> np.ndarray:
    with threadpool_limits(1, user_api="openmp"):
        return estimator.predict_proba(matrix)[:, 1]


def to_scale(probability: np.ndarray, scale: Scale) -> np.ndarray:
    return np.round(scale.min + probability * (scale.max - scale.min), 2)


def reasons(
    estimator: Any, matrix: np.ndarray, encoding: Encoding, scale: Scale, top: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Scores, and why: ``(scores, chosen, steps, base)``.

    Each input is first weighed by how much the score drops when it alone is set to its reference value.
    Then, from the typical lead (every input at its reference; its score is ``base``), the lead's own values
    of its ``top`` weightiest inputs are put in one at a time: ``steps[i, k]`` is the score change of the
    k-th (input ``chosen[i, k]``). The rest of the way to the score is what the other inputs add, so the
    parts always sum to the score.
    """
    scores = to_scale(predict(estimator, matrix), scale)
    typical = np.array([[encoding.reference[f.name] for f in encoding.features]], dtype=np.float64)
    base = float(to_scale(predict(estimator, typical), scale)[0])
    weight = np.zeros(matrix.shape)
    for j, f in enumerate(encoding.features):
        swapped = matrix.copy()
        swapped[:, j] = encoding.reference[f.name]
        weight[:, j] = np.abs(scores - to_scale(predict(estimator, swapped), scale))
    k = min(top, matrix.shape[1])
    chosen = np.argsort(-weight, axis=1, kind="stable")[:, :k]
    current = np.repeat(typical, len(matrix), axis=0)
    previous = np.full(len(matrix), base)
    steps = np.zeros((len(matrix), k))
    rows = np.arange(len(matrix))
    for step in range(k):
        current[rows, chosen[:, step]] = matrix[rows, chosen[:, step]]
        now = to_scale(predict(estimator, current), scale)
        steps[:, step], previous = now - previous, now
    return scores, chosen, steps, base


def _value_text(f: Feature, value: float, encoding: Encoding) -> str:
    if np.isnan(value):
        return "missing"
    if f.kind == "categorical":
        levels = encoding.levels[f.name]
        return levels[int(value)] if int(value) < len(levels) else "other"
    return f"{value:g}"


def breakdown(
    scores: np.ndarray, chosen: np.ndarray, steps: np.ndarray, matrix: np.ndarray, encoding: Encoding, base: float
) -> pl.Series:
    """Per lead: the typical lead's score, the lead's strongest reasons, and the rest as "other factors";
    the entries sum to the score (to the cent)."""
    entries: list[list[dict[str, Any]]] = []
    base = round(base, 2)
    for i in range(len(scores)):
        row = [{"rule": BASE_RULE, "points": base}] if base else []
        used = 0.0
        for j, change in zip(chosen[i], steps[i], strict=True):
            points = round(float(change), 2)
            if points:
                f = encoding.features[j]
                row.append({"rule": f"{f.label} = {_value_text(f, matrix[i, j], encoding)}", "points": points})
                used += points
        rest = round(float(scores[i]) - base - used, 2)
        if rest:
            row.append({"rule": OTHER_RULE, "points": rest})
        entries.append(row)
    return pl.Series("breakdown", entries, dtype=BREAKDOWN_TYPE)


def score_probability(
    model: PointsModel, *, leads: pl.DataFrame, events: pl.DataFrame, as_of: datetime, scale: Scale,
    journeys: pl.DataFrame,
) -> pl.DataFrame:  # fmt: skip
    """``models.engine.score`` for a probability model: same inputs, same ``lead_key, score, breakdown``."""
    assert model.probability is not None and model.artifact_path is not None
    spec = model.probability
    encoding = from_spec(model)
    estimator = load(model.artifact_path.resolve(), spec.sha256)
    rows = journeys.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    base = rows.select(ROW, "lead_key").join(
        leads.with_columns(pl.col("lead_key").cast(pl.Int64)), on="lead_key", how="left", maintain_order="left"
    )
    attributes = [f.name for f in encoding.features if f.kind != "count"]
    named = base.select(ROW, *(extract(base, name, "attributes").alias(name) for name in attributes))
    frame = attribute_frame(named, [f for f in encoding.features if f.kind != "count"], tuple(spec.missing_values))
    moments = rows.select(ROW, utc_instant(as_of).alias("as_of"), "score_from")
    event_rows = events.lazy().with_columns(
        pl.col("lead_key").cast(pl.Int64), utc_occurred_at(events.schema["occurred_at"])
    )
    event_rows = event_rows.join(rows.lazy().select(ROW, "lead_key"), on="lead_key", how="inner")
    if "machine" not in events.columns:
        event_rows = event_rows.with_columns(pl.lit(False).alias("machine"))
    counts = event_counts(
        event_rows.select(ROW, "type", "occurred_at", pl.col("machine").fill_null(False)).collect(),
        moments,
        encoding.features,
    )
    frame = frame.join(counts, on=ROW, how="left", maintain_order="left")
    matrix = encoding.matrix(frame)
    scores, chosen, steps, base_score = reasons(estimator, matrix, encoding, scale, spec.reasons)
    return (
        pl.DataFrame(
            {"lead_key": rows.get_column("lead_key"), "score": scores},
            schema={"lead_key": pl.Int64, "score": pl.Float64},
        )
        .with_columns(breakdown(scores, chosen, steps, matrix, encoding, base_score))
        .select(list(RESULT_SCHEMA))
    )
