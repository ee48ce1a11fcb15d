"""Probability models: learned, stored next to the YAML, scored by the engine and score-file with reasons."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import StackingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from models.breakdown import top_rules
from models.engine import score
from models.files import SpecError
from models.learning.backtest import backtest
from models.learning.encoding import Encoding
from models.learning.features import Feature
from models.learning.learn import LearnParams, fit, learn, prepare
from models.learning.probability import (
    BASE_RULE,
    BOOSTING,
    LOGISTIC,
    OTHER_RULE,
    STACK,
    InnerCV,
    ProbabilityParams,
    choose_estimator,
    fit_estimator,
    inner_cv,
    member,
)
from models.scorefile import score_csv
from models.spec import Scale
from stages.portfolio import load_model, load_portfolio
from tests.models.learning.conftest import write_history

PARAMS = LearnParams(kind="probability", folds=3)
AT = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("probability")
    history = write_history(folder / "h.csv", cutoff=["2026-06-01T00:00:00Z"] * 600)
    won = pl.read_csv(history).get_column("won").to_list()
    rows = ["event_id,lead_id,type,occurred_at"]
    for i, outcome in enumerate(won):  # converters asked for a demo more often
        if outcome == "yes" or i % 4 == 0:
            rows.append(f"e{i},L{i:04d},demo_request,2026-05-{20 + i % 10}T10:00:00Z")
    events = folder / "events.csv"
    events.write_text("\n".join(rows) + "\n")
    out = folder / "model.yaml"
    learn(
        history, target="won", id_column="lead_id", cutoff_column="cutoff", events_path=events, out=out, params=PARAMS
    )
    return history, events, out


def test_the_estimator_is_stored_next_to_the_yaml_under_the_version(learned) -> None:
    _, _, out = learned
    model = load_model(out)
    assert model.kind == "probability" and model.probability is not None
    assert model.artifact_path == out.parent / f"model.{model.version}.skops"
    assert model.artifact_path.is_file()
    assert [f.name for f in model.probability.features] == [
        "segment", "size", "demo_request in 7 days", "demo_request in 30 days", "demo_request ever",
    ]  # fmt: skip
    assert model.event_types() == {"demo_request"}
    assert model.attribute_names() == {"segment", "size"}


def test_the_engine_scores_a_probability_model_with_reasons_that_sum_to_the_score(learned) -> None:
    history, events, out = learned
    result = score_csv(load_model(out), history, as_of=AT, events_path=events)
    assert result.rejects.height == 0
    scored = result.scored
    assert scored.columns[-3:] == ["score", "band", "top_rules"]
    assert scored.get_column("score").is_between(0, 100).all()
    # The same leads straight through the engine: the breakdown of each lead sums to its score.
    leads = (
        pl.read_csv(history, infer_schema=False)
        .with_row_index("lead_key")
        .with_columns(pl.col("lead_key").cast(pl.Int64))
    )
    raw = pl.read_csv(events)
    engine_events = raw.join(leads.select("lead_id", "lead_key"), on="lead_id").select(
        "lead_key",
        pl.col("occurred_at").str.to_datetime(time_zone="UTC"),
        "type",
        pl.lit(False).alias("machine"),
        pl.lit("{}").alias("properties"),
    )
    out_frame = score(load_model(out), leads=leads, events=engine_events, as_of=AT)
    sums = out_frame.select(
        pl.col("score"), pl.col("breakdown").list.eval(pl.element().struct.field("points")).list.sum().alias("sum")
    )
    assert np.allclose(sums["score"].to_numpy(), sums["sum"].to_numpy(), atol=1e-9)
    assert out_frame.get_column("score").to_list() == scored.get_column("score").to_list()
    first = out_frame.get_column("breakdown")[0].to_list()
    assert first[0]["rule"] == BASE_RULE
    # Only a lead that looks exactly like the typical lead has no reason to show.
    unexplained = scored.filter(pl.col("top_rules") == "")
    assert unexplained.height < 60
    assert (unexplained.get_column("score") == first[0]["points"]).all()
    assert len([e for e in first if e["rule"] not in (BASE_RULE, OTHER_RULE)]) <= 3
    shown = out_frame.select(top_rules(pl.col("breakdown"))).to_series()
    assert not shown.str.contains(BASE_RULE).any()
    # The estimator's own probabilities give the same scores as the engine.
    ds = prepare(history, target="won", params=PARAMS, id_column="lead_id", cutoff_column="cutoff", events_path=events)
    fitted = fit(ds, np.arange(600), "probability", Scale(), PARAMS)
    assert np.array_equal(fitted.score(ds.frame), out_frame.get_column("score").to_numpy())


def test_events_after_as_of_do_not_move_a_probability_score(learned) -> None:
    history, _, out = learned
    leads = (
        pl.read_csv(history, infer_schema=False)
        .with_row_index("lead_key")
        .with_columns(pl.col("lead_key").cast(pl.Int64))
    )
    none = pl.DataFrame(schema={"lead_key": pl.Int64, "occurred_at": pl.Datetime("us", "UTC"), "type": pl.Utf8,
                                "machine": pl.Boolean, "properties": pl.Utf8})  # fmt: skip
    later = pl.DataFrame({"lead_key": [0, 1, 2], "occurred_at": [datetime(2026, 6, 2, tzinfo=UTC)] * 3,
                          "type": ["demo_request"] * 3, "machine": [False] * 3, "properties": ["{}"] * 3})  # fmt: skip
    model = load_model(out)
    assert score(model, leads=leads, events=none, as_of=AT).equals(score(model, leads=leads, events=later, as_of=AT))


def test_a_replaced_estimator_is_refused(learned, tmp_path: Path) -> None:
    _, _, out = learned
    copy = tmp_path / "model.yaml"
    copy.write_text(out.read_text())
    artifact = load_model(out).artifact_path
    (tmp_path / artifact.name).write_bytes(artifact.read_bytes() + b"\0")
    leads = pl.DataFrame({"lead_key": [1], "segment": ["a"], "size": ["10"]})
    events = pl.DataFrame(schema={"lead_key": pl.Int64, "occurred_at": pl.Datetime("us", "UTC"), "type": pl.Utf8,
                                  "machine": pl.Boolean, "properties": pl.Utf8})  # fmt: skip
    with pytest.raises(ValueError, match="does not match the model file's sha256"):
        score(load_model(copy), leads=leads, events=events, as_of=AT)


def test_a_probability_model_goes_in_a_portfolio_stage(learned, tmp_path: Path) -> None:
    _, _, out = learned
    portfolio = tmp_path / "portfolio.yaml"
    portfolio.write_text(f"""product_lines:
  courses:
    bands: {{cold: [0, 30], hot: [30, 100]}}
    stages:
      discovery: {{model: {out}}}
""")
    book = load_portfolio(portfolio)
    model = book.line("courses").stage("discovery").model
    assert model.kind == "probability"
    assert book.scored_event_types == ["demo_request"]
    assert book.scored_attributes == ["segment", "size"]


def test_kind_and_section_go_together(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("kind: probability\nfit: []\n")
    with pytest.raises(SpecError, match="a 'probability' section goes with kind: probability, and only with it"):
        load_model(path)


def test_same_seed_same_yaml_and_estimator_bytes(learned, tmp_path: Path) -> None:
    history, events, out = learned
    again = tmp_path / "model.yaml"
    learn(
        history, target="won", id_column="lead_id", cutoff_column="cutoff", events_path=events, out=again, params=PARAMS
    )
    assert again.read_bytes() == out.read_bytes()
    artifact = load_model(out).artifact_path
    assert (tmp_path / artifact.name).read_bytes() == artifact.read_bytes()


def test_backtest_judges_a_probability_file_with_its_calibration(learned) -> None:
    history, events, out = learned
    params = LearnParams(folds=3)
    ds = prepare(history, target="won", params=params, id_column="lead_id", cutoff_column="cutoff", events_path=events)
    metrics = backtest({"model.yaml": load_model(out)}, ds, Scale(), params)
    judged = metrics["model.yaml"]
    assert judged["in_sample"] is True
    assert judged["calibration"]["brier"] < 0.25
    assert sum(row["leads"] for row in judged["calibration"]["deciles"]) == 600
    assert judged["auc"] > metrics["logistic regression (baseline)"]["auc"] - 0.1


def test_the_estimator_is_chosen_by_inner_cross_validation_and_the_file_says_why(learned) -> None:
    _, _, out = learned
    chosen = load_model(out).metadata["learned"]["chosen"]
    # 600 leads whose odds follow two columns: the logistic regression ranks better than boosting
    assert chosen == {
        "estimator": LOGISTIC,
        "inner_cv_auc": {LOGISTIC: 0.9467, BOOSTING: 0.9339, STACK: 0.9458},
        "why": "the better member's 5-fold inner AUC; the stack not beyond 2 SE of it, on 600 training leads",
    }
    assert f"# Estimator: {chosen['estimator']}, {chosen['why']}" in out.read_text()


def test_a_stack_is_stored_and_scores_like_any_estimator(tmp_path: Path) -> None:
    history = write_history(tmp_path / "h.csv")
    params = LearnParams(kind="probability", folds=3, probability=ProbabilityParams(candidates=(STACK,)))
    out = tmp_path / "stack.yaml"
    learn(history, target="won", id_column="lead_id", out=out, params=params)
    model = load_model(out)
    chosen = model.metadata["learned"]["chosen"]
    assert chosen["estimator"] == STACK and set(chosen["stack_weights"]) == {LOGISTIC, BOOSTING}
    scored = score_csv(model, history, as_of=AT).scored
    assert scored.height == 600 and scored.get_column("score").n_unique() > 100


def _numeric(columns: int) -> Encoding:
    features = [Feature(f"x{j}", "numeric") for j in range(columns)]
    return Encoding(features, {}, {f.name: 0.0 for f in features})


def _choice(y: np.ndarray, matrix: np.ndarray) -> dict:
    params = ProbabilityParams()
    return choose_estimator(y, inner_cv(matrix, y, _numeric(matrix.shape[1]), 0, params), params)


def test_inner_cv_chooses_boosting_for_an_interaction_and_logistic_for_a_straight_line() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3000, 3))
    product = rng.random(3000) < 1 / (1 + np.exp(-4 * x[:, 0] * x[:, 1]))  # only the product matters: no line fits
    line = rng.random(3000) < 1 / (1 + np.exp(-(x[:, 0] + x[:, 1])))
    interaction, straight = _choice(product.astype(np.int64), x), _choice(line.astype(np.int64), x)
    assert interaction["estimator"] == BOOSTING
    auc = interaction["inner_cv_auc"]
    assert auc[LOGISTIC] < 0.55 < 0.75 < auc[BOOSTING]
    assert straight["estimator"] == LOGISTIC
    assert straight["inner_cv_auc"][LOGISTIC] > straight["inner_cv_auc"][BOOSTING]
    assert set(straight["inner_cv_auc"]) == {LOGISTIC, BOOSTING, STACK}
    assert straight["why"].startswith("the better member's 5-fold inner AUC")


def _members(seed: int, boosting_is_noise: bool = False) -> tuple[np.ndarray, InnerCV]:
    """Inner folds with out-of-fold values of two members that each rank the outcome through their own
    independent noise of a random size (or boosting's values are noise alone)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(1000) < 0.3).astype(np.int64)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(np.zeros(1000), y))
    sd = rng.uniform(0.3, 3.0, 2)
    logistic = y + rng.normal(0, sd[0], 1000)
    boosting = rng.normal(0, 1, 1000) if boosting_is_noise else y + rng.normal(0, sd[1], 1000)
    return y, InnerCV({LOGISTIC: logistic, BOOSTING: boosting}, folds)


@pytest.mark.parametrize("seed", range(8))
def test_the_choice_is_never_worse_than_the_best_candidate_by_more_than_the_stack_margin(seed: int) -> None:
    y, cv = _members(seed)
    params = ProbabilityParams()
    choice = choose_estimator(y, cv, params)
    aucs = {name: cv.fold_aucs(name, y) for name in params.candidates}
    mean = {name: float(a.mean()) for name, a in aucs.items()}
    assert choice["inner_cv_auc"] == {name: round(a, 4) for name, a in mean.items()}
    member = LOGISTIC if mean[LOGISTIC] >= mean[BOOSTING] else BOOSTING
    gap = aucs[STACK] - aucs[member]
    margin = params.stack_margin * gap.std(ddof=1) / np.sqrt(len(gap))
    assert choice["estimator"] == (STACK if gap.mean() > margin else member)
    assert mean[choice["estimator"]] >= max(mean.values()) - margin


def test_the_stack_is_judged_on_folds_its_weights_never_saw() -> None:
    y, cv = _members(0)
    stacked = cv.stacked()
    expected = []
    for train, test in cv.folds:  # the other folds' out-of-fold values weigh the members for this one
        weights = LogisticRegression().fit(stacked[train], y[train])
        expected.append(roc_auc_score(y[test], weights.decision_function(stacked[test])))
    assert np.array_equal(cv.fold_aucs(STACK, y), np.array(expected))


def test_the_stack_is_chosen_when_both_members_add_to_it_and_a_member_when_one_is_noise() -> None:
    # Two equally good members with independent errors: their sum ranks better on every fold.
    y, cv = _members(3)
    cv = InnerCV({LOGISTIC: cv.decision[LOGISTIC], BOOSTING: y + (cv.decision[LOGISTIC] - y)[::-1]}, cv.folds)
    choice = choose_estimator(y, cv, ProbabilityParams())
    assert choice["estimator"] == STACK
    assert choice["why"] == "the stack's 5-fold inner AUC beyond 2 SE of gradient boosting's, on 1000 training leads"
    # Boosting ranks at random: the stack can only add noise to logistic regression.
    y, cv = _members(3, boosting_is_noise=True)
    choice = choose_estimator(y, cv, ProbabilityParams())
    assert choice["estimator"] == LOGISTIC
    assert choice["inner_cv_auc"][BOOSTING] < 0.55 < choice["inner_cv_auc"][LOGISTIC]
    assert choice["why"] == (
        "the better member's 5-fold inner AUC; the stack not beyond 2 SE of it, on 1000 training leads"
    )


def _xy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1500, 3))
    x[rng.random(1500) < 0.1, 2] = np.nan
    y = (rng.random(1500) < 1 / (1 + np.exp(-(x[:, 0] + x[:, 0] * x[:, 1])))).astype(np.int8)
    return x, y


@pytest.mark.parametrize("name", [LOGISTIC, BOOSTING])
def test_a_members_calibration_from_the_inner_folds_is_calibrated_classifier_cv_on_those_folds(name: str) -> None:
    x, y = _xy()
    params = ProbabilityParams(candidates=(name,))
    model, choice = fit_estimator(x, y, _numeric(3), 0, params)
    folds = inner_cv(x, y, _numeric(3), 0, params).folds
    with threadpool_limits(1, user_api="openmp"):  # as learn fits: spinning threads crawl on a busy machine
        chosen = member(choice["estimator"], _numeric(3), 0, params)
        refitted = CalibratedClassifierCV(chosen, method="sigmoid", cv=folds, ensemble=False).fit(x, y)
    assert np.array_equal(model.predict_proba(x), refitted.predict_proba(x))


def test_the_stack_from_the_inner_folds_is_stacking_classifier_on_those_folds() -> None:
    x, y = _xy()
    params = ProbabilityParams(candidates=(STACK,))
    model, choice = fit_estimator(x, y, _numeric(3), 0, params)
    folds = inner_cv(x, y, _numeric(3), 0, params).folds
    members = [(name, member(name, _numeric(3), 0, params)) for name in (LOGISTIC, BOOSTING)]
    with threadpool_limits(1, user_api="openmp"):
        refitted = StackingClassifier(members, LogisticRegression(), cv=folds, stack_method="decision_function")
        refitted.fit(x, y)
    assert np.array_equal(model.predict_proba(x), refitted.predict_proba(x))
    weights = refitted.final_estimator_.coef_[0]
    assert choice["stack_weights"] == {LOGISTIC: round(weights[0], 4), BOOSTING: round(weights[1], 4)}
    assert weights[0] > 0 and weights[1] > 0  # a line and an interaction: each member adds what the other lacks
