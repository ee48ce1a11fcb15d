"""``score_line``: each journey under its stage's model, with band and qualification; terminal stages idle."""

from collections.abc import Callable

import polars as pl

from models.spec import Scale
from stages.portfolio import ProductLine
from stages.scoring import score_line
from tests.stages.helpers import day, journeys, leads, visits, with_stage

MakeLine = Callable[..., ProductLine]
SCALE = Scale(min=0, max=100)


def test_each_stage_scores_with_its_model_bands_and_qualifications(make_line: MakeLine) -> None:
    line = make_line()
    state = journeys(
        (1, "discovery", day(0), None),
        (2, "evaluation", day(5), day(5)),  # reset on entry: only visits from day 5 count
        (3, "customer", day(6), day(6)),  # terminal: not scored
    )
    events = visits(*[(key, day(i)) for key in (1, 2, 3) for i in range(8)])

    scored = score_line(line, journeys=state, leads=leads(1, 2, 3), events=events, as_of=day(10), scale=SCALE)

    assert scored.sort("journey_id").select("journey_id", "stage", "score", "band", "qualification").rows() == [
        (1, "discovery", 80.0, "hot", "SQL"),
        (2, "evaluation", 30.0, "warm", "MQL"),
    ]


def test_each_journey_gets_its_own_score_whatever_the_order_of_the_journeys(make_line: MakeLine) -> None:
    """Scorers answer a row per journey in the journeys' order, and ``score_line`` lays them beside the
    journeys (no join): keys out of order, a carried stage's blend included, still each its own score."""
    line = make_line(stages=with_stage("evaluation", model="visits.yaml", entry="carry", carry_fraction=0.5))
    state = journeys((3, "discovery", day(0), None), (1, "discovery", day(0), None), (2, "discovery", day(0), None))
    events = visits(*[(key, day(i)) for key, count in ((3, 1), (1, 5), (2, 2)) for i in range(count)])
    blended = journeys((5, "evaluation", day(4), None), (4, "evaluation", day(4), None))
    blended_events = visits(*[(key, day(i)) for key, count in ((5, 6), (4, 2)) for i in range(count)])

    scored = score_line(line, journeys=state, leads=leads(1, 2, 3), events=events, as_of=day(10), scale=SCALE)
    carried = score_line(line, journeys=blended, leads=leads(4, 5), events=blended_events, as_of=day(10), scale=SCALE)

    assert scored.select("journey_id", "lead_key", "score").rows() == [(3, 3, 10.0), (1, 1, 50.0), (2, 2, 20.0)]
    # 5: 2 visits after entry + 0.5 x 4 before; 4: 0.5 x 2 before
    assert carried.select("journey_id", "lead_key", "score").rows() == [(5, 5, 40.0), (4, 4, 10.0)]


def test_carry_fraction_blends_what_came_before_entry(make_line: MakeLine) -> None:
    line = make_line(stages=with_stage("evaluation", model="visits.yaml", entry="carry", carry_fraction=0.5))
    state = journeys((1, "evaluation", day(4), None))
    events = visits(*[(1, day(i)) for i in range(6)])  # 4 visits before entry, 2 after

    scored = score_line(line, journeys=state, leads=leads(1), events=events, as_of=day(10), scale=SCALE)

    assert scored["score"].to_list() == [40.0]  # 2 x 10 after entry + 0.5 x 4 x 10 before
    assert scored["breakdown"].list.eval(pl.element().struct.field("points")).list.sum().to_list() == [40.0]


def test_a_changed_portfolio_labels_with_its_own_bands_and_qualifications(make_line: MakeLine) -> None:
    """Band and qualification expressions are built once per loaded line: a portfolio loaded again with
    other thresholds labels the same score by its own."""
    state = journeys((1, "discovery", day(0), None))
    events = visits(*[(1, day(i)) for i in range(8)])  # 80 points

    def labels(line: ProductLine) -> list[tuple[float, str, str | None]]:
        scored = score_line(line, journeys=state, leads=leads(1), events=events, as_of=day(10), scale=SCALE)
        return scored.select("score", "band", "qualification").rows()

    before = make_line()
    assert labels(before) == [(80.0, "hot", "SQL")]
    after = make_line(
        bands={"cold": [0, 90], "warm": [90, 95], "hot": [95, 100]}, qualifications={"MQL": 70, "SQL": 85}
    )
    assert labels(after) == [(80.0, "cold", "MQL")]
    assert labels(before) == [(80.0, "hot", "SQL")]
