"""The learners on real lead data (X Education, ../shared/data) and on the demo generator's data with its truth."""

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from models.learning.backtest import backtest
from models.learning.learn import BASELINE, LearnParams, fit, folds, prepare
from models.spec import PointsModel, Scale
from stages.portfolio import load_model
from tests.models.learning.conftest import GENERATED_DROP, LEADS_DROP, LEAKING
from tests.models.learning.test_scorecard import assert_blanking_is_bounded, blanking_bounds

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


def test_blanking_any_x_education_column_moves_a_score_by_at_most_its_largest_rule(leads_csv) -> None:
    ds = prepare(leads_csv, target="Converted", params=LearnParams(), id_column="Prospect ID", drop=LEADS_DROP)
    card = fit(ds, np.arange(len(ds.y)), "points", Scale(), LearnParams()).scorecard
    assert card is not None
    fit_rules, _ = card.rules()
    model = PointsModel.model_validate({"base_points": card.base, "fit": fit_rules})
    assert min(rule.points for rule in model.fit) >= 0  # no column carries an offset
    leads = (
        pl.read_csv(leads_csv, infer_schema=False)
        .with_row_index("lead_key")
        .with_columns(pl.col("lead_key").cast(pl.Int64))
    )
    moved = assert_blanking_is_bounded(model, leads)
    # Its largest own rule plus its pairs' largest cells: it was 52 → 97 with the offset in Lead Origin's rules.
    assert moved["Lead Origin"] <= blanking_bounds(model)["Lead Origin"] < 50


def test_the_leak_guard_flags_every_leaking_column_of_x_education_and_drops_it_unless_kept(leads_csv) -> None:
    # Every column left in but the lead number (an identifier): the guard must find the leaks on its own.
    params = LearnParams()
    ds = prepare(leads_csv, target="Converted", params=params, id_column="Prospect ID", drop=("Lead Number",))
    flagged = {leak.column: leak for leak in ds.leaks}
    # "I agree to pay the amount through cheque" says "No" on every lead: never a feature, so nothing to flag.
    assert set(flagged) == set(LEAKING) - {"I agree to pay the amount through cheque"}
    assert flagged["Tags"].evidence[0] == "alone it separates the outcome (AUC 0.923 ≥ 0.9)"
    assert flagged["Lead Quality"].evidence == ("its name describes an outcome or sales activity (AUC 0.800)",)
    assert not {f.name for f in ds.features} & set(LEAKING)
    assert "Last Activity" in {f.name for f in ds.features}  # the lead's own last action is not a leak
    kept = prepare(leads_csv, target="Converted", params=LearnParams(keep=("Lead Quality",)),
                   id_column="Prospect ID", drop=("Lead Number",))  # fmt: skip
    assert "Lead Quality" in {f.name for f in kept.features}
    assert "Tags" not in {f.name for f in kept.features}


def test_the_leak_guard_flags_the_bank_call_duration(bank_csv) -> None:
    ds = prepare(bank_csv, target="y", params=LearnParams())  # semicolon-separated: the delimiter is sniffed
    assert [(leak.column, leak.evidence) for leak in ds.leaks] == [
        ("duration", ("its name describes an outcome or sales activity (AUC 0.822)",))
    ]
    assert len(ds.features) == 19 and "duration" not in {f.name for f in ds.features}


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
