"""The scorecard a marketer reads: base points on their own line, an explicit "missing" rule per column,
and a penalty chosen by inner cross-validation."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from models.engine import score
from models.learning.binning import Bin
from models.learning.curves import simple_between
from models.learning.features import Feature
from models.learning.learn import LearnParams, cross_validate, fit, learn, prepare
from models.learning.scorecard import BINNED, BOOSTING, LINEAR, MIXED, ScorecardParams, merged
from models.spec import PointsModel, Scale
from stages.portfolio import load_model
from tests.models.learning.conftest import write_history

# The binned logistic alone: these tests pin its exact table; the other fits have their own tests below.
PARAMS = LearnParams(folds=3, scorecard=ScorecardParams(methods=(BINNED,)))
AT = datetime(2026, 6, 1, tzinfo=UTC)
EVENTS = pl.DataFrame(schema={"lead_key": pl.Int64, "occurred_at": pl.Datetime("us", "UTC"), "type": pl.Utf8,
                              "machine": pl.Boolean, "properties": pl.Utf8})  # fmt: skip


def _scores(model: PointsModel, leads: pl.DataFrame) -> np.ndarray:
    return score(model, leads=leads, events=EVENTS, as_of=AT).get_column("score").to_numpy()


def blanking_bounds(model: PointsModel) -> dict[str, float]:
    """What blanking each column may move a score by: its largest own rule (a lead is in one of them), plus
    for each other column it is combined with, the largest combined rule of that pair (a lead meets at most
    one: they are cells of the two columns' bins). Every rule is ≥ 0, so no term can exceed its maximum."""
    own: dict[str, float] = {}
    pairs: dict[tuple[str, ...], float] = {}
    for rule in model.fit:
        assert rule.points >= 0, rule.name
        columns = tuple(sorted({name for cond in [rule.when, *(rule.any_of or [])] for name in cond}))
        if len(columns) == 1:
            own[columns[0]] = max(own.get(columns[0], 0.0), rule.points)
        else:
            pairs[columns] = max(pairs.get(columns, 0.0), rule.points)
    return {
        column: own.get(column, 0.0) + sum(points for pair, points in pairs.items() if column in pair)
        for column in {*own, *(column for pair in pairs for column in pair)}
    }


def assert_blanking_is_bounded(model: PointsModel, leads: pl.DataFrame) -> dict[str, float]:
    """Blank each scored column in turn: no score moves by more than ``blanking_bounds``. Returns the
    largest move per column."""
    before = _scores(model, leads)
    moved = {}
    for column, bound in blanking_bounds(model).items():
        after = _scores(model, leads.with_columns(pl.lit(None, pl.Utf8).alias(column)))
        moved[column] = float(np.abs(after - before).max())
        assert moved[column] <= bound, (column, moved[column], bound)
    return moved


def test_base_points_stand_alone_and_blanking_a_column_moves_a_score_by_at_most_its_largest_rule(
    tmp_path: Path,
) -> None:
    history = write_history(tmp_path / "h.csv")  # no column has an empty value in training
    out = tmp_path / "card.yaml"
    learn(history, target="won", id_column="lead_id", out=out, params=PARAMS)
    model = load_model(out)
    assert model.base_points == 0
    rules = {rule.name: rule.points for rule in model.fit}
    assert rules == {
        "segment: b": 36, "segment: a": 64, "segment: missing": 0, "size 164 to < 268": 3, "size 268 to < 387": 10,
        "size 387 to < 512": 12, "size 512 to < 736": 19, "size ≥ 736": 36, "size: missing": 0,
    }  # fmt: skip
    assert min(rules.values()) >= 0  # no column carries the offset
    text = out.read_text()
    assert text.startswith("# Learned by leadscore learn from h.csv (600 leads, 181 converted).\n")
    assert "their 'missing' rule is worth 0: segment, size.\n" in text
    leads = (
        pl.read_csv(history, infer_schema=False)
        .with_row_index("lead_key")
        .with_columns(pl.col("lead_key").cast(pl.Int64))
    )
    assert assert_blanking_is_bounded(model, leads) == {"segment": 64.0, "size": 36.0}
    blank = _scores(model, leads.with_columns(pl.lit("").alias("segment"), pl.lit("Select").alias("size")))
    assert set(blank.tolist()) == {0.0}  # base points only: an empty value scores the "missing" rule's 0


def test_a_missing_value_seen_in_training_gets_a_learned_rule(tmp_path: Path) -> None:
    segment = pl.read_csv(write_history(tmp_path / "h.csv"), infer_schema=False).get_column("segment").to_list()
    segment = [s if i % 5 else "Select" for i, s in enumerate(segment)]  # a fifth left empty on the form
    history = write_history(tmp_path / "h.csv", segment=segment)
    ds = prepare(history, target="won", params=PARAMS, id_column="lead_id")
    card = fit(ds, np.arange(600), "points", Scale(), PARAMS).scorecard
    assert card is not None and card.unseen_missing == ("size",)
    fit_rules, _ = card.rules()
    missing = next(r for r in fit_rules if r["name"] == "segment: missing")
    assert missing == {
        "name": "segment: missing", "any_of": [{"segment": {"present": False}}, {"segment": {"in": ["Select"]}}],
        "points": 41,
    }  # fmt: skip


def _noisy(path: Path, n: int = 600, noise: int = 40) -> Path:
    """One telling column (``segment``: 35 %, 15 %, 5 % converting) among ``noise`` columns of coin flips."""
    rng = np.random.default_rng(0)
    segment = rng.choice(["a", "b", "c"], size=n)
    cols = {f"n{j:02d}": rng.choice([f"v{k}" for k in range(6)], size=n) for j in range(noise)}
    p = np.select([segment == "a", segment == "b"], [0.35, 0.15], 0.05)
    won = np.where(rng.random(n) < p, "yes", "no")
    pl.DataFrame({"lead_id": [f"L{i}" for i in range(n)], "segment": segment, **cols, "won": won}).write_csv(path)
    return path


def test_inner_cross_validation_picks_a_strong_penalty_on_a_small_noisy_history(tmp_path: Path) -> None:
    history = _noisy(tmp_path / "noisy.csv")
    ds = prepare(history, target="won", params=PARAMS, id_column="lead_id")
    card = fit(ds, np.arange(600), "points", Scale(), PARAMS).scorecard
    assert card is not None
    assert (card.choice.c, card.choice.min_share) == (0.01, 0.05)
    auc = card.choice.inner_auc
    assert auc["binned logistic, C=0.01, min share=0.05"] == 0.5454
    assert auc["binned logistic, C=1, min share=0.05"] == 0.4963
    # … and it pays off on rows the choice never saw: the old fixed C=0.5 ranks worse on the same folds.
    fixed = LearnParams(folds=3, scorecard=ScorecardParams(methods=(BINNED,), c_grid=(0.5,), min_share_grid=(0.02,)))
    chosen_auc = cross_validate(ds, Scale(), PARAMS)["learned points"]["auc"]
    fixed_auc = cross_validate(ds, Scale(), fixed)["learned points"]["auc"]
    assert (chosen_auc, fixed_auc) == (0.5299, 0.5002)
    out = tmp_path / "noisy.yaml"
    learn(history, target="won", id_column="lead_id", out=out, params=PARAMS)
    text = out.read_text()
    assert "binned logistic (L2 strength C = 0.01, smallest bin 5% of the leads)." in text
    assert "#   binned logistic: C=0.01, min share=0.05 0.5454, C=0.03, min share=0.05" in text


def test_base_points_are_the_first_line_of_the_breakdown_and_count_in_the_score() -> None:
    model = PointsModel.model_validate(
        {"base_points": 30, "fit": [{"name": "big", "when": {"size": {"ge": 100}}, "points": 25}]}
    )
    leads = pl.DataFrame({"lead_key": [1, 2], "size": ["150", None]})
    result = score(model, leads=leads, events=EVENTS, as_of=AT)
    assert result.get_column("score").to_list() == [55.0, 30.0]
    assert result.get_column("breakdown").to_list() == [
        [{"rule": "base points", "points": 30.0}, {"rule": "big", "points": 25.0}],
        [{"rule": "base points", "points": 30.0}],
    ]


def test_the_roundest_edge_between_two_training_values() -> None:
    assert [simple_between(a, b) for a, b in [(0, 1), (3, 4), (164.2, 268), (0.31, 0.3125), (-5, -3), (99, 250)]] == [
        1,
        4,
        200,
        0.311,
        -4,
        100,
    ]


def test_equal_neighbours_merge_into_one_rule_but_never_into_a_range_without_bounds() -> None:
    size, kind = Feature("size", "numeric"), Feature("kind", "categorical")
    bins = [
        Bin(size, "range", hi=10), Bin(size, "range", lo=10, hi=20), Bin(size, "range", lo=20), Bin(size, "missing"),
        Bin(kind, "levels", levels=("a",), shown=("A",)), Bin(kind, "levels", levels=("b",), shown=("B",)),
        Bin(kind, "levels", levels=("c",), shown=("C",)), Bin(kind, "missing"),
    ]  # fmt: skip
    out, points = merged(bins, np.array([5, 5, 9, 0, 3, 7, 3, 0]))
    assert [(b.name, p) for b, p in zip(out, points.tolist(), strict=True)] == [
        ("size < 20", 5), ("size ≥ 20", 9), ("size: missing", 0), ("kind: A / C", 3), ("kind: B", 7),
        ("kind: missing", 0),
    ]  # fmt: skip
    flat, _ = merged(bins[:3], np.array([4, 4, 4]))
    assert [b.name for b in flat] == ["size < 20", "size ≥ 20"]


def test_a_linear_column_gets_points_per_unit_and_inner_cv_records_why(tmp_path: Path) -> None:
    """``size`` converts in proportion to its value: the line beats free per-bin weights in inner CV, each
    distinct coded value gets its own rule, and the points grow with the code."""
    rng = np.random.default_rng(0)
    code = rng.integers(0, 10, size=1500)
    won = np.where(rng.random(1500) < 0.04 + 0.03 * code, "yes", "no")
    history = tmp_path / "coded.csv"
    pl.DataFrame({"lead_id": [f"L{i}" for i in range(1500)], "code": code.astype(str), "won": won}).write_csv(history)
    params = LearnParams(folds=3, scorecard=ScorecardParams(methods=(BINNED, LINEAR)))
    out = tmp_path / "coded.yaml"
    learned = learn(history, target="won", id_column="lead_id", out=out, params=params)
    chosen = learned.model.metadata["learned"]["chosen"]
    assert (chosen["method"], chosen["C"]) == (LINEAR, 0.01)
    inner = chosen["inner_cv_auc"]
    assert max(auc for label, auc in inner.items() if label.startswith(BINNED)) < inner["linear, C=0.01"]
    rules = [(rule.name, rule.points) for rule in learned.model.fit]
    assert [name for name, _ in rules] == ["code 1 to < 2", "code 2 to < 3", "code 3 to < 4", "code 4 to < 5",
                                           "code 5 to < 6", "code 6 to < 7", "code 7 to < 8", "code 8 to < 9",
                                           "code ≥ 9", "code: missing"]  # fmt: skip
    steps = np.diff([0, *(points for _, points in rules[:-1])])
    assert steps.min() >= 9 and steps.max() <= 13  # one unit ≈ one ninth of the scale, rounding aside
    assert "inner cross-validation on the training leads: linear (points per unit" in out.read_text()


def test_additive_boosting_reads_each_columns_step_curve_and_keeps_the_blanking_bound(tmp_path: Path) -> None:
    """A threshold effect (``age`` ≥ 50 converts three times as often) is a step curve boosting finds and
    a line cannot; blanking any column still moves a score by at most its largest rule."""
    rng = np.random.default_rng(1)
    n = 2000
    age = rng.integers(18, 80, size=n)
    segment = rng.choice(["a", "b", "c"], size=n)
    p = np.where(age >= 50, 0.3, 0.1) * np.select([segment == "a", segment == "b"], [1.5, 1.0], 0.5)
    won = np.where(rng.random(n) < p, "yes", "no")
    frame = pl.DataFrame(
        {"lead_id": [f"L{i}" for i in range(n)], "age": age.astype(str), "segment": segment, "won": won}
    )
    history = tmp_path / "steps.csv"
    frame.write_csv(history)
    params = LearnParams(folds=3, scorecard=ScorecardParams(methods=(LINEAR, BOOSTING)))
    out = tmp_path / "steps.yaml"
    learned = learn(history, target="won", id_column="lead_id", out=out, params=params)
    model = learned.model
    assert model.metadata["learned"]["chosen"]["method"] == BOOSTING
    ages = np.arange(18, 80)
    probe = pl.DataFrame({"lead_key": np.arange(ages.size), "age": ages.astype(str), "segment": "b"})
    by_age = _scores(model, probe)
    assert by_age[ages >= 50].mean() - by_age[ages < 50].mean() > 25  # the step, a third of the scale or more
    leads = frame.drop("won").with_row_index("lead_key").with_columns(pl.col("lead_key").cast(pl.Int64))
    moved = assert_blanking_is_bounded(model, leads)
    assert set(moved) == {"age", "segment"}


def test_line_or_bins_gives_a_nominal_code_bins_and_a_weak_ordinal_code_a_line(tmp_path: Path) -> None:
    """``kind`` is a name written as a code (2 and 7 convert, the codes between do not), ``share`` a level
    whose code raises conversion a little per unit, ``owned`` a count where owning one matters: the kind
    and the count get a rule per value, the share one weight per unit, read out as points per code; blanking
    any column still moves a score by at most its largest rule."""
    rng = np.random.default_rng(2)
    n = 3000
    kind, share, owned = rng.integers(0, 10, n), rng.integers(0, 10, n), rng.choice([0, 1, 2], n, p=[0.6, 0.3, 0.1])
    logit = -2.5 + 1.2 * np.isin(kind, [2, 7]) + 0.08 * share + 0.9 * (owned > 0)
    won = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame = pl.DataFrame({"lead_id": [f"L{i}" for i in range(n)], "kind": kind.astype(str),
                          "share": share.astype(str), "owned": owned.astype(str), "won": won})  # fmt: skip
    history = tmp_path / "coded.csv"
    frame.write_csv(history)
    params = LearnParams(folds=3, scorecard=ScorecardParams(methods=(MIXED,)))
    out = tmp_path / "coded.yaml"
    model = learn(history, target="won", id_column="lead_id", out=out, params=params).model
    assert model.metadata["learned"]["chosen"]["method"] == MIXED
    rules = {rule.name: rule.points for rule in model.fit}
    assert rules == {
        "kind < 1": 3, "kind 1 to < 2": 12, "kind 2 to < 3": 44, "kind 3 to < 4": 10, "kind 4 to < 5": 17,
        "kind 6 to < 7": 14, "kind 7 to < 8": 49, "kind 8 to < 9": 7, "kind ≥ 9": 10, "kind: missing": 0,
        "share 1 to < 2": 3, "share 2 to < 3": 7, "share 3 to < 4": 10, "share 4 to < 5": 13, "share 5 to < 6": 16,
        "share 6 to < 7": 20, "share 7 to < 8": 23, "share 8 to < 9": 26, "share ≥ 9": 29, "share: missing": 0,
        "owned: 1 / 2": 28, "owned: missing": 0,
    }  # fmt: skip
    leads = frame.drop("won").with_row_index("lead_key").with_columns(pl.col("lead_key").cast(pl.Int64))
    assert assert_blanking_is_bounded(model, leads) == {"kind": 49.0, "share": 29.0, "owned": 28.0}
    assert "inner cross-validation on the training leads: line or bins (" in out.read_text()
