"""learn: refusals, target words, the events cutoff, determinism, and learned YAML scoring like hand-written."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from models.engine import score
from models.learning.features import count_feature, event_counts
from models.learning.guards import recorded_late
from models.learning.history import ROW, LearnError, read_history
from models.learning.learn import LearnParams, fit, learn, prepare
from models.spec import Scale
from stages.portfolio import load_model
from tests.models.learning.conftest import write_history

PARAMS = LearnParams(folds=3)


def test_target_words_in_any_case(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("id,x,t\n1,a,Yes\n2,b,no\n3,c,TRUE\n4,d,false\n5,e,1\n6,f,0\n")
    assert read_history(path, target="t").target.tolist() == [1, 0, 1, 0, 1, 0]


def test_a_bad_target_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("id,x,t\n1,a,yes\n2,b,maybe\n3,c,\n")
    with pytest.raises(LearnError) as error:
        read_history(path, target="t")
    assert str(error.value) == (
        f"{path}: column 't': 2 value(s) are not an outcome (1/0, true/false, yes/no): line 3: 'maybe'; line 4: None"
    )


def test_unknown_column(tmp_path: Path) -> None:
    path = write_history(tmp_path / "h.csv")
    with pytest.raises(LearnError, match=r"no column 'converted'; columns: \['lead_id', 'segment', 'size', 'won'\]"):
        read_history(path, target="converted")


def test_one_class_is_refused(tmp_path: Path) -> None:
    path = write_history(tmp_path / "h.csv", won=["no"] * 600)
    with pytest.raises(LearnError) as error:
        prepare(path, target="won", params=PARAMS, id_column="lead_id")
    assert str(error.value) == f"{path}: target 'won' has one class only (all 0): nothing to learn"


def test_fewer_than_30_positives_are_refused(tmp_path: Path) -> None:
    path = write_history(tmp_path / "h.csv", won=["yes"] * 29 + ["no"] * 571)
    with pytest.raises(LearnError, match=r"target 'won' has 29 positive\(s\); at least 30 are needed"):
        prepare(path, target="won", params=PARAMS, id_column="lead_id")
    write_history(path, won=["yes"] * 30 + ["no"] * 570)
    assert prepare(path, target="won", params=PARAMS, id_column="lead_id").y.sum() == 30


def test_an_id_column_as_a_feature_is_refused(tmp_path: Path) -> None:
    path = write_history(tmp_path / "h.csv")
    with pytest.raises(
        LearnError, match=r"column 'lead_id' looks like an identifier \(600 distinct values in 600 rows\)"
    ):
        prepare(path, target="won", params=PARAMS)
    ds = prepare(path, target="won", params=PARAMS, id_column="lead_id")
    assert [f.name for f in ds.features] == ["segment", "size"]


def test_a_column_that_gives_the_outcome_away_is_dropped_unless_forced(tmp_path: Path) -> None:
    path = write_history(tmp_path / "h.csv")
    outcome = pl.read_csv(path).get_column("won")
    write_history(path, stage=outcome.replace_strict({"yes": "closed won", "No": "closed lost"}).to_list())
    ds = prepare(path, target="won", params=PARAMS, id_column="lead_id")
    assert [(leak.column, leak.auc) for leak in ds.leaks] == [("stage", 1.0)]
    assert ds.leaks[0].evidence == (
        "alone it separates the outcome (AUC 1.000 ≥ 0.9)",
        "its name describes an outcome or sales activity (AUC 1.000)",
    )
    assert [f.name for f in ds.features] == ["segment", "size"]
    forced = prepare(path, target="won", params=LearnParams(folds=3, force=True), id_column="lead_id")
    assert [f.name for f in forced.features] == ["segment", "size", "stage"]


def test_recorded_late_compares_each_lead_s_own_time_with_its_own_cutoff() -> None:
    # A value repeated across leads is parsed once but judged against each lead's cutoff; words and empty
    # values are no times, and a column of mostly words holds none.
    times = [" 2026-06-02T09:00:00Z", "2026-06-02T09:00:00Z", None, "2026-05-01T09:00:00Z", "2026-06-02T09:00:00Z"]
    early, late = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC)
    cutoff = pl.Series([early, late, early, early, early] * 2, dtype=pl.Datetime("us", "UTC"))
    assert recorded_late(pl.Series(times * 2), cutoff) == 4  # the first and last of each five
    assert recorded_late(pl.Series(["soon", "2026-06-02T09:00:00Z", "soon", None, "later"] * 2), cutoff) == 0


def test_a_time_recorded_after_the_cutoff_is_a_leak_and_keep_overrides_the_guard(tmp_path: Path) -> None:
    # "updated_on" is filled in when a deal closes: a tenth of the leads have one after their cutoff.
    updated = [(f"2026-06-0{2 + i % 5}T09:00:00Z" if i % 10 == 0 else "2026-05-01T09:00:00Z") for i in range(600)]
    path = write_history(tmp_path / "h.csv", cutoff=["2026-06-01T00:00:00Z"] * 600, updated_on=updated)
    kwargs = {"target": "won", "id_column": "lead_id", "cutoff_column": "cutoff"}
    ds = prepare(path, params=PARAMS, **kwargs)
    assert [(leak.column, leak.evidence) for leak in ds.leaks] == [
        ("updated_on", ("60 of its times are after the lead's cutoff (recorded after the outcome)",))
    ]
    assert [f.name for f in ds.features] == ["segment", "size"]
    kept = prepare(path, params=LearnParams(folds=3, keep=("updated_on",)), **kwargs)
    assert [f.name for f in kept.features] == ["segment", "size", "updated_on"]
    out = tmp_path / "m.yaml"
    learn(path, out=out, params=PARAMS, **kwargs)
    document = yaml.safe_load(out.read_text())
    assert document["metadata"]["learned"]["dropped_as_leaks"] == [
        {"column": "updated_on", "auc": ds.leaks[0].auc, "evidence": list(ds.leaks[0].evidence)}
    ]
    assert "# Dropped as a likely leak: 'updated_on' likely leaks the outcome: 60 of its times" in out.read_text()
    with pytest.raises(LearnError, match=r"h.csv: --keep names no learnable column: \['nope'\]"):
        prepare(path, params=LearnParams(folds=3, keep=("nope",)), **kwargs)


def _events(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "events.csv"
    rows = ["event_id,lead_id,type,occurred_at,machine"]
    for i in range(0, 600, 2):  # every other lead visited twice before its cutoff, converters once more
        rows.append(f"e{i}a,L{i:04d},page_view,2026-05-20T10:00:00Z,")
        rows.append(f"e{i}b,L{i:04d},page_view,2026-05-29T10:00:00+02:00,false")
    path.write_text("\n".join(rows) + "\n" + extra)
    return path


def test_events_after_the_cutoff_change_nothing(tmp_path: Path) -> None:
    history = write_history(tmp_path / "h.csv", cutoff=["2026-06-01T00:00:00Z"] * 600)
    kwargs = {"target": "won", "id_column": "lead_id", "cutoff_column": "cutoff", "params": PARAMS}
    before = learn(history, events_path=_events(tmp_path), out=tmp_path / "a.yaml", **kwargs)
    later = "".join(f"late{i},L{i:04d},page_view,2026-06-01T00:00:01Z,\n" for i in range(0, 600, 3))
    after = learn(history, events_path=_events(tmp_path, later), out=tmp_path / "b.yaml", **kwargs)
    assert before.version != after.version  # the events file differs …
    assert after.model.fit == before.model.fit  # … but nothing after the cutoff counts
    assert after.model.behaviour == before.model.behaviour
    assert after.metrics == before.metrics


def test_event_counts_respect_cutoff_window_and_machine_activity() -> None:
    at = datetime(2026, 6, 1, tzinfo=UTC)
    events = pl.DataFrame(
        {
            ROW: [0, 0, 0, 0, 1, 1],
            "type": ["page_view"] * 6,
            "occurred_at": [
                datetime(2026, 5, 31, tzinfo=UTC),  # 1 day before
                datetime(2026, 5, 25, tzinfo=UTC),  # 7 days before: inside "7 days" (<=)
                datetime(2026, 5, 1, tzinfo=UTC),  # 31 days before
                datetime(2026, 6, 2, tzinfo=UTC),  # after the cutoff: never
                datetime(2026, 5, 31, tzinfo=UTC),
                datetime(2026, 5, 31, tzinfo=UTC),
            ],
            "machine": [False, False, False, False, True, False],
        }
    )
    moments = pl.DataFrame({ROW: [0, 1, 2], "as_of": [at, at, at]})
    features = [count_feature("page_view", 7), count_feature("page_view", None)]
    counts = event_counts(events, moments, features)
    assert counts.rows() == [(0, 2, 3), (1, 1, 1), (2, 0, 0)]


def test_same_seed_same_file_and_another_seed_another_version(tmp_path: Path) -> None:
    history = write_history(tmp_path / "h.csv")
    first = learn(history, target="won", id_column="lead_id", out=tmp_path / "one.yaml", params=PARAMS)
    second = learn(history, target="won", id_column="lead_id", out=tmp_path / "two.yaml", params=PARAMS)
    assert (tmp_path / "one.yaml").read_bytes() == (tmp_path / "two.yaml").read_bytes()
    other = learn(
        history, target="won", id_column="lead_id", out=tmp_path / "three.yaml", params=LearnParams(folds=3, seed=1)
    )
    assert first.version == second.version != other.version
    document = yaml.safe_load((tmp_path / "one.yaml").read_text())
    assert document["version"] == first.version
    assert set(document["metadata"]) == {"learned", "metrics", "libraries"}
    assert document["metadata"]["learned"]["leads"] == 600


def test_a_learned_yaml_scores_exactly_like_the_same_rules_written_by_hand(tmp_path: Path) -> None:
    history = write_history(tmp_path / "h.csv", segment_text=["A ", "b", "Select", "c", "x"] * 120)
    out = tmp_path / "learned.yaml"
    learned = learn(history, target="won", id_column="lead_id", out=out, params=PARAMS)
    rules = learned.model.model_dump(
        mode="json", by_alias=True, exclude_defaults=True, include={"base_points", "fit", "behaviour"}
    )
    assert rules["fit"], "the learned model has rules"
    hand = tmp_path / "hand.yaml"
    hand.write_text(yaml.safe_dump({"kind": "points", **rules}, sort_keys=False))
    leads = (
        pl.read_csv(history, infer_schema=False)
        .with_row_index("lead_key")
        .with_columns(pl.col("lead_key").cast(pl.Int64))
    )
    events = pl.DataFrame(schema={"lead_key": pl.Int64, "occurred_at": pl.Datetime("us", "UTC"), "type": pl.Utf8,
                                  "machine": pl.Boolean, "properties": pl.Utf8})  # fmt: skip
    at = datetime(2026, 6, 1, tzinfo=UTC)
    from_learned = score(load_model(out), leads=leads, events=events, as_of=at)
    from_hand = score(load_model(hand), leads=leads, events=events, as_of=at)
    assert from_learned.equals(from_hand)
    # …and the engine agrees with the scores the cross-validation computed from the bins.
    ds = prepare(history, target="won", params=PARAMS, id_column="lead_id")
    card = fit(ds, np.arange(600), "points", Scale(), PARAMS).scorecard
    assert card is not None
    assert np.array_equal(card.score(ds.frame), from_learned.get_column("score").to_numpy())
    assert from_learned.get_column("score").n_unique() > 5
