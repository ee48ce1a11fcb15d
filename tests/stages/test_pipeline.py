"""``run_line`` at the seam where a journey changes stage: the history it writes, what its firings carry,
and how a move by sales holds."""

from collections.abc import Callable
from datetime import datetime

import polars as pl

from models.frames import one_lead
from models.spec import Scale
from stages.pipeline import run_line, score_and_advance
from stages.portfolio import ProductLine
from store.shapes import ARM_SCHEMA, STAGE_UPDATE_SCHEMA
from tests.stages.helpers import day, journeys, leads, visits, with_stage

MakeLine = Callable[..., ProductLine]
SQL_ALERT = [{"name": "sales ready", "when": {"qualification_reached": "SQL"}, "actions": [{"notify_owner": {}}]}]


def line_run(
    line: ProductLine,
    state: pl.DataFrame,
    people: pl.DataFrame,
    events: pl.DataFrame,
    as_of: datetime,
    updates: pl.DataFrame | None = None,
):
    return run_line(
        line,
        journeys=state,
        leads=people,
        events=events,
        updates=pl.DataFrame(schema=STAGE_UPDATE_SCHEMA) if updates is None else updates,
        armed=pl.DataFrame(schema=ARM_SCHEMA),
        reached=pl.DataFrame(schema={"journey_id": pl.Int64, "qualification": pl.Utf8}),
        as_of=as_of,
        scale=Scale(),
    )


def stored(*rows: tuple[int, str, datetime | None, float | None, str | None, str | None, str | None]) -> pl.DataFrame:
    """Journeys as the store holds them: ``(id, stage, entered, score, band, qualification, entered_by)``."""
    return journeys(
        *[(r[0], r[1], r[2], None) for r in rows],
        score=[r[3] for r in rows],
        band=[r[4] for r in rows],
        qualification=[r[5] for r in rows],
        entered_by=[r[6] for r in rows],
    )


def test_a_promotion_writes_the_state_that_crossed_then_the_new_stage(make_line: MakeLine) -> None:
    line = make_line()  # discovery promote_at 30 → evaluation (reset, promote_at 50)
    events = visits(*[(1, day(i)) for i in range(4)])  # 40 in discovery
    state = stored(
        (1, "discovery", day(0), 10.0, "cold", None, "opened"), (2, "discovery", day(0), None, None, None, None)
    )
    outcome = line_run(line, state, leads(1, 2), events, day(10))

    history = outcome.snapshots.select("journey_id", "step", "stage", "score", "band", "qualification", "breakdown")
    assert history.rows() == [
        (1, 0, "discovery", 40.0, "warm", "MQL", [{"rule": "visit", "points": 40.0}]),
        (1, 1, "evaluation", 0.0, "cold", None, []),
        (2, 0, "discovery", 0.0, "cold", None, []),
    ]
    assert outcome.changed.select("journey_id", "stage", "score").sort("journey_id").rows() == [
        (1, "evaluation", 0.0),
        (2, "discovery", 0.0),
    ]

    after = outcome.journeys.drop("score", "band", "qualification").join(
        outcome.scored.select("journey_id", "score", "band", "qualification"), on="journey_id"
    )
    assert line_run(line, after, leads(1, 2), events, day(10)).snapshots.is_empty()  # same state: no history


def test_a_firing_carries_the_state_that_crossed_and_the_promotion_that_followed(make_line: MakeLine) -> None:
    line = make_line(
        stages=with_stage("evaluation", model="visits.yaml", entry="reset"),
        qualifications={"MQL": 30, "SQL": 60},
        triggers=SQL_ALERT,
    )
    events = visits(*[(1, day(i)) for i in range(6)])  # 60 in discovery: SQL, then promoted (reset)
    outcome = line_run(line, stored((1, "discovery", day(0), 50.0, "warm", "MQL", "opened")), leads(1), events, day(10))

    firing = outcome.fired.firings.row(0, named=True)
    assert {k: firing[k] for k in ("stage", "score", "score_before", "band", "qualification", "promoted_to")} == {
        "stage": "discovery",
        "score": 60.0,
        "score_before": 50.0,
        "band": "hot",
        "qualification": "SQL",
        "promoted_to": "evaluation",
    }
    assert firing["breakdown"] == [{"rule": "visit", "points": 60.0}]
    assert outcome.scored.select("stage", "score", "band").row(0) == ("evaluation", 0.0, "cold")


def test_a_crm_move_back_holds_until_new_activity(make_line: MakeLine) -> None:
    """Fit alone (vp: 20) reaches discovery's promote_at: the same run must not undo sales' move back."""
    line = make_line(stages=with_stage("discovery", model="visits.yaml", promote_at=20))
    back = pl.DataFrame([(1, "discovery", day(5), "salesforce")], schema=STAGE_UPDATE_SCHEMA, orient="row")
    state = stored((1, "evaluation", day(1), 20.0, "cold", None, "threshold"))
    events = visits((1, day(0)))

    moved = line_run(line, state, leads(1, vp=(1,)), events, day(6), back)
    assert moved.transitions.select("from_stage", "to_stage", "reason").rows() == [
        ("evaluation", "discovery", "external")
    ]
    assert moved.journeys.select("stage", "entered_by").row(0) == ("discovery", "external")

    held = line_run(line, moved.journeys, leads(1, vp=(1,)), events, day(8))  # a later run, still no activity
    assert held.transitions.is_empty()

    later = pl.concat([events, visits((1, day(7)))])  # a visit after the move earns the promotion
    earned = line_run(line, moved.journeys, leads(1, vp=(1,)), later, day(8))
    assert earned.transitions.select("from_stage", "to_stage", "reason").rows() == [
        ("discovery", "evaluation", "threshold")
    ]


def test_after_crm_move_promote_promotes_on_the_score_alone(make_line: MakeLine) -> None:
    line = make_line(stages=with_stage("discovery", model="visits.yaml", promote_at=20, after_crm_move="promote"))
    back = pl.DataFrame([(1, "discovery", day(5), "salesforce")], schema=STAGE_UPDATE_SCHEMA, orient="row")
    state = stored((1, "evaluation", day(1), 20.0, "cold", None, "threshold"))

    outcome = line_run(line, state, leads(1, vp=(1,)), visits((1, day(0))), day(6), back)
    assert outcome.transitions.select("to_stage", "reason").rows() == [
        ("discovery", "external"),
        ("evaluation", "threshold"),
    ]


def test_one_lead_runs_the_same_plans_to_the_same_scores(make_line: MakeLine) -> None:
    """A ``fresh=true`` look-up runs ``score_and_advance`` under ``one_lead`` (no optimizer passes): the
    promotion, the rescoring and every frame come out as a run's."""
    line = make_line()  # discovery promote_at 30 → evaluation (reset, promote_at 50)
    events = visits(*[(1, day(i)) for i in range(4)])  # 40 in discovery
    state = stored((1, "discovery", day(0), 10.0, "cold", None, "opened"))
    updates = pl.DataFrame(schema=STAGE_UPDATE_SCHEMA)

    def advanced() -> list[pl.DataFrame]:
        _, outcome = score_and_advance(
            line, journeys=state, leads=leads(1), events=events, updates=updates, as_of=day(12), scale=Scale()
        )
        return [outcome.journeys, outcome.scored, outcome.transitions, outcome.steps.sort("step")]

    with one_lead():
        fresh = advanced()
    run = advanced()

    for mine, theirs in zip(fresh, run, strict=True):
        assert mine.equals(theirs)
    assert fresh[1].select("stage", "score", "band", "qualification", "breakdown").rows() == [
        ("evaluation", 0.0, "cold", None, [])
    ]
    assert fresh[2].select("from_stage", "to_stage", "score_before", "score_after").rows() == [
        ("discovery", "evaluation", 40.0, 0.0)
    ]
