"""Triggers fire once per crossing, re-arm when the score goes back, never twice on a re-run; sticky milestones."""

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import polars as pl

from stages.portfolio import ProductLine
from stages.triggers import Fired, fire, qualification_milestones
from store.shapes import ARM_SCHEMA, FIRING_SCHEMA
from tests.stages.helpers import day

MakeLine = Callable[..., ProductLine]
HOT = {"name": "hot", "when": {"score": {"crosses_up": 50}}, "actions": [{"notify_owner": {}}, {"tag": "hot"}]}
COOLING = {"name": "cooling", "when": {"score": {"crosses_down": 20}}, "actions": [{"untag": "hot"}]}
MQL = {
    "name": "mql",
    "when": {"qualification_reached": "MQL"},
    "actions": [{"webhook": {"url": "http://127.0.0.1:9/h"}}],
}
PURCHASE = {"name": "buying", "when": {"stage_entered": "purchase"}, "actions": [{"enrol": "onboarding"}]}
CUSTOMER = {"name": "won", "when": {"stage_entered": "customer"}, "actions": [{"exit": "nurture"}]}
EVAL_HOT = {
    "name": "evaluation hot",
    "stage": "evaluation",
    "when": {"score": {"crosses_up": 40}},
    "actions": [{"notify_owner": {"to": "sales@example.com", "template": "eval_alert"}}],
}


def states(*rows: tuple[int, str, float | None], step: int | None = None) -> pl.DataFrame:
    """Journey states ``(journey_id, stage, score)``; lead_key = journey_id."""
    frame = pl.DataFrame(
        {
            "journey_id": [r[0] for r in rows],
            "lead_key": [r[0] for r in rows],
            "stage": [r[1] for r in rows],
            "score": [r[2] for r in rows],
        },
        schema={"journey_id": pl.Int64, "lead_key": pl.Int64, "stage": pl.Utf8, "score": pl.Float64},
    )
    return frame if step is None else frame.with_columns(pl.lit(step, pl.Int32).alias("step"))


def arms(*rows: tuple[int, str, bool, datetime | None]) -> pl.DataFrame:
    return pl.DataFrame([list(r) for r in rows], schema=ARM_SCHEMA, orient="row")


NO_ARMS = pl.DataFrame(schema=ARM_SCHEMA)


def persist(stored: pl.DataFrame, fired: Fired) -> pl.DataFrame:
    """What the caller does with ``Fired.armed``: an upsert on (journey_id, trigger)."""
    return pl.concat([stored.join(fired.armed, on=["journey_id", "trigger"], how="anti"), fired.armed])


def fired_rows(fired: Fired) -> list[tuple[Any, ...]]:
    return fired.firings.select("journey_id", "trigger", "direction", "action").rows()


def test_fires_once_per_crossing_with_one_row_per_action(make_line: MakeLine) -> None:
    line = make_line(triggers=[HOT])
    fired = fire(line, states((1, "discovery", 40)), states((1, "discovery", 55)), NO_ARMS, as_of=day(1))
    assert fired.firings.schema == pl.Schema(FIRING_SCHEMA)
    assert fired.firings.select("journey_id", "trigger", "step", "direction", "action_index", "action").rows() == [
        (1, "hot", 0, "up", 0, "notify_owner"),
        (1, "hot", 0, "up", 1, "tag"),
    ]
    assert [json.loads(p) for p in fired.firings["params"]] == [{"template": "owner_alert", "to": None}, {"tag": "hot"}]
    assert fired.firings.select("score", "score_before").rows() == [(55.0, 40.0), (55.0, 40.0)]
    assert fired.armed.rows() == [(1, "hot", False, day(1))]

    # The next run: still above, nothing fires and the arm state does not change.
    stored = persist(NO_ARMS, fired)
    again = fire(line, states((1, "discovery", 55)), states((1, "discovery", 60)), stored, as_of=day(2))
    assert again.firings.is_empty() and again.armed.is_empty()


def test_rearms_after_falling_back_and_fires_again(make_line: MakeLine) -> None:
    line = make_line(triggers=[HOT])
    stored = arms((1, "hot", False, day(1)))
    down = fire(line, states((1, "discovery", 60)), states((1, "discovery", 45)), stored, as_of=day(2))
    assert down.firings.is_empty()
    assert down.armed.rows() == [(1, "hot", True, day(2))]
    stored = persist(stored, down)
    up = fire(line, states((1, "discovery", 45)), states((1, "discovery", 50)), stored, as_of=day(3))
    assert fired_rows(up) == [(1, "hot", "up", "notify_owner"), (1, "hot", "up", "tag")]


def test_never_twice_on_a_rerun_with_the_same_inputs(make_line: MakeLine) -> None:
    line = make_line(triggers=[HOT])
    before, after = (
        states((1, "discovery", 40), (2, "discovery", 10)),
        states((1, "discovery", 55), (2, "discovery", 70)),
    )
    first = fire(line, before, after, NO_ARMS, as_of=day(1))
    assert fired_rows(first) == [
        (1, "hot", "up", "notify_owner"),
        (1, "hot", "up", "tag"),
        (2, "hot", "up", "notify_owner"),
        (2, "hot", "up", "tag"),
    ]
    # Pure: the same inputs give the same output.
    same = fire(line, before, after, NO_ARMS, as_of=day(1))
    assert same.firings.equals(first.firings) and same.armed.equals(first.armed)
    # Re-run once the arm state is stored: nothing fires twice.
    rerun = fire(line, before, after, persist(NO_ARMS, first), as_of=day(1))
    assert rerun.firings.is_empty()


def test_new_journey_counts_from_the_scale_minimum(make_line: MakeLine) -> None:
    line = make_line(triggers=[HOT])
    before = states((2, "discovery", None))  # journey 1 is not there at all; 2 was never scored
    after = states((1, "discovery", 70), (2, "discovery", 30))
    fired = fire(line, before, after, NO_ARMS, as_of=day(1))
    assert fired.firings["journey_id"].unique().to_list() == [1]
    assert fired.armed.rows() == [(1, "hot", False, day(1))]  # 2 at 30 is armed, as its score implies: no row


def test_a_new_trigger_does_not_fire_for_journeys_already_past_it(make_line: MakeLine) -> None:
    line = make_line(triggers=[HOT])
    fired = fire(line, states((1, "discovery", 80)), states((1, "discovery", 85)), NO_ARMS, as_of=day(1))
    assert fired.firings.is_empty() and fired.armed.is_empty()  # disarmed, as its score of 85 implies


def test_crosses_down(make_line: MakeLine) -> None:
    line = make_line(triggers=[COOLING])
    before = states((1, "discovery", 30), (3, "discovery", None))
    fired = fire(
        line, before, states((1, "discovery", 15), (2, "discovery", 10), (3, "discovery", 5)), NO_ARMS, as_of=day(1)
    )
    # 1 went from 30 to 15; 2 and 3 are new and were never above 20.
    assert fired_rows(fired) == [(1, "cooling", "down", "untag")]
    stored = persist(NO_ARMS, fired)
    rise = fire(line, states((2, "discovery", 10)), states((2, "discovery", 25)), stored, as_of=day(2))
    assert rise.firings.is_empty()
    stored = persist(stored, rise)
    fall = fire(line, states((2, "discovery", 25)), states((2, "discovery", 19.99)), stored, as_of=day(3))
    assert fired_rows(fall) == [(2, "cooling", "down", "untag")]


def test_qualification_reached_is_sticky(make_line: MakeLine) -> None:
    line = make_line(triggers=[MQL])
    first = fire(line, states((1, "discovery", 10)), states((1, "evaluation", 35)), NO_ARMS, as_of=day(1))
    assert fired_rows(first) == [(1, "mql", "reached", "webhook")]
    stored = persist(NO_ARMS, first)
    reset = fire(line, states((1, "evaluation", 35)), states((1, "evaluation", 0)), stored, as_of=day(2))
    assert reset.firings.is_empty() and reset.armed.is_empty()  # stays disarmed: nothing to write
    again = fire(line, states((1, "evaluation", 0)), states((1, "evaluation", 40)), stored, as_of=day(3))
    assert again.firings.is_empty()


def test_qualification_reached_before_the_trigger_existed_stays_disarmed(make_line: MakeLine) -> None:
    line = make_line(triggers=[MQL])
    reset = fire(line, states((1, "evaluation", 35)), states((1, "evaluation", 10)), NO_ARMS, as_of=day(1))
    assert reset.firings.is_empty()
    assert reset.armed.rows() == [(1, "mql", False, day(1))]  # a score of 10 alone would imply armed
    again = fire(line, states((1, "evaluation", 10)), states((1, "evaluation", 40)), reset.armed, as_of=day(2))
    assert again.firings.is_empty()


def test_qualification_reached_reads_recorded_milestones(make_line: MakeLine) -> None:
    """Without an arm row, a milestone recorded before (then lost to a reset) keeps it from firing."""
    line = make_line(triggers=[MQL])
    reached = pl.DataFrame(
        {"journey_id": [1], "qualification": ["MQL"]}, schema={"journey_id": pl.Int64, "qualification": pl.Utf8}
    )
    before, after = (
        states((1, "evaluation", 5), (2, "evaluation", 5)),
        states((1, "evaluation", 35), (2, "evaluation", 35)),
    )
    fired = fire(line, before, after, NO_ARMS, as_of=day(1), reached=reached)
    assert fired.firings["journey_id"].unique().to_list() == [2]


def test_stage_entered(make_line: MakeLine) -> None:
    line = make_line(triggers=[PURCHASE, CUSTOMER])
    before = states((1, "evaluation", 60), (2, "purchase", 60), (3, "purchase", 70))
    after = states((1, "purchase", 20), (2, "purchase", 65), (3, "customer", None))  # 3 moved by the CRM
    fired = fire(line, before, after, NO_ARMS, as_of=day(1))
    assert fired_rows(fired) == [(1, "buying", "entered", "enrol"), (3, "won", "entered", "exit")]
    rerun = fire(line, before, after, persist(NO_ARMS, fired), as_of=day(1))
    assert rerun.firings.is_empty()
    # Already a customer (never scored) when the trigger was added: not an entry. Absent before: an entry.
    settled = fire(
        line, states((4, "customer", None)), states((4, "customer", None), (5, "purchase", 10)), NO_ARMS, as_of=day(2)
    )
    assert fired_rows(settled) == [(5, "buying", "entered", "enrol")]


def test_stage_filter_watches_one_stage_and_entering_it_is_a_fresh_start(make_line: MakeLine) -> None:
    line = make_line(triggers=[EVAL_HOT])
    before = states((1, "discovery", 30), (2, "discovery", 30), (3, "evaluation", 45))
    after = states((1, "discovery", 45), (2, "evaluation", 45), (3, "evaluation", 48))
    fired = fire(line, before, after, NO_ARMS, as_of=day(1))
    # 1 is not in evaluation; 2 entered it above 40; 3 was already above 40 in evaluation.
    assert fired_rows(fired) == [(2, "evaluation hot", "up", "notify_owner")]
    assert json.loads(fired.firings["params"][0]) == {"template": "eval_alert", "to": "sales@example.com"}


def test_steps_of_one_run_crossing_then_promoted(make_line: MakeLine) -> None:
    """Crossing 50 in discovery, then promoted with reset in the same run: fired once, re-armed at step 1."""
    line = make_line(triggers=[HOT])
    before = states((1, "discovery", 40))
    after = pl.concat([states((1, "discovery", 55), step=0), states((1, "evaluation", 0), step=1)])
    fired = fire(line, before, after, NO_ARMS, as_of=day(1))
    assert fired.firings.select("step", "direction").unique().rows() == [(0, "up")]
    assert fired.armed.rows() == [(1, "hot", True, day(1))]
    # A re-run of the same run (same as_of) does not fire again although the final arm state is armed...
    stored = persist(NO_ARMS, fired)
    assert fire(line, before, after, stored, as_of=day(1)).firings.is_empty()
    # ...while a later run that crosses again in evaluation does.
    later = fire(line, states((1, "evaluation", 0)), states((1, "evaluation", 50)), stored, as_of=day(2))
    assert later.firings["step"].unique().to_list() == [0]


def test_unscored_and_untouched_journeys_keep_their_arm_state(make_line: MakeLine) -> None:
    line = make_line(triggers=[HOT, PURCHASE])
    stored = arms((1, "hot", False, day(0)), (9, "hot", True, day(0)))
    fired = fire(line, states((1, "purchase", 70)), states((1, "customer", None)), stored, as_of=day(1))
    assert fired.firings.is_empty() and fired.armed.is_empty()


def test_no_triggers_no_firings(make_line: MakeLine) -> None:
    fired = fire(make_line(), states((1, "discovery", 0)), states((1, "discovery", 90)), NO_ARMS, as_of=day(1))
    assert fired.firings.is_empty() and fired.armed.is_empty()


# --- qualification milestones -----------------------------------------------------------------------


NONE_REACHED = pl.DataFrame(schema={"journey_id": pl.Int64, "qualification": pl.Utf8})


def test_milestones_first_time_each_qualification(make_line: MakeLine) -> None:
    line = make_line()  # MQL 30, SQL 60
    after = states((1, "discovery", 65), (2, "discovery", 30), (3, "discovery", 29.99))
    rows = qualification_milestones(line, after, NONE_REACHED, as_of=day(1))
    assert rows.select("journey_id", "qualification", "reached_at", "stage", "score").rows() == [
        (1, "MQL", day(1), "discovery", 65.0),
        (1, "SQL", day(1), "discovery", 65.0),
        (2, "MQL", day(1), "discovery", 30.0),
    ]


def test_milestones_are_sticky(make_line: MakeLine) -> None:
    line = make_line()
    reached = pl.DataFrame({"journey_id": [1], "qualification": ["MQL"]}, schema=NONE_REACHED.schema)
    rows = qualification_milestones(line, states((1, "evaluation", 40)), reached, as_of=day(5))
    assert rows.is_empty()  # reached before, lost to a reset, reached again: still the first time only
    rows = qualification_milestones(line, states((1, "evaluation", 61)), reached, as_of=day(6))
    assert rows.select("qualification", "reached_at").rows() == [("SQL", day(6))]


def test_milestone_reached_before_a_promotion_in_the_same_run(make_line: MakeLine) -> None:
    line = make_line()
    breakdown = [{"rule": "visit", "points": 40.0}]
    after = pl.concat(
        [
            states((1, "discovery", 40), step=0).with_columns(pl.Series("breakdown", [breakdown])),
            states((1, "evaluation", 0), step=1).with_columns(
                pl.Series("breakdown", [[]], dtype=pl.List(pl.Struct({"rule": pl.Utf8, "points": pl.Float64})))
            ),
        ]
    )
    rows = qualification_milestones(line, after, NONE_REACHED, as_of=day(1))
    assert rows.select("qualification", "stage", "step", "breakdown").rows() == [("MQL", "discovery", 0, breakdown)]
