"""Promotion by threshold and external (CRM) stage updates, with reset or carry on entry."""

from collections.abc import Callable
from datetime import datetime

import polars as pl
import pytest

from models.spec import Scale
from stages.portfolio import ProductLine
from stages.scoring import score_line
from stages.transitions import (
    advance,
    apply_external,
    apply_transitions,
    promote,
    score_in_stage,
)
from store.shapes import STAGE_UPDATE_SCHEMA, TRANSITION_SCHEMA
from tests.stages.helpers import day, journeys, leads, scored, visits, with_stage

MakeLine = Callable[..., ProductLine]


def run(line: ProductLine, state: pl.DataFrame, people: pl.DataFrame, events: pl.DataFrame, as_of: datetime):
    """What the flow does for one partition: score, then promote / rescore until nothing moves."""

    def rescore(subset: pl.DataFrame) -> pl.DataFrame:
        return score_line(line, journeys=subset, leads=people, events=events, as_of=as_of, scale=Scale())

    return advance(line, state, rescore(state), rescore, as_of)


def updates(*rows: tuple[int, str, datetime, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {name: [r[i] for r in rows] for i, name in enumerate(STAGE_UPDATE_SCHEMA)},
        schema=STAGE_UPDATE_SCHEMA,
    )


def scores(frame: pl.DataFrame) -> dict[int, tuple[str, float]]:
    return {j: (stage, s) for j, stage, s in frame.select("journey_id", "stage", "score").iter_rows()}


# --- promotion, through the scorer ----------------------------------------------------------------


def test_reset_promotion_counts_only_events_after_entry(make_line: MakeLine) -> None:
    line = make_line()  # evaluation: entry reset
    events = visits(*[(1, day(i)) for i in range(4)])  # 4 visits before day 10: 40 points in discovery
    first = run(line, journeys((1, "discovery", day(0), None)), leads(1), events, day(10))

    assert first.transitions.select("from_stage", "to_stage", "at", "reason", "score_before", "score_after").rows() == [
        ("discovery", "evaluation", day(10), "threshold", 40.0, 0.0)
    ]
    state = first.journeys.row(0, named=True)
    assert (state["stage"], state["stage_entered_at"], state["score_from"]) == ("evaluation", day(10), day(10))
    assert scores(first.scored) == {1: ("evaluation", 0.0)}

    later = pl.concat([events, visits((1, day(11)), (1, day(12)))])  # two visits after the promotion
    second = run(line, first.journeys, leads(1), later, day(20))
    assert scores(second.scored) == {1: ("evaluation", 20.0)}
    assert second.transitions.is_empty()


def test_carry_promotion_keeps_everything(make_line: MakeLine) -> None:
    line = make_line(stages=with_stage("evaluation", model="visits.yaml", promote_at=70, entry="carry"))
    events = visits(*[(1, day(i)) for i in range(4)])
    first = run(line, journeys((1, "discovery", day(0), None)), leads(1), events, day(10))

    assert first.transitions.select("from_stage", "to_stage", "score_before", "score_after", "score_from").rows() == [
        ("discovery", "evaluation", 40.0, 40.0, None)
    ]
    later = pl.concat([events, visits((1, day(11)), (1, day(12)))])
    second = run(line, first.journeys, leads(1), later, day(20))
    assert scores(second.scored) == {1: ("evaluation", 60.0)}


def test_two_stages_in_one_run(make_line: MakeLine) -> None:
    line = make_line(stages=with_stage("evaluation", model="visits.yaml", promote_at=50, entry="carry"))
    events = pl.concat([visits(*[(1, day(i)) for i in range(6)]), visits(*[(2, day(i)) for i in range(4)])])
    state = journeys((1, "discovery", day(0), None), (2, "discovery", day(0), None))
    result = run(line, state, leads(1, 2), events, day(10))

    assert result.transitions.select("journey_id", "from_stage", "to_stage", "score_before", "score_after").rows() == [
        (1, "discovery", "evaluation", 60.0, 60.0),
        (2, "discovery", "evaluation", 40.0, 40.0),
        (1, "evaluation", "purchase", 60.0, 60.0),
    ]
    assert scores(result.scored) == {1: ("purchase", 60.0), 2: ("evaluation", 40.0)}
    assert result.steps.select("journey_id", "step", "stage").sort("step", "journey_id").rows() == [
        (1, 0, "discovery"),
        (2, 0, "discovery"),
        (1, 1, "evaluation"),
        (2, 1, "evaluation"),
        (1, 2, "purchase"),
    ]


def test_two_stages_through_reset_needs_fit_alone(make_line: MakeLine) -> None:
    """After a reset at the run's time only fit counts, so a second hop needs fit ≥ promote_at."""
    line = make_line(stages=with_stage("evaluation", model="visits.yaml", promote_at=20, entry="reset"))
    events = pl.concat([visits(*[(1, day(i)) for i in range(2)]), visits(*[(2, day(i)) for i in range(4)])])
    state = journeys((1, "discovery", day(0), None), (2, "discovery", day(0), None))
    result = run(line, state, leads(1, 2, vp=(1,)), events, day(10))  # lead 1: fit 20 + 20 = 40; lead 2: 40
    assert scores(result.scored) == {1: ("purchase", 20.0), 2: ("evaluation", 0.0)}


def test_promotion_stops_at_the_last_funnel_stage(make_line: MakeLine) -> None:
    line = make_line()
    calls: list[int] = []

    def always_full(subset: pl.DataFrame) -> pl.DataFrame:
        calls.append(subset.height)
        return subset.select("journey_id", "lead_key", "stage", pl.lit(100.0).alias("score"))

    result = advance(line, journeys((1, "discovery", day(0), None)), scored((1, "discovery", 100)), always_full, day(5))
    assert result.transitions["to_stage"].to_list() == ["evaluation", "purchase"]
    assert calls == [1, 1]


def test_min_dwell_days(make_line: MakeLine) -> None:
    line = make_line(stages=with_stage("discovery", model="visits.yaml", promote_at=30, min_dwell_days=7))
    state = journeys((1, "discovery", day(0), None), (2, "discovery", day(3), None), (3, "discovery", None, None))
    now = scored((1, "discovery", 35), (2, "discovery", 35), (3, "discovery", 35))
    assert promote(line, state, now, day(9))["journey_id"].to_list() == [1, 3]  # 9 days ≥ 7; 6 days < 7
    assert promote(line, state, now, day(10))["journey_id"].to_list() == [1, 2, 3]  # exactly 7 days


def test_promote_below_threshold_stale_score_and_terminal(make_line: MakeLine) -> None:
    line = make_line()
    state = journeys(
        (1, "discovery", day(0), None),
        (2, "discovery", day(0), None),
        (3, "evaluation", day(0), day(0)),
        (4, "purchase", day(0), None),
        (5, "customer", day(0), None),
    )
    now = scored((1, "discovery", 29.99), (2, "evaluation", 90), (3, "evaluation", 50), (4, "purchase", 100))
    now = pl.concat([now, scored((5, "customer", 100))])
    moved = promote(line, state, now, day(1))
    assert moved.schema == pl.Schema(TRANSITION_SCHEMA)
    # 1 is below 30; 2's score was computed under another stage; purchase and customer do not promote.
    assert moved.select("journey_id", "to_stage", "score_from").rows() == [(3, "purchase", day(0))]


def test_carry_fraction_blends_rule_by_rule(make_line: MakeLine) -> None:
    line = make_line(stages=with_stage("evaluation", model="visits.yaml", entry="carry", carry_fraction=0.5))
    evaluation = line.stage("evaluation")
    state = pl.DataFrame(
        {"lead_key": [1, 2], "score_from": [None, None], "stage_entered_at": [day(10), day(10)]},
        schema={
            "lead_key": pl.Int64,
            "score_from": pl.Datetime("us", "UTC"),
            "stage_entered_at": pl.Datetime("us", "UTC"),
        },
    )
    events = visits((1, day(1)), (1, day(2)), (1, day(11)))  # two visits before entry, one after
    result = score_in_stage(
        evaluation, journeys=state, leads=leads(1, 2, vp=(1,)), events=events, as_of=day(12), scale=Scale()
    )
    # carried: vp 20 + visit 30 = 50; reset: vp 20 + visit 10 = 30; half of each: vp 20, visit 20.
    assert result.rows() == [
        (1, 40.0, [{"rule": "vp", "points": 20.0}, {"rule": "visit", "points": 20.0}]),
        (2, 0.0, []),
    ]


def test_without_carry_fraction_score_in_stage_is_the_plain_score(make_line: MakeLine) -> None:
    line = make_line()
    state = pl.DataFrame(
        {"lead_key": [1], "score_from": [None], "stage_entered_at": [day(10)]},
        schema={
            "lead_key": pl.Int64,
            "score_from": pl.Datetime("us", "UTC"),
            "stage_entered_at": pl.Datetime("us", "UTC"),
        },
    )
    result = score_in_stage(
        line.stage("discovery"),
        journeys=state,
        leads=leads(1),
        events=visits((1, day(1))),
        as_of=day(12),
        scale=Scale(),
    )
    assert result.select("lead_key", "score").rows() == [(1, 10.0)]


# --- external updates -------------------------------------------------------------------------------


def test_external_backwards_move_applies_the_target_entry_policy(make_line: MakeLine) -> None:
    line = make_line()
    state = journeys((1, "purchase", day(5), day(2)), (2, "purchase", day(5), day(2)), score=[70.0, 65.0])
    moves = apply_external(line, state, updates((1, "evaluation", day(6), "crm"), (2, "discovery", day(6), "crm")))
    assert moves.select("journey_id", "from_stage", "to_stage", "at", "reason", "source", "score_before").rows() == [
        (1, "purchase", "evaluation", day(6), "external", "crm", 70.0),
        (2, "purchase", "discovery", day(6), "external", "crm", 65.0),
    ]
    # evaluation resets at changed_at; discovery carries what purchase counted.
    assert moves.select("score_from", "status").rows() == [(day(6), "active"), (day(2), "active")]
    after = apply_transitions(state, moves)
    assert after.select("stage", "stage_entered_at", "score_from").rows() == [
        ("evaluation", day(6), day(6)),
        ("discovery", day(6), day(2)),
    ]


def test_external_reset_through_the_scorer(make_line: MakeLine) -> None:
    line = make_line()
    state = journeys((1, "purchase", day(5), None))
    moved = apply_transitions(state, apply_external(line, state, updates((1, "evaluation", day(6), "crm"))))
    events = visits((1, day(1)), (1, day(5)), (1, day(7)))
    result = score_line(line, journeys=moved, leads=leads(1), events=events, as_of=day(8), scale=Scale())
    assert result.select("stage", "score").rows() == [("evaluation", 10.0)]  # only the visit of day 7


def test_external_terminal_stage_ends_the_funnel(make_line: MakeLine) -> None:
    line = make_line()
    state = journeys((1, "evaluation", day(0), day(0)), (2, "discovery", day(0), None))
    moves = apply_external(line, state, updates((1, "customer", day(3), "crm"), (2, "lost", day(3), "crm")))
    assert moves.select("to_stage", "status", "score_from").rows() == [
        ("customer", "customer", day(0)),
        ("lost", "lost", None),
    ]
    after = apply_transitions(state, moves)
    assert after.select("stage", "status").rows() == [("customer", "customer"), ("lost", "lost")]
    # Terminal stages are not scored and never promote, whatever score a caller passes in.
    assert [stage.name for stage in line.funnel] == ["discovery", "evaluation", "purchase"]
    assert promote(line, after, scored((1, "customer", 100), (2, "lost", 100)), day(4)).is_empty()


def test_external_chain_in_one_batch_and_reopening(make_line: MakeLine) -> None:
    line = make_line()
    state = journeys((1, "discovery", day(0), None), status=["nurturing"])
    batch = updates(
        (1, "discovery", day(1), "crm"),  # no-op: already there
        (1, "lost", day(3), "crm"),
        (1, "evaluation", day(5), "crm"),  # reopened: active again, reset
        (1, "purchase", day(4), "crm"),  # applied in changed_at order, before evaluation
    )
    moves = apply_external(line, state, batch)
    assert moves.select("from_stage", "to_stage", "at", "score_from", "status").rows() == [
        ("discovery", "lost", day(3), None, "lost"),
        ("lost", "purchase", day(4), None, "active"),
        ("purchase", "evaluation", day(5), day(5), "active"),
    ]
    assert moves["score_before"].to_list() == [None, None, None]  # no score column given
    final = apply_transitions(state, moves).row(0, named=True)
    assert (final["stage"], final["status"], final["stage_entered_at"]) == ("evaluation", "active", day(5))


def test_external_keeps_status_when_not_terminal(make_line: MakeLine) -> None:
    line = make_line()
    state = journeys((1, "discovery", day(0), None), status=["nurturing"])
    moves = apply_external(line, state, updates((1, "evaluation", day(1), "crm")))
    assert moves["status"].to_list() == ["nurturing"]


def test_external_ignores_stale_future_no_op_and_unknown_leads(make_line: MakeLine) -> None:
    line = make_line()
    state = journeys((1, "evaluation", day(5), day(5)), (2, "discovery", day(0), None))
    batch = updates(
        (1, "discovery", day(4), "crm"),  # older than the journey's entry into evaluation
        (2, "discovery", day(6), "crm"),  # already there
        (2, "evaluation", day(20), "crm"),  # after as_of: a later run takes it
        (9, "evaluation", day(6), "crm"),  # no journey in this line
    )
    assert apply_external(line, state, batch, as_of=day(10)).is_empty()
    assert apply_external(line, state, batch)["journey_id"].to_list() == [2]


def test_reapplying_the_same_updates_changes_nothing(make_line: MakeLine) -> None:
    line = make_line()
    state = journeys((1, "discovery", day(0), None))
    batch = updates((1, "evaluation", day(2), "crm"))
    once = apply_transitions(state, apply_external(line, state, batch))
    assert apply_external(line, once, batch).is_empty()


def test_unknown_stage_is_a_caller_bug(make_line: MakeLine) -> None:
    line = make_line()
    with pytest.raises(ValueError, match=r"has no stage \['negotiation'\]"):
        apply_external(line, journeys((1, "discovery", day(0), None)), updates((1, "negotiation", day(1), "crm")))
