"""The learners on real lead data (X Education, ../shared/data) and on the demo generator's data with its truth."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.learning.backtest import backtest
from models.learning.learn import BASELINE, LearnParams, folds, prepare
from models.spec import Scale
from stages.portfolio import load_model
from tests.models.learning.conftest import GENERATED_DROP, LEADS_DROP

HANDWRITTEN = "leads_handwritten.yaml"
pytestmark = pytest.mark.slow


def test_learned_models_beat_the_baseline_and_hand_written_rules_on_x_education(leads_csv, request) -> None:
    params = LearnParams()
    ds = prepare(leads_csv, target="Converted", params=params, id_column="Prospect ID", drop=LEADS_DROP)
    assert ds.leaks == []  # with the leaking columns dropped, no column alone gives the outcome away
    hand = load_model(request.path.parent / HANDWRITTEN)
    metrics = backtest({"hand-written": hand}, ds, Scale(), params, learners=("points", "probability"))
    auc = {label: m["auc"] for label, m in metrics.items()}
    print("\nX Education, 5-fold CV ROC AUC on the same folds:", auc)
    assert auc["learned points"] >= auc[BASELINE] - 0.01
    assert auc["learned probability"] > auc[BASELINE]
    assert auc["learned points"] > auc["hand-written"]
    assert auc["learned probability"] > auc["hand-written"]
    assert metrics["learned probability"]["calibration"]["brier"] < 0.15
    assert sum(b["leads"] for b in metrics["learned points"]["bands"]) == 9240


def test_the_leaking_column_is_reported_and_dropped_unless_forced(leads_csv) -> None:
    drop = tuple(c for c in LEADS_DROP if c != "Tags")
    ds = prepare(leads_csv, target="Converted", params=LearnParams(), id_column="Prospect ID", drop=drop)
    assert [leak.column for leak in ds.leaks] == ["Tags"]
    assert ds.leaks[0].auc > 0.9
    assert "Tags" not in [f.name for f in ds.features]
    forced = prepare(leads_csv, target="Converted", params=LearnParams(force=True), id_column="Prospect ID", drop=drop)
    assert [leak.column for leak in forced.leaks] == ["Tags"]
    assert "Tags" in [f.name for f in forced.features]


def test_on_generated_data_the_learned_model_ranks_close_to_the_true_propensity(generated) -> None:
    history, events, truth = generated
    params = LearnParams()
    ds = prepare(history, target="converted", params=params, events_path=events, cutoff_column="cutoff",
                 id_column="lead_id", drop=GENERATED_DROP)  # fmt: skip
    metrics = backtest({}, ds, Scale(), params, learners=("points",))
    propensity = truth.get_column("propensity").to_numpy()
    true_auc = float(np.mean([roc_auc_score(ds.y[test], propensity[test]) for _, test in folds(ds.y, 5, 0)]))
    learned = metrics["learned points"]["auc"]
    print(f"\ngenerated data: true propensity AUC {true_auc:.4f}, learned points CV AUC {learned:.4f}")
    assert learned > true_auc - 0.08
    assert learned < true_auc + 0.02  # the truth is the ceiling (up to fold noise)
