"""``learn``: from a history of leads (and their events) to a versioned model file, with its cross-validated
metrics next to a plain logistic-regression baseline on the same folds."""

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import yaml
from sklearn.model_selection import StratifiedKFold

from models.files import validate_file
from models.learning import probability as prob
from models.learning.artifacts import save
from models.learning.baseline import Baseline
from models.learning.encoding import Encoding, encode
from models.learning.features import (
    DEFAULT_WINDOWS,
    Feature,
    attribute_features,
    attribute_frame,
    behaviour_features,
    event_counts,
)
from models.learning.guards import LEAK_AUC, Leak, check_identifiers, check_target, find_leaks
from models.learning.history import DEFAULT_MISSING, ROW, History, LearnError, read_events, read_history
from models.learning.metrics import default_bands, summary
from models.learning.scorecard import Scorecard, ScorecardParams, fit_scorecard, header_lines
from models.spec import Bands, PointsModel, ProbabilitySpec, Scale
from store.shapes import UTC_US

Kind = Literal["points", "probability"]
BASELINE = "logistic regression (baseline)"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class LearnParams:
    kind: Kind = "points"
    seed: int = 0
    folds: int = 5
    windows: tuple[float | None, ...] = DEFAULT_WINDOWS
    missing: tuple[str, ...] = DEFAULT_MISSING
    leak_auc: float = LEAK_AUC  # a single column separating the outcome this well is treated as a leak
    force: bool = False  # keep every leaking column (reported all the same)
    keep: tuple[str, ...] = ()  # columns kept although flagged as leaks (reported all the same)
    scorecard: ScorecardParams = field(default_factory=ScorecardParams)
    probability: prob.ProbabilityParams = field(default_factory=prob.ProbabilityParams)


@dataclass(frozen=True)
class Dataset:
    """Everything learning reads, computed once: features are label-free, so folds share them."""

    history: History
    events: pl.DataFrame | None  # ROW, type, occurred_at, machine[, properties]
    features: list[Feature]
    frame: pl.DataFrame  # ROW + one column per feature
    leaks: list[Leak]
    history_sha256: str
    events_sha256: str | None

    @property
    def y(self) -> np.ndarray:
        return self.history.target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def prepare(
    history_path: Path,
    *,
    target: str,
    params: LearnParams,
    events_path: Path | None = None,
    cutoff_column: str | None = None,
    id_column: str | None = None,
    drop: tuple[str, ...] = (),
    properties: bool = False,
    progress: Progress = lambda _: None,
) -> Dataset:
    """Read and check the history, build the features, and apply the guards (refusals raise ``LearnError``).
    ``properties`` keeps the events' JSON properties (for scoring hand-written models in a backtest)."""
    progress("reading the history")
    history = read_history(history_path, target=target, id_column=id_column, cutoff_column=cutoff_column, drop=drop)
    check_target(history.path, history.target, target)
    features = attribute_features(history.frame, history.attributes, params.missing)
    frame = attribute_frame(history.frame, features, params.missing)
    check_identifiers(history.path, features, frame)
    events = None
    if events_path is not None:
        progress("reading the events")
        events = read_events(events_path, history, properties=properties)
        progress("counting behaviour before each cutoff")
        counted = behaviour_features(events, params.windows)
        frame = frame.join(event_counts(events, moments(history, events), counted), on=ROW, how="left")
        features += counted
    leaks = find_leaks(features, frame, history.target, params.leak_auc, raw=history.frame, cutoff=history.cutoff)
    unknown = sorted(set(params.keep) - {f.label for f in features})
    if unknown:
        raise LearnError(f"{history.path}: --keep names no learnable column: {unknown}")
    if leaks and not params.force:
        leaked = {leak.column for leak in leaks} - set(params.keep)
        features = [f for f in features if f.label not in leaked]
        frame = frame.select(ROW, *(f.name for f in features))
    if not features:
        raise LearnError(
            f"{history.path}: no usable column left to learn from (every column is empty, constant or dropped)"
        )
    return Dataset(
        history,
        events,
        features,
        frame,
        leaks,
        _sha256(Path(history_path)),
        _sha256(Path(events_path)) if events_path is not None else None,
    )


def moments(history: History, events: pl.DataFrame) -> pl.DataFrame:
    """Each lead's ``as_of``: its cutoff, or (without a cutoff column) the last event of the file."""
    if history.cutoff is not None:
        return pl.DataFrame({ROW: history.frame.get_column(ROW), "as_of": history.cutoff})
    last = events.get_column("occurred_at").max()
    return history.frame.select(ROW, pl.lit(last, UTC_US).alias("as_of"))


# --- fitting ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fitted:
    """A model learned on some rows; ``score`` gives scale scores, ``probability`` calibrated ones when known."""

    kind: Kind
    scorecard: Scorecard | None = None
    encoding: Encoding | None = None
    estimator: Any = None
    scale: Scale = field(default_factory=Scale)
    choice: dict[str, Any] = field(default_factory=dict)  # a probability model's estimator, chosen by inner CV

    def score(self, frame: pl.DataFrame) -> np.ndarray:
        if self.scorecard is not None:
            return self.scorecard.score(frame)
        return prob.to_scale(self.probability(frame), self.scale)

    def probability(self, frame: pl.DataFrame) -> np.ndarray:
        assert self.encoding is not None
        return prob.predict(self.estimator, self.encoding.matrix(frame))


def fit(ds: Dataset, rows: np.ndarray, kind: Kind, scale: Scale, params: LearnParams) -> Fitted:
    frame, y = ds.frame[rows], ds.y[rows]
    if kind == "points":
        raw = ds.history.frame[rows]
        card = fit_scorecard(ds.features, frame, y, raw, params.missing, scale, params.scorecard, params.seed)
        return Fitted(kind, scorecard=card, scale=scale)
    encoding = encode(ds.features, frame)
    estimator, choice = prob.fit_estimator(encoding.matrix(frame), y, encoding, params.seed, params.probability)
    return Fitted(kind, encoding=encoding, estimator=estimator, scale=scale, choice=choice)


# --- cross-validation ---------------------------------------------------------------------------------


def folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def cross_validate(
    ds: Dataset,
    scale: Scale,
    params: LearnParams,
    *,
    kinds: tuple[Kind, ...] = ("points",),
    fixed: dict[str, tuple[np.ndarray, Bands | None]] | None = None,
    bands: Bands | None = None,
    progress: Progress = lambda _: None,
) -> dict[str, dict[str, Any]]:
    """Metrics per model on the same stratified folds: each ``kinds`` learner refitted on every training
    part, the baseline likewise, and each ``fixed`` model's precomputed scores (full history) read per fold."""
    bands = bands or default_bands(scale)
    y = ds.y
    split = folds(y, params.folds, params.seed)
    results: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    probabilities: dict[str, list[np.ndarray]] = {}
    for number, (train, test) in enumerate(split, start=1):
        progress(f"fold {number}/{len(split)}")
        for kind in kinds:
            fitted = fit(ds, train, kind, scale, params)
            test_frame = ds.frame[test]
            label = f"learned {kind}"
            if kind == "probability":
                p = fitted.probability(test_frame)
                probabilities.setdefault(label, []).append(p)
                results.setdefault(label, []).append((prob.to_scale(p, scale), y[test]))
            else:
                results.setdefault(label, []).append((fitted.score(test_frame), y[test]))
        baseline = Baseline.fit(ds.features, ds.frame[train], y[train])
        p = baseline.probability(ds.frame[test])
        probabilities.setdefault(BASELINE, []).append(p)
        results.setdefault(BASELINE, []).append((prob.to_scale(p, scale), y[test]))
        for label, (scores, _) in (fixed or {}).items():
            results.setdefault(label, []).append((scores[test], y[test]))
    out = {}
    for label, parts in results.items():
        own = (fixed or {}).get(label, (None, None))[1]
        p = np.concatenate(probabilities[label]) if label in probabilities else None
        out[label] = summary(parts, own or bands, p)
    return out


# --- the model file -----------------------------------------------------------------------------------


def libraries() -> dict[str, str]:
    return {name: package_version(name) for name in ("leadscore", "scikit-learn", "numpy", "polars", "skops")}


def model_version(ds: Dataset, settings: dict[str, Any]) -> str:
    """Hash of the training data and every parameter: the same inputs give the same version (and file)."""
    text = json.dumps({"history": ds.history_sha256, "events": ds.events_sha256, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class _OneLine(dict):
    """A rule written on one line, as people write them."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _OneLine, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)


def _header(ds: Dataset, params: LearnParams) -> list[str]:
    """The file's opening comment: what it was learned from and which columns were left out as leaks."""
    source = f"{ds.history.path.name} ({len(ds.y)} leads, {int(ds.y.sum())} converted)"
    lines = [f"Learned by leadscore learn from {source}."]
    for leak in ds.leaks:
        kept = params.force or leak.column in params.keep
        lines.append(f"{'Kept' if kept else 'Dropped'} as a likely leak: {leak.reason}.")
    return lines


@dataclass(frozen=True)
class Learned:
    model: PointsModel
    text: str  # the YAML written
    version: str
    metrics: dict[str, dict[str, Any]]
    leaks: list[Leak]
    artifact: Path | None


def learn(
    history_path: Path,
    *,
    target: str,
    out: Path,
    params: LearnParams,
    events_path: Path | None = None,
    cutoff_column: str | None = None,
    id_column: str | None = None,
    drop: tuple[str, ...] = (),
    scale: Scale | None = None,
    progress: Progress = lambda _: None,
) -> Learned:
    """Learn a ``params.kind`` model from the history, cross-validate it, and write it to ``out``."""
    scale = scale or Scale()
    settings = {
        "target": target,
        "cutoff_column": cutoff_column,
        "id_column": id_column,
        "drop": sorted(drop),
        "scale": [scale.min, scale.max],
        **json.loads(json.dumps(asdict(params))),
    }
    ds = prepare(history_path, target=target, params=params, events_path=events_path, cutoff_column=cutoff_column,
                 id_column=id_column, drop=drop, progress=progress)  # fmt: skip
    metrics = cross_validate(ds, scale, params, kinds=(params.kind,), progress=progress)
    progress("fitting on the whole history")
    fitted = fit(ds, np.arange(len(ds.y)), params.kind, scale, params)
    version = model_version(ds, settings)
    document: dict[str, Any] = {
        "kind": params.kind,
        "name": f"learned from {Path(history_path).name}",
        "description": f"{params.kind} model of {target!r}, learned by leadscore learn; edit freely "
        "(the metadata describes the learned version)",
        "version": version,
        "scale": {"min": scale.min, "max": scale.max},
        # the bands learn's metrics judge by: score-file writes each lead's band with them
        "bands": {name: [lo, hi] for name, lo, hi in default_bands(scale).ordered},
    }
    artifact = None
    header = _header(ds, params)
    if fitted.scorecard is not None:
        card = fitted.scorecard
        fit_rules, behaviour_rules = card.rules()
        document |= {"base_points": card.base, "fit": fit_rules, "behaviour": behaviour_rules}
        header += header_lines(card, params.scorecard)
    else:
        assert fitted.encoding is not None
        artifact = out.with_name(f"{out.stem}.{version}.skops")
        sha = save(fitted.estimator, artifact)
        document["manual_adjustments"] = False
        document["probability"] = ProbabilitySpec(
            artifact=artifact.name,
            sha256=sha,
            base_rate=round(float(ds.y.mean()), 6),
            missing_values=[m for m in params.missing if m],
            features=fitted.encoding.spec(),
        ).model_dump(mode="json", exclude_defaults=True)
    label = f"learned {params.kind}"
    document["metadata"] = {
        "learned": {
            "history": Path(history_path).name,
            "history_sha256": ds.history_sha256,
            "events_sha256": ds.events_sha256,
            "leads": len(ds.y),
            "converted": int(ds.y.sum()),
            "features": [f.label for f in ds.features],
            "dropped_as_leaks": [
                {"column": leak.column, "auc": leak.auc, "evidence": list(leak.evidence)}
                for leak in ds.leaks
                if not params.force and leak.column not in params.keep
            ],
            "params": settings,
        },
        "metrics": {
            name: {
                key: metrics[name][key] for key in ("auc", "auc_std", "capture_top10", "capture_top20", "lift_top10")
            }
            for name in (label, BASELINE)
        },
        "libraries": libraries(),
    }
    for group in ("fit", "behaviour"):
        if group in document:
            document[group] = [_OneLine(rule) for rule in document[group]]
    if fitted.choice:
        document["metadata"]["learned"]["chosen"] = fitted.choice
        header.append(
            f"Estimator: {fitted.choice['estimator']}, {fitted.choice['why']} {fitted.choice['inner_cv_auc']}."
        )
    if fitted.scorecard is not None:
        choice = fitted.scorecard.choice
        document["metadata"]["learned"]["chosen"] = {
            "method": choice.method,
            "C": choice.c,
            "min_bin_share": choice.min_share,
            "inner_cv_auc": choice.inner_auc,
            "missing_never_seen": list(fitted.scorecard.unseen_missing),
            "combined_rules": len(fitted.scorecard.combined),
            "combined_inner_cv_auc": {str(count): auc for count, auc in choice.combined_auc.items()},
        }
    text = "".join(f"# {line}\n" if line else "#\n" for line in header)
    text += yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    # Read back the way every model file is read: what was written must load.
    return Learned(validate_file(out, PointsModel, context={"source": out}), text, version, metrics, ds.leaks, artifact)
