"""Combined rules of two columns: learned when the outcome lives in a combination (an XOR the per-column
table cannot see), refused by inner cross-validation when it does not, written as readable rules that the
engine scores exactly as the learner did, shown among a lead's reasons, and inside the blanking bound."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from models.learning.binning import Bin, indicators
from models.learning.combined import Combined
from models.learning.features import Feature
from models.learning.learn import LearnParams, cross_validate, fit, learn, prepare
from models.learning.scorecard import BINNED, CombinedParams, ScorecardParams
from models.scorefile import score_csv
from models.spec import PointsModel, Scale
from stages.portfolio import load_model
from tests.models.learning.test_scorecard import _scores, assert_blanking_is_bounded, blanking_bounds

PARAMS = LearnParams(folds=3, scorecard=ScorecardParams(methods=(BINNED,)))
NONE = CombinedParams(pair_counts=(0,))
PER_COLUMN = LearnParams(folds=3, scorecard=ScorecardParams(methods=(BINNED,), combined=NONE))
CELLS = LearnParams(folds=3, scorecard=ScorecardParams(methods=(BINNED,), combined=CombinedParams(whole_pairs=False)))
AT = datetime(2026, 6, 1, tzinfo=UTC)


def _history(path: Path, interaction: bool, n: int = 2400, seed: int = 3) -> Path:
    """``channel`` (web/event) and ``role`` (buyer/user), each converting alike on its own, and ``size``.
    With ``interaction`` the outcome is an XOR: web buyers and event users convert at 50 %, the others at
    15 %; without it the log-odds are a sum of one effect per column."""
    rng = np.random.default_rng(seed)
    channel = rng.choice(["web", "event"], size=n)
    role = rng.choice(["buyer", "user"], size=n)
    size = rng.integers(1, 100, size=n)
    if interaction:
        p = np.where((channel == "web") == (role == "buyer"), 0.5, 0.15)
    else:
        logit = -1.5 + 0.8 * (channel == "web") + 0.6 * (role == "buyer") + 0.01 * size
        p = 1 / (1 + np.exp(-logit))
    won = np.where(rng.random(n) < p, "yes", "no")
    frame = pl.DataFrame(
        {"lead_id": [f"L{i}" for i in range(n)], "channel": channel, "role": role, "size": size.astype(str),
         "won": won}
    )  # fmt: skip
    frame.write_csv(path)
    return path


def _leads(history: Path) -> pl.DataFrame:
    frame = pl.read_csv(history, infer_schema=False).drop("won")
    return frame.with_row_index("lead_key").with_columns(pl.col("lead_key").cast(pl.Int64))


@pytest.mark.parametrize("params", [PARAMS, CELLS], ids=["whole pairs", "single cells"])
def test_an_xor_of_two_columns_is_learned_as_combined_rules_that_beat_the_per_column_table(
    tmp_path: Path, params: LearnParams
) -> None:
    history = _history(tmp_path / "xor.csv", interaction=True)
    ds = prepare(history, target="won", params=params, id_column="lead_id")
    combined = cross_validate(ds, Scale(), params)["learned points"]["auc"]
    per_column = cross_validate(ds, Scale(), PER_COLUMN)["learned points"]["auc"]
    assert per_column < 0.56  # neither column says anything on its own
    assert combined > per_column + 0.12

    out = tmp_path / "xor.yaml"
    learned = learn(history, target="won", id_column="lead_id", out=out, params=params)
    names = [rule.name for rule in learned.model.fit if " AND " in rule.name]
    assert names and all("channel: " in name and "role: " in name for name in names)
    chosen = learned.model.metadata["learned"]["chosen"]
    assert chosen["combined_rules"] == len(names)
    assert chosen["combined_inner_cv_auc"]["0"] < max(chosen["combined_inner_cv_auc"].values()) - 0.1
    # The written rule reads as a marketer writes one: both conditions in one `when`.
    document = yaml.safe_load(out.read_text().split("\nmetadata:")[0])
    written = next(rule for rule in document["fit"] if " AND " in rule["name"])
    assert set(written["when"]) == {"channel", "role"} and written["points"] > 0
    assert "Combined rules (a bonus when two columns' values come together)" in out.read_text()


def test_a_whole_pair_writes_a_rule_per_cell_above_its_lowest_and_ranks_the_interacting_pair_first(
    tmp_path: Path,
) -> None:
    """The XOR pair (channel, role) outgains every pair with ``size``; its four cells are fitted freely and
    shifted so the lowest is 0 (and not written): the two converting cells score alike, the two others far
    less; cells no training lead was in (an empty value) are worth 0."""
    history = _history(tmp_path / "xor.csv", interaction=True)
    ds = prepare(history, target="won", params=PARAMS, id_column="lead_id")
    card = fit(ds, np.arange(len(ds.y)), "points", Scale(), PARAMS).scorecard
    assert card is not None
    rules = {c.name: int(p) for c, p in zip(card.combined, card.combined_points, strict=True)}
    assert rules == {"channel: event AND role: buyer": 10, "channel: event AND role: user": 88,
                     "channel: web AND role: buyer": 87}  # fmt: skip
    assert card.choice.combined == 1  # one pair: none with ``size`` earns its place


def test_without_an_interaction_inner_cross_validation_refuses_combined_rules(tmp_path: Path) -> None:
    history = _history(tmp_path / "additive.csv", interaction=False)
    out = tmp_path / "additive.yaml"
    learned = learn(history, target="won", id_column="lead_id", out=out, params=PARAMS)
    chosen = learned.model.metadata["learned"]["chosen"]
    assert chosen["combined_rules"] == 0
    assert set(chosen["combined_inner_cv_auc"]) == {str(count) for count in CombinedParams().tried}
    assert not [rule.name for rule in learned.model.fit if " AND " in rule.name]


def test_combined_rules_round_trip_score_identically_and_are_reasons(tmp_path: Path) -> None:
    history = _history(tmp_path / "xor.csv", interaction=True)
    out = tmp_path / "xor.yaml"
    learn(history, target="won", id_column="lead_id", out=out, params=PARAMS)
    model = load_model(out)
    leads = _leads(history)
    # The engine reading the file gives exactly the scores the learner computed from its bins.
    ds = prepare(history, target="won", params=PARAMS, id_column="lead_id")
    card = fit(ds, np.arange(len(ds.y)), "points", Scale(), PARAMS).scorecard
    assert card is not None and card.combined
    engine = _scores(model, leads)
    assert np.array_equal(card.score(ds.frame), engine)
    # The same rules written by hand (through YAML) score the same.
    rules = model.model_dump(mode="json", by_alias=True, exclude_defaults=True, include={"base_points", "fit"})
    hand = tmp_path / "hand.yaml"
    hand.write_text(yaml.safe_dump({"kind": "points", **rules}, sort_keys=False, allow_unicode=True))
    assert np.array_equal(_scores(load_model(hand), leads), engine)
    # score-file names the combined rule among a lead's reasons.
    scored = score_csv(model, history, as_of=AT).scored
    rule = card.combined[0]
    points = int(card.combined_points[0])
    met = leads.select(rule.indicator().alias("met")).get_column("met")
    reasons = scored.filter(met).get_column("top_rules").to_list()
    assert all(f"{rule.name}:+{points}" in r for r in reasons)


def test_blanking_a_column_moves_a_score_by_at_most_its_rules_and_its_combined_rules(tmp_path: Path) -> None:
    history = _history(tmp_path / "xor.csv", interaction=True)
    out = tmp_path / "xor.yaml"
    learn(history, target="won", id_column="lead_id", out=out, params=PARAMS)
    model = load_model(out)
    moved = assert_blanking_is_bounded(model, _leads(history))
    # Blanking channel or role takes a lead out of its combined rule: the move exceeds the column's own
    # largest rule (the old bound), and stays within the bound that counts the combined rules.
    own = {c: max(r.points for r in model.fit if set(r.when) == {c}) for c in ("channel", "role")}
    bounds = blanking_bounds(model)
    for column in ("channel", "role"):
        assert own[column] < moved[column] <= bounds[column]


def test_a_combined_rule_with_an_empty_side_pairs_every_alternative_and_scores_like_its_bins() -> None:
    """ "Missing" is written as alternatives (empty, or a missing-value word); combined with another
    column's alternatives, every pairing is one alternative of the rule: the same AND of two ORs."""
    source, role = Feature("source", "categorical"), Feature("role", "categorical")
    rule = Combined(Bin(source, "missing", tokens=("Select",)), Bin(role, "missing", tokens=("N/A",))).rule(7)
    assert rule == {
        "name": "source: missing AND role: missing",
        "any_of": [
            {"source": {"present": False}, "role": {"present": False}},
            {"source": {"present": False}, "role": {"in": ["N/A"]}},
            {"source": {"in": ["Select"]}, "role": {"present": False}},
            {"source": {"in": ["Select"]}, "role": {"in": ["N/A"]}},
        ],
        "points": 7,
    }
    ranged = Combined(Bin(Feature("size", "numeric"), "range", lo=10.0, hi=50.0), Bin(role, "missing"))
    assert ranged.rule(3) == {
        "name": "size 10 to < 50 AND role: missing",
        "when": {"size": {"ge": 10.0, "lt": 50.0}, "role": {"present": False}},
        "points": 3,
    }
    model = PointsModel.model_validate({"kind": "points", "fit": [rule, ranged.rule(3)]})
    leads = pl.DataFrame(
        {"lead_key": [0, 1, 2, 3], "source": [None, "Select", "web", None], "role": [None, "N/A", None, "x"],
         "size": ["20", "5", "20", "20"]}
    )  # fmt: skip
    # The learner's view: missing-value words are empty, sizes are numbers.
    frame = pl.DataFrame({"source": [None, None, "web", None], "role": [None, None, None, "x"],
                          "size": [20.0, 5.0, 20.0, 20.0]})  # fmt: skip
    both_empty = Combined(Bin(source, "missing"), Bin(role, "missing"))
    learner = indicators([both_empty, ranged], frame).toarray() @ np.array([7.0, 3.0])
    assert _scores(model, leads).tolist() == learner.tolist() == [10.0, 7.0, 3.0, 0.0]
