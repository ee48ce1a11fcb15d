"""The scorer: exact, hand-computed scores for every rule kind, plus invariants on random models."""

import json
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest

from models.breakdown import MANUAL, top_rules
from models.engine import score
from models.frames import RESULT_SCHEMA
from models.spec import BehaviourRule, FieldTest, FitRule, PointsModel, Scale

AS_OF = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "lead_key": pl.Int64(),
    "occurred_at": pl.Datetime("us", "UTC"),
    "type": pl.Utf8(),
    "machine": pl.Boolean(),
    "properties": pl.Utf8(),
}
SPECIAL = {"cap: fit", "cap: behaviour", "scale: maximum", "scale: minimum", MANUAL}


@dataclass(frozen=True)
class Ev:
    """One event, ``days_ago`` before ``AS_OF``."""

    lead: int
    days_ago: float
    type: str
    props: dict[str, Any] = field(default_factory=dict)
    machine: bool = False


@dataclass(frozen=True)
class Scored:
    score: float
    points: dict[str, float]
    order: list[str]


def events_frame(*items: Ev) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "lead_key": [e.lead for e in items],
            "occurred_at": [AS_OF - timedelta(days=e.days_ago) for e in items],
            "type": [e.type for e in items],
            "machine": [e.machine for e in items],
            "properties": [json.dumps(e.props) for e in items],
        },
        schema=EVENT_SCHEMA,
    )


def leads_frame(*keys: int, **columns: list[Any]) -> pl.DataFrame:
    return pl.DataFrame({"lead_key": list(keys), **columns})


def points_model(**spec: Any) -> PointsModel:
    return PointsModel.model_validate(spec)


def run(
    model: PointsModel,
    *,
    events: list[Ev] | pl.DataFrame | None = None,
    leads: pl.DataFrame | None = None,
    as_of: datetime = AS_OF,
    journeys: pl.DataFrame | None = None,
    scale: Scale | None = None,
) -> dict[int, Scored]:
    """Score and check the breakdown invariants on every row; results by lead."""
    frame = events if isinstance(events, pl.DataFrame) else events_frame(*(events or []))
    if leads is None:
        keys = sorted({1, *frame["lead_key"].to_list()})
        leads = leads_frame(*keys)
    result = score(model, leads=leads, events=frame, as_of=as_of, journeys=journeys, scale=scale)
    assert result.schema == pl.Schema(RESULT_SCHEMA)
    out: dict[int, Scored] = {}
    for row in result.iter_rows(named=True):
        entries = row["breakdown"]
        assert all(e["points"] != 0 for e in entries), entries
        assert all(round(e["points"], 2) == e["points"] for e in entries), entries
        assert round(sum(e["points"] for e in entries), 2) == row["score"], row
        order = [e["rule"] for e in entries]
        assert len(order) == len(set(order)), order
        out[row["lead_key"]] = Scored(row["score"], {e["rule"]: e["points"] for e in entries}, order)
    return out


def one(model: PointsModel, events: list[Ev], **kwargs: Any) -> Scored:
    """The result for lead 1."""
    return run(model, events=events, **kwargs)[1]


def rule_points(model: PointsModel, events: list[Ev], rule: str = "r", **kwargs: Any) -> float:
    return one(model, events, **kwargs).points.get(rule, 0.0)


# --- fit -----------------------------------------------------------------------------------------

FIT_CASES: list[tuple[dict[str, Any], str | None, bool]] = [
    ({"eq": "Director"}, " director ", True),
    ({"eq": "Director"}, "DIRECTOR", True),
    ({"eq": "Director"}, "manager", False),
    ({"eq": "Director"}, None, False),
    ({"eq": 50}, "50", True),
    ({"eq": 50}, "50.0", True),
    ({"eq": 50}, "fifty", False),
    ({"eq": True}, "true", True),
    ({"eq": True}, "Yes", True),
    ({"eq": True}, "false", False),
    ({"eq": False}, "no", True),
    ({"ne": "student"}, " Student", False),
    ({"ne": "student"}, "director", True),
    ({"ne": "student"}, None, True),
    ({"in": ["VP", "Director"]}, " vp ", True),
    ({"in": ["VP", "Director"]}, "manager", False),
    ({"in": ["VP", "Director"]}, None, False),
    ({"in": [50, 100]}, "50", True),
    ({"in": [50, 100]}, "100.0", True),
    ({"in": [50, 100]}, "75", False),
    ({"not_in": ["gmail.com", "yahoo.com"]}, "GMAIL.com", False),
    ({"not_in": ["gmail.com", "yahoo.com"]}, "acme.com", True),
    ({"not_in": ["gmail.com", "yahoo.com"]}, None, True),
    ({"not_in": [1, 2]}, "2.0", False),
    ({"lt": 100}, "99.5", True),
    ({"lt": 100}, "100", False),
    ({"lt": 100}, "abc", False),
    ({"lt": 100}, None, False),
    ({"le": 100}, "100", True),
    ({"le": 100}, "100.01", False),
    ({"gt": 100}, "100", False),
    ({"gt": 100}, " 101 ", True),
    ({"ge": 100}, "100", True),
    ({"ge": 100}, "99.99", False),
    ({"between": [10, 20]}, "10", True),
    ({"between": [10, 20]}, "15", True),
    ({"between": [10, 20]}, "20", True),
    ({"between": [10, 20]}, "9.99", False),
    ({"between": [10, 20]}, "20.01", False),
    ({"between": [10, 20]}, "ten", False),
    ({"between": [10, 20]}, None, False),
    ({"matches": r"^(vp|chief)\b"}, "vp sales", True),
    ({"matches": r"^(vp|chief)\b"}, "chief of staff", True),
    ({"matches": r"^(vp|chief)\b"}, "VP sales", False),
    ({"matches": r"^(vp|chief)\b"}, "svp sales", False),
    ({"matches": r"^(vp|chief)\b"}, None, False),
    ({"contains": "Sales"}, "Head of SALES", True),
    ({"contains": "Sales"}, "marketing", False),
    ({"contains": "Sales"}, None, False),
    ({"present": True}, "x", True),
    ({"present": True}, "", False),
    ({"present": True}, "   ", False),
    ({"present": True}, None, False),
    ({"present": False}, "", True),
    ({"present": False}, None, True),
    ({"present": False}, "x", False),
    ({"ge": 10, "lt": 20}, "15", True),
    ({"ge": 10, "lt": 20}, "20", False),
    ({"ne": "student", "present": True}, None, False),
]


@pytest.mark.parametrize(("test", "value", "expected"), FIT_CASES)
def test_fit_operator(test: dict[str, Any], value: str | None, expected: bool) -> None:
    model = points_model(fit=[{"name": "f", "when": {"v": test}, "points": 10}])
    leads = pl.DataFrame({"lead_key": [1], "v": [value]}, schema={"lead_key": pl.Int64, "v": pl.Utf8})
    assert run(model, leads=leads)[1].points == ({"f": 10.0} if expected else {})


@pytest.mark.parametrize(("test", "value", "expected"), [c for c in FIT_CASES if c[1] is not None])
def test_fit_operator_on_attributes_json(test: dict[str, Any], value: str, expected: bool) -> None:
    model = points_model(fit=[{"name": "f", "when": {"v": test}, "points": 10}])
    leads = pl.DataFrame({"lead_key": [1], "attributes": [json.dumps({"v": value})]})
    assert run(model, leads=leads)[1].points == ({"f": 10.0} if expected else {})


def test_fit_on_typed_columns() -> None:
    model = points_model(
        fit=[
            {"name": "big", "when": {"employees": {"ge": 500}}, "points": 10},
            {"name": "exact", "when": {"employees": {"in": [250, 750]}}, "points": 1},
            {"name": "customer", "when": {"is_customer": {"eq": True}}, "points": -20},
        ]
    )
    leads = pl.DataFrame({"lead_key": [1, 2, 3], "employees": [750, 250, None], "is_customer": [False, True, None]})
    result = run(model, leads=leads)
    assert result[1].points == {"big": 10.0, "exact": 1.0}
    assert result[2].points == {"exact": 1.0, "customer": -20.0, "scale: minimum": 19.0}
    assert result[3].points == {}


def test_fit_attributes_json_and_column_precedence() -> None:
    model = points_model(
        fit=[
            {"name": "software", "when": {"industry": {"eq": "software"}}, "points": 10},
            {"name": "mid size", "when": {"employees": {"between": [100, 1000]}}, "points": 5},
            {"name": "not student", "when": {"persona": {"ne": "student"}}, "points": 3},
            {"name": "vp", "when": {"title": {"eq": "VP"}}, "points": 7},
        ]
    )
    leads = pl.DataFrame(
        {
            "lead_key": [1, 2, 3],
            # the column wins over a same-named JSON key
            "title": ["VP", "Director", None],
            "attributes": [
                '{"industry": " Software ", "employees": 250, "title": "Director"}',
                '{"industry": "Retail", "employees": "5000", "persona": "Student", "title": "VP"}',
                None,
            ],
        }
    )
    result = run(model, leads=leads)
    assert result[1].points == {"software": 10.0, "mid size": 5.0, "not student": 3.0, "vp": 7.0}
    assert result[2].points == {}
    assert result[3].points == {"not student": 3.0}


def test_json_names_with_spaces_and_dotted_names() -> None:
    model = points_model(
        fit=[
            {"name": "job", "when": {"job title": {"eq": "cto"}}, "points": 10},
            {"name": "nested", "when": {"company.size": {"ge": 100}}, "points": 5},
        ],
        behaviour=[{"name": "utm", "event": "web", "where": {"utm-source": {"eq": "google"}}, "points": 1}],
    )
    leads = pl.DataFrame({"lead_key": [1], "attributes": ['{"job title": "CTO", "company": {"size": 250}}']})
    result = run(model, leads=leads, events=[Ev(1, 0, "web", {"utm-source": "Google"})])
    assert result[1].points == {"job": 10.0, "nested": 5.0, "utm": 1.0}


def test_fit_when_is_and_any_of_is_or() -> None:
    model = points_model(
        fit=[
            {"name": "both", "when": {"a": {"eq": "x"}, "b": {"gt": 5}}, "points": 10},
            {"name": "either", "any_of": [{"a": {"eq": "x"}}, {"b": {"gt": 5}}], "points": 1},
            {"name": "when and any", "when": {"c": {"present": True}}, "any_of": [{"a": {"eq": "x"}}], "points": 50},
        ]
    )
    leads = pl.DataFrame(
        {"lead_key": [1, 2, 3, 4], "a": ["x", "x", "y", "y"], "b": ["9", "1", "9", "1"], "c": ["c", None, "c", "c"]}
    )
    result = run(model, leads=leads)
    assert result[1].points == {"both": 10.0, "either": 1.0, "when and any": 50.0}
    assert result[2].points == {"either": 1.0}
    assert result[3].points == {"either": 1.0}
    assert result[4].points == {}


def test_fit_never_decays_and_lead_missing_from_leads_is_missing() -> None:
    model = points_model(
        fit=[
            {"name": "dir", "when": {"title": {"eq": "director"}}, "points": 10},
            {"name": "no title", "when": {"title": {"present": False}}, "points": 1},
        ],
        decay={"half_life_days": 1},
    )
    leads = pl.DataFrame({"lead_key": [1], "title": ["Director"]})
    journeys = pl.DataFrame({"lead_key": [1, 2], "score_from": [None, None]})
    result = run(model, leads=leads, journeys=journeys)
    assert result[1].points == {"dir": 10.0}
    assert result[2].points == {"no title": 1.0}


# --- behaviour: once / occurrence / windows / thresholds ------------------------------------------


def behaviour(decay: dict[str, Any] | None = None, **rule: Any) -> PointsModel:
    spec: dict[str, Any] = {"behaviour": [{"name": "r", "event": "web", "points": 20, **rule}]}
    if decay is not None:
        spec["decay"] = decay
    return points_model(**spec)


HALF_LIFE_60 = {"half_life_days": 60}


def test_once_gives_points_once_decayed_by_most_recent_match() -> None:
    model = behaviour(HALF_LIFE_60)
    assert rule_points(model, [Ev(1, 60, "web"), Ev(1, 120, "web"), Ev(1, 180, "web")]) == 10.0
    assert rule_points(model, [Ev(1, 120, "web")]) == 5.0
    assert rule_points(model, [Ev(1, 0, "web")]) == 20.0
    assert rule_points(model, [Ev(1, 0, "email_open")]) == 0.0


def test_occurrence_sums_decayed_points() -> None:
    model = behaviour(HALF_LIFE_60, per="occurrence")
    assert rule_points(model, [Ev(1, 0, "web"), Ev(1, 60, "web"), Ev(1, 120, "web")]) == 35.0
    # 20 × 0.5^(30/60) = 14.142… and 20 × 0.5^(90/60) = 7.071…: 21.213… → 21.21
    assert rule_points(model, [Ev(1, 30, "web"), Ev(1, 90, "web")]) == 21.21


def test_occurrence_max_and_min_cap_the_rule() -> None:
    capped = behaviour(per="occurrence", max=50)
    assert rule_points(capped, [Ev(1, d, "web") for d in range(4)]) == 50.0
    assert rule_points(capped, [Ev(1, d, "web") for d in range(2)]) == 40.0
    negative = points_model(
        behaviour=[{"name": "r", "event": "unsubscribe", "points": -10, "per": "occurrence", "min": -25}],
        scale={"min": -100, "max": 100},
    )
    assert rule_points(negative, [Ev(1, d, "unsubscribe") for d in range(3)]) == -25.0
    assert rule_points(negative, [Ev(1, 0, "unsubscribe")]) == -10.0


def test_event_type_list_and_where_on_properties() -> None:
    model = points_model(
        behaviour=[
            {"name": "pricing", "event": ["web", "app"], "where": {"url": {"contains": "/pricing"}}, "points": 10},
            {"name": "long", "event": "video", "where": {"duration_s": {"gt": 60}}, "points": 5, "per": "occurrence"},
            {"name": "not blog", "event": "web", "where": {"url": {"ne": "/blog"}}, "points": 1, "per": "occurrence"},
        ]
    )
    result = run(
        model,
        events=[
            Ev(1, 1, "app", {"url": "/Pricing/enterprise"}),
            Ev(1, 1, "web", {"url": "/blog"}),
            Ev(1, 1, "web", {}),
            Ev(1, 1, "video", {"duration_s": 61}),
            Ev(1, 1, "video", {"duration_s": 60}),
            Ev(1, 1, "video", {"duration_s": "long"}),
            Ev(2, 1, "web", {"url": "/docs"}),
            Ev(2, 1, "email_click", {"url": "/pricing"}),
        ],
    )
    assert result[1].points == {"pricing": 10.0, "long": 5.0, "not blog": 1.0}
    assert result[2].points == {"not blog": 1.0}


def test_within_days_boundaries() -> None:
    model = behaviour(within_days=30)
    assert rule_points(model, [Ev(1, 30, "web")]) == 20.0
    assert rule_points(model, [Ev(1, 30 + 1 / 86_400, "web")]) == 0.0
    assert rule_points(model, [Ev(1, 0, "web")]) == 20.0
    occurrence = behaviour(per="occurrence", within_days=7)
    assert rule_points(occurrence, [Ev(1, d, "web") for d in (0, 6, 7, 7.5, 30)]) == 60.0


def test_within_days_with_decay_uses_most_recent_in_window() -> None:
    model = behaviour(HALF_LIFE_60, within_days=90)
    assert rule_points(model, [Ev(1, 60, "web"), Ev(1, 200, "web")]) == 10.0
    assert rule_points(model, [Ev(1, 91, "web")]) == 0.0


def test_count_at_least() -> None:
    model = behaviour(HALF_LIFE_60, count_at_least=3)
    assert rule_points(model, [Ev(1, 60, "web"), Ev(1, 100, "web")]) == 0.0
    assert rule_points(model, [Ev(1, 60, "web"), Ev(1, 100, "web"), Ev(1, 120, "web")]) == 10.0
    assert rule_points(model, [Ev(1, 60, "web"), Ev(1, 100, "web"), Ev(1, 120, "web"), Ev(1, 0, "other")]) == 10.0
    windowed = behaviour(count_at_least=2, within_days=30)
    assert rule_points(windowed, [Ev(1, 10, "web"), Ev(1, 40, "web"), Ev(1, 50, "web")]) == 0.0
    assert rule_points(windowed, [Ev(1, 10, "web"), Ev(1, 30, "web")]) == 20.0


def test_total_at_least_on_duration() -> None:
    model = points_model(
        behaviour=[{"name": "r", "event": "video", "points": 20, "total_at_least": {"duration_s": 300}}],
        decay=HALF_LIFE_60,
    )
    short = [Ev(1, 120, "video", {"duration_s": 120}), Ev(1, 60, "video", {"duration_s": 150})]
    assert rule_points(model, short) == 0.0
    assert rule_points(model, [*short, Ev(1, 0, "web", {"duration_s": 1000})]) == 0.0
    assert rule_points(model, [*short, Ev(1, 200, "video", {"duration_s": "n/a"}), Ev(1, 200, "video")]) == 0.0
    assert rule_points(model, [*short, Ev(1, 180, "video", {"duration_s": 30})]) == 10.0
    assert rule_points(model, [*short, Ev(1, 0, "video", {"duration_s": "29.5"})]) == 0.0
    assert rule_points(model, [*short, Ev(1, 0, "video", {"duration_s": "30.0"})]) == 20.0


def test_machine_events_ignored_unless_included() -> None:
    spec = {"name": "r", "event": "email_open", "points": 5, "per": "occurrence"}
    events = [Ev(1, 1, "email_open", machine=True), Ev(1, 2, "email_open"), Ev(1, 3, "email_open", machine=True)]
    assert rule_points(points_model(behaviour=[spec]), events) == 5.0
    assert rule_points(points_model(behaviour=[{**spec, "include_machine": True}]), events) == 15.0
    assert rule_points(points_model(behaviour=[spec]), [Ev(1, 1, "email_open", machine=True)]) == 0.0


def test_null_machine_counts_as_human() -> None:
    model = points_model(behaviour=[{"name": "r", "event": "web", "points": 5}])
    frame = events_frame(Ev(1, 1, "web")).with_columns(pl.lit(None, pl.Boolean).alias("machine"))
    assert run(model, events=frame)[1].points == {"r": 5.0}


# --- decay ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "expected"), [(0, 20.0), (30, 14.14), (60, 10.0), (90, 7.07), (120, 5.0), (600, 0.02)]
)
def test_half_life(days: float, expected: float) -> None:
    assert rule_points(behaviour(HALF_LIFE_60), [Ev(1, days, "web")]) == expected


STEPS = {"steps": [{"after_days": 30, "keep": 0.5}, {"after_days": 90, "keep": 0.2}]}


@pytest.mark.parametrize(
    ("days", "expected"),
    [(0, 20.0), (29.99, 20.0), (30, 10.0), (89.99, 10.0), (90, 4.0), (1000, 4.0)],
)
def test_decay_steps(days: float, expected: float) -> None:
    assert rule_points(behaviour(STEPS), [Ev(1, days, "web")]) == expected


def test_decay_steps_per_occurrence() -> None:
    model = behaviour(STEPS, per="occurrence")
    assert rule_points(model, [Ev(1, 1, "web"), Ev(1, 45, "web"), Ev(1, 95, "web")]) == 34.0


def test_rule_level_decay_false() -> None:
    model = points_model(
        behaviour=[
            {"name": "r", "event": "web", "points": 20, "decay": False},
            {"name": "s", "event": "web", "points": 20},
        ],
        decay=HALF_LIFE_60,
    )
    assert one(model, [Ev(1, 60, "web")]).points == {"r": 20.0, "s": 10.0}


def test_no_model_decay_means_no_decay() -> None:
    assert rule_points(behaviour(), [Ev(1, 500, "web")]) == 20.0


# --- combos --------------------------------------------------------------------------------------


def combo_model(*, within_days: float = 7, decay: dict[str, Any] | None = None, parts: int = 2) -> PointsModel:
    rules = [
        # the parts' own within_days does not limit the combo
        {"name": "pricing", "event": "web", "where": {"url": {"eq": "/pricing"}}, "points": 1, "within_days": 1},
        {"name": "demo", "event": "form", "where": {"form": {"eq": "demo"}}, "points": 2, "within_days": 1},
        {"name": "webinar", "event": "webinar", "points": 4, "within_days": 1},
    ]
    return points_model(
        behaviour=rules,
        combos=[
            {"name": "hot", "all_of": [r["name"] for r in rules[:parts]], "within_days": within_days, "points": 40}
        ],
        decay=HALF_LIFE_60 if decay is None else decay,
    )


PRICING, DEMO = {"url": "/pricing"}, {"form": "demo"}


def combo_points(model: PointsModel, events: list[Ev]) -> float:
    return rule_points(model, events, rule="hot")


def test_combo_holds_within_window_decayed_by_latest_anchor() -> None:
    model = combo_model()
    assert combo_points(model, [Ev(1, 64, "web", PRICING), Ev(1, 60, "form", DEMO)]) == 20.0
    assert combo_points(model, [Ev(1, 67, "web", PRICING), Ev(1, 60, "form", DEMO)]) == 20.0


def test_combo_anchor_order_does_not_matter() -> None:
    model = combo_model()
    assert combo_points(model, [Ev(1, 64, "form", DEMO), Ev(1, 60, "web", PRICING)]) == 20.0


def test_combo_fails_when_a_part_is_outside_the_window() -> None:
    model = combo_model()
    assert combo_points(model, [Ev(1, 67.01, "web", PRICING), Ev(1, 60, "form", DEMO)]) == 0.0
    assert combo_points(model, [Ev(1, 60, "form", DEMO), Ev(1, 60, "web", {"url": "/blog"})]) == 0.0
    assert combo_points(model, [Ev(1, 60, "form", DEMO)]) == 0.0
    # a part matched by another lead does not help
    for events in (
        [Ev(1, 60, "form", DEMO), Ev(2, 60, "web", PRICING)],
        [Ev(1, 60, "web", PRICING), Ev(2, 60, "form", DEMO)],
    ):
        result = run(model, events=events)
        assert "hot" not in result[1].points
        assert "hot" not in result[2].points


def test_combo_parts_at_the_same_instant() -> None:
    model = combo_model()
    for events in (
        [Ev(1, 60, "web", PRICING), Ev(1, 60, "form", DEMO)],
        [Ev(1, 60, "form", DEMO), Ev(1, 60, "web", PRICING)],
    ):
        assert combo_points(model, events) == 20.0
    # one event matching both parts completes the combo by itself
    both = points_model(
        behaviour=[{"name": "a", "event": "x", "points": 1}, {"name": "b", "event": ["x", "y"], "points": 1}],
        combos=[{"name": "hot", "all_of": ["a", "b"], "within_days": 1, "points": 40}],
    )
    assert combo_points(both, [Ev(1, 5, "x")]) == 40.0


def test_combo_decays_by_latest_anchor_where_it_holds() -> None:
    model = combo_model()
    events = [Ev(1, 125, "web", PRICING), Ev(1, 120, "form", DEMO), Ev(1, 0, "web", PRICING)]
    assert combo_points(model, events) == 10.0
    events = [*events, Ev(1, 3, "form", DEMO)]
    assert combo_points(model, events) == 40.0


def test_combo_three_parts() -> None:
    model = combo_model(parts=3)
    assert combo_points(model, [Ev(1, 66, "web", PRICING), Ev(1, 62, "form", DEMO), Ev(1, 60, "webinar")]) == 20.0
    late = [Ev(1, 70, "web", PRICING), Ev(1, 62, "form", DEMO), Ev(1, 60, "webinar")]
    assert combo_points(model, late) == 0.0
    assert combo_points(model, [*late, Ev(1, 0, "web", PRICING)]) == 0.0
    # a fresh pricing visit completes the set at 59 days: 40 × 0.5^(59/60) = 20.23
    assert combo_points(model, [*late, Ev(1, 59, "web", PRICING)]) == 20.23


def test_combo_ignores_machine_events_of_its_parts() -> None:
    model = combo_model()
    events = [Ev(1, 2, "web", PRICING, machine=True), Ev(1, 1, "form", DEMO)]
    assert combo_points(model, events) == 0.0


def test_combo_without_model_decay() -> None:
    model = points_model(
        behaviour=[{"name": "a", "event": "x", "points": 1}, {"name": "b", "event": "y", "points": 1}],
        combos=[{"name": "hot", "all_of": ["a", "b"], "within_days": 2, "points": 40}],
    )
    assert one(model, [Ev(1, 300, "x"), Ev(1, 299, "y")]).points == {"a": 1.0, "b": 1.0, "hot": 40.0}


def test_combo_decay_false() -> None:
    model = points_model(
        behaviour=[{"name": "a", "event": "x", "points": 1}, {"name": "b", "event": "y", "points": 1}],
        combos=[{"name": "hot", "all_of": ["a", "b"], "within_days": 2, "points": 40, "decay": False}],
        decay=HALF_LIFE_60,
    )
    assert one(model, [Ev(1, 120, "x"), Ev(1, 120, "y")]).points == {"a": 0.25, "b": 0.25, "hot": 40.0}


# --- caps, clamping, manual adjustments ----------------------------------------------------------


def capped_model(**extra: Any) -> PointsModel:
    return points_model(
        fit=[
            {"name": "title", "when": {"title": {"eq": "vp"}}, "points": 15},
            {"name": "size", "when": {"employees": {"ge": 100}}, "points": 10},
        ],
        behaviour=[
            {"name": "pricing", "event": "web", "points": 20},
            {"name": "demo", "event": "form", "points": 10},
        ],
        combos=[{"name": "hot", "all_of": ["pricing", "demo"], "within_days": 7, "points": 15}],
        **extra,
    )


CAP_LEADS = pl.DataFrame({"lead_key": [1], "title": ["VP"], "employees": [500]})


def test_group_caps() -> None:
    model = capped_model(caps={"fit": 20, "behaviour": 25})
    result = one(model, [Ev(1, 1, "web"), Ev(1, 1, "form")], leads=CAP_LEADS)
    assert result.points == {
        "title": 15.0,
        "size": 10.0,
        "pricing": 20.0,
        "demo": 10.0,
        "hot": 15.0,
        "cap: fit": -5.0,
        "cap: behaviour": -20.0,
    }
    assert result.score == 45.0
    assert result.order == ["title", "size", "pricing", "demo", "hot", "cap: fit", "cap: behaviour"]


def test_caps_not_reached_add_no_entry() -> None:
    model = capped_model(caps={"fit": 25, "behaviour": 100})
    result = one(model, [Ev(1, 1, "web")], leads=CAP_LEADS)
    assert result.points == {"title": 15.0, "size": 10.0, "pricing": 20.0}
    assert result.score == 45.0


def test_clamp_to_scale_maximum_and_minimum() -> None:
    model = points_model(
        fit=[{"name": "title", "when": {"title": {"eq": "vp"}}, "points": 75}],
        behaviour=[
            {"name": "pricing", "event": "web", "points": 60},
            {"name": "student", "event": "bounce", "points": -100},
        ],
    )
    high = one(model, [Ev(1, 1, "web")], leads=CAP_LEADS)
    assert high.points == {"title": 75.0, "pricing": 60.0, "scale: maximum": -35.0}
    assert high.score == 100.0
    low = run(model, events=[Ev(2, 1, "bounce")], leads=pl.DataFrame({"lead_key": [2], "title": ["x"]}))[2]
    assert low.points == {"student": -100.0, "scale: minimum": 100.0}
    assert low.score == 0.0
    edge = run(model, events=[Ev(1, 1, "bounce")], leads=CAP_LEADS)[1]
    assert edge.points == {"title": 75.0, "student": -100.0, "scale: minimum": 25.0}


def test_scale_argument_overrides_model_scale() -> None:
    model = points_model(behaviour=[{"name": "r", "event": "web", "points": 70}], scale={"min": 0, "max": 100})
    assert one(model, [Ev(1, 1, "web")], scale=Scale(min=-10, max=50)).points == {"r": 70.0, "scale: maximum": -20.0}
    assert one(model, [Ev(1, 1, "web")]).score == 70.0


def test_manual_adjustments_summed_not_decayed_not_capped() -> None:
    model = points_model(
        behaviour=[{"name": "r", "event": "web", "points": 20}],
        caps={"behaviour": 10},
        decay=HALF_LIFE_60,
    )
    events = [
        Ev(1, 0, "web"),
        Ev(1, 200, "manual_adjustment", {"points": 15}),
        Ev(1, 1, "manual_adjustment", {"points": "-2.5"}),
        Ev(1, 1, "manual_adjustment", {"reason": "no points"}),
        Ev(2, 1, "manual_adjustment", {"points": -30}),
    ]
    result = run(model, events=events)
    assert result[1].points == {"r": 20.0, MANUAL: 12.5, "cap: behaviour": -10.0}
    assert result[1].score == 22.5
    assert result[2].points == {MANUAL: -30.0, "scale: minimum": 30.0}
    assert result[2].score == 0.0


def test_manual_adjustments_disabled() -> None:
    model = points_model(behaviour=[{"name": "r", "event": "web", "points": 20}], manual_adjustments=False)
    assert one(model, [Ev(1, 0, "web"), Ev(1, 0, "manual_adjustment", {"points": 15})]).points == {"r": 20.0}


def test_entries_are_rounded_and_sum_to_score() -> None:
    model = points_model(
        behaviour=[{"name": f"r{i}", "event": "web", "points": 1 / 3, "per": "occurrence"} for i in range(3)],
    )
    result = one(model, [Ev(1, 0, "web")])
    assert result.points == {"r0": 0.33, "r1": 0.33, "r2": 0.33}
    assert result.score == 0.99


# --- replay, reset, empty inputs -----------------------------------------------------------------


def test_as_of_replay_ignores_later_events_and_ages_from_as_of() -> None:
    model = behaviour(HALF_LIFE_60, per="occurrence")
    events = [Ev(1, 0, "web"), Ev(1, 120, "web")]
    assert rule_points(model, events) == 25.0
    assert rule_points(model, events, as_of=AS_OF - timedelta(days=60)) == 10.0
    assert rule_points(model, events, as_of=AS_OF - timedelta(days=120)) == 20.0
    assert rule_points(model, events, as_of=AS_OF - timedelta(days=120, seconds=1)) == 0.0


def test_as_of_replay_of_windows_combos_and_manual() -> None:
    model = points_model(
        behaviour=[
            {"name": "a", "event": "x", "points": 10, "within_days": 10},
            {"name": "b", "event": "y", "points": 10},
        ],
        combos=[{"name": "ab", "all_of": ["a", "b"], "within_days": 5, "points": 40}],
    )
    events = [Ev(1, 100, "x"), Ev(1, 98, "y"), Ev(1, 0, "x"), Ev(1, 50, "manual_adjustment", {"points": 7})]
    assert one(model, events).points == {"a": 10.0, "b": 10.0, "ab": 40.0, MANUAL: 7.0}
    earlier = one(model, events, as_of=AS_OF - timedelta(days=92))
    assert earlier.points == {"a": 10.0, "b": 10.0, "ab": 40.0}
    assert one(model, events, as_of=AS_OF - timedelta(days=99)).points == {"a": 10.0}


def test_score_from_reset_ignores_earlier_events() -> None:
    model = points_model(
        behaviour=[{"name": "r", "event": "web", "points": 20, "per": "occurrence"}],
        combos=[],
    )
    events = [Ev(1, 10, "web"), Ev(1, 30, "web"), Ev(1, 40, "web"), Ev(1, 50, "manual_adjustment", {"points": 5})]
    events += [Ev(2, 40, "web"), Ev(2, 50, "manual_adjustment", {"points": 5})]
    journeys = pl.DataFrame(
        {"lead_key": [1, 2], "score_from": [AS_OF - timedelta(days=30), None]},
        schema={"lead_key": pl.Int64, "score_from": pl.Datetime("us", "UTC")},
    )
    result = run(model, events=events, journeys=journeys)
    assert result[1].points == {"r": 40.0}
    assert result[2].points == {"r": 20.0, MANUAL: 5.0}


def test_score_from_after_every_event_and_at_one() -> None:
    """A journey that entered a ``reset`` stage after its lead's last event (a promotion's rescoring)
    counts none of them, and the model's columns are all there; an event at ``score_from`` counts."""
    model = points_model(behaviour=[{"name": "r", "event": "web", "points": 20, "per": "occurrence"}])
    events = [Ev(1, 10, "web"), Ev(1, 12, "manual_adjustment", {"points": 5})]
    start = AS_OF - timedelta(days=10)
    schema = {"lead_key": pl.Int64, "score_from": pl.Datetime("us", "UTC")}
    at_event = pl.DataFrame({"lead_key": [1], "score_from": [start]}, schema=schema)
    assert run(model, events=events, journeys=at_event)[1].points == {"r": 20.0}
    after = pl.DataFrame({"lead_key": [1], "score_from": [start + timedelta(microseconds=1)]}, schema=schema)
    assert {k: (v.score, v.points) for k, v in run(model, events=events, journeys=after).items()} == {1: (0.0, {})}


def test_journeys_select_the_leads_scored() -> None:
    model = points_model(behaviour=[{"name": "r", "event": "web", "points": 20}])
    journeys = pl.DataFrame({"lead_key": [2], "score_from": [None]})
    result = run(model, events=[Ev(1, 1, "web"), Ev(2, 1, "web")], journeys=journeys)
    assert list(result) == [2]


def test_empty_inputs() -> None:
    model = capped_model(caps={"fit": 20})
    no_events = events_frame()
    leads = pl.DataFrame({"lead_key": [1, 2], "title": ["vp", None], "employees": [1000, None]})
    result = run(model, events=no_events, leads=leads)
    assert result[1].points == {"title": 15.0, "size": 10.0, "cap: fit": -5.0}
    assert result[2].points == {}
    assert result[2].score == 0.0

    lead_without_events = run(model, events=[Ev(1, 1, "web")], leads=leads)
    assert lead_without_events[2].points == {}

    empty = score(
        model, leads=leads, events=no_events, as_of=AS_OF, journeys=pl.DataFrame({"lead_key": [], "score_from": []})
    )
    assert empty.is_empty()
    assert empty.schema == pl.Schema(RESULT_SCHEMA)

    nothing = score(model, leads=leads.head(0), events=no_events, as_of=AS_OF)
    assert nothing.is_empty()
    assert nothing.schema == pl.Schema(RESULT_SCHEMA)

    bare = run(points_model(), events=[Ev(1, 1, "web")], leads=leads)
    assert {k: (v.score, v.points) for k, v in bare.items()} == {1: (0.0, {}), 2: (0.0, {})}


def test_large_partitions_parse_repeated_and_distinct_properties_alike() -> None:
    """Past 10,000 rows of a type, repeated JSON texts are parsed once; the result must not change."""
    n = 12_000
    urls = ['{"url": "/pricing"}', '{"url": "/blog"}', '{"url": " /Pricing "}', "not json", None]
    web = pl.DataFrame(
        {
            "lead_key": [i % 100 + 1 for i in range(n)],
            "occurred_at": [AS_OF] * n,
            "type": ["web"] * n,
            "machine": [False] * n,
            "properties": [urls[i % len(urls)] for i in range(n)],
        },
        schema=EVENT_SCHEMA,
    )
    video = web.with_columns(
        pl.lit("video").alias("type"),
        pl.format('{{"duration_s": {}, "id": "v{}"}}', pl.int_range(n), pl.int_range(n)).alias("properties"),
    )
    model = points_model(
        behaviour=[
            {"name": "pricing", "event": "web", "where": {"url": {"eq": "/pricing"}}, "points": 1, "per": "occurrence"},
            {"name": "watched", "event": "video", "points": 5, "total_at_least": {"duration_s": 700_000}},
        ],
        scale={"min": 0, "max": 1000},
    )
    result = run(model, events=pl.concat([web, video]), leads=leads_frame(*range(1, 101)))
    for lead in range(1, 101):
        rows = [i for i in range(n) if i % 100 + 1 == lead]
        pricing = sum(1 for i in rows if i % len(urls) in (0, 2))
        expected: dict[str, float] = {"pricing": float(pricing)} if pricing else {}
        if sum(rows) >= 700_000:
            expected["watched"] = 5.0
        assert result[lead].points == expected, lead


def test_event_frame_variants() -> None:
    """Naive or other-zone times, narrow lead keys, a property held as an event column, no JSON column."""
    model = points_model(
        behaviour=[
            {"name": "r", "event": "web", "points": 20, "per": "occurrence"},
            {"name": "campaign", "event": "web", "where": {"campaign": {"eq": "spring"}}, "points": 5},
        ],
        decay=HALF_LIFE_60,
    )
    frame = events_frame(Ev(1, 60, "web"), Ev(1, 0.5, "web")).with_columns(
        pl.Series("campaign", ["Spring", None]), pl.col("lead_key").cast(pl.Int32)
    )
    naive = frame.with_columns(pl.col("occurred_at").dt.replace_time_zone(None))
    paris = frame.with_columns(pl.col("occurred_at").dt.convert_time_zone("Europe/Paris").dt.cast_time_unit("ns"))
    for variant in (frame, naive, paris, frame.drop("properties")):
        assert run(model, events=variant)[1].points == {"r": 29.88, "campaign": 2.5}


def test_one_model_scores_inputs_of_every_shape() -> None:
    """A model's expressions are compiled once per input shape: the same model object reads an attribute
    from a column, from the JSON, or finds it missing, and a property from a number column (which wins
    over the JSON) or from the JSON, in any order."""
    model = points_model(
        fit=[
            {"name": "vp", "when": {"title": {"eq": "VP"}}, "points": 10},
            {"name": "no title", "when": {"title": {"present": False}}, "points": -5},
        ],
        behaviour=[{"name": "long", "event": "web", "points": 7, "total_at_least": {"duration_s": 100}}],
        scale={"min": -100, "max": 100},
    )
    json_events = events_frame(Ev(1, 1, "web", {"duration_s": 60}), Ev(1, 2, "web", {"duration_s": 50}))
    column_events = json_events.with_columns(pl.Series("duration_s", [10, 20]))
    column = pl.DataFrame({"lead_key": [1], "title": ["vp"]})
    as_json = pl.DataFrame({"lead_key": [1], "attributes": ['{"title": " VP "}']})
    missing = pl.DataFrame({"lead_key": [1]})
    for leads, fit in (
        (column, {"vp": 10.0}),
        (as_json, {"vp": 10.0}),
        (missing, {"no title": -5.0}),
        (column, {"vp": 10.0}),
    ):
        assert run(model, events=json_events, leads=leads)[1].points == {**fit, "long": 7.0}
        assert run(model, events=column_events, leads=leads)[1].points == fit
        assert run(model, events=json_events.drop("properties"), leads=leads)[1].points == fit
        assert run(model, events=json_events, leads=leads)[1].points == {**fit, "long": 7.0}


def test_result_keeps_journey_order() -> None:
    model = points_model(fit=[{"name": "f", "when": {"v": {"present": True}}, "points": 1}])
    leads = pl.DataFrame({"lead_key": [1, 2, 3], "v": ["a", None, "c"]})
    journeys = pl.DataFrame({"lead_key": [3, 1, 2], "score_from": [None, None, None]})
    result = score(model, leads=leads, events=events_frame(), as_of=AS_OF, journeys=journeys)
    assert result["lead_key"].to_list() == [3, 1, 2]
    assert result["score"].to_list() == [1.0, 1.0, 0.0]


# --- top_rules -----------------------------------------------------------------------------------


def test_top_rules_format() -> None:
    frame = pl.DataFrame(
        {
            "breakdown": [
                [
                    {"rule": "persona title", "points": 15.0},
                    {"rule": "student", "points": -100.0},
                    {"rule": "pricing", "points": 12.5},
                    {"rule": "webinar", "points": 3.0},
                    {"rule": "cap: behaviour", "points": -500.0},
                    {"rule": "scale: minimum", "points": 77.5},
                ],
                [{"rule": "dip", "points": -0.25}],
                [],
            ]
        },
        schema={"breakdown": RESULT_SCHEMA["breakdown"]},
    )
    shown = frame.select(top_rules(pl.col("breakdown")).alias("top"))["top"].to_list()
    assert shown == ["student:-100; persona title:+15; pricing:+12.5", "dip:-0.25", ""]
    two = frame.select(top_rules(pl.col("breakdown"), n=1).alias("top"))["top"].to_list()
    assert two == ["student:-100", "dip:-0.25", ""]


def test_top_rules_ties_keep_breakdown_order() -> None:
    entries = [{"rule": name, "points": points} for name, points in [("a", 5.0), ("b", -5.0), ("c", 5.0), ("d", 5.0)]]
    frame = pl.DataFrame({"breakdown": [entries]}, schema={"breakdown": RESULT_SCHEMA["breakdown"]})
    assert frame.select(top_rules(pl.col("breakdown")))["breakdown"].item() == "a:+5; b:-5; c:+5"


def test_top_rules_on_a_score() -> None:
    model = capped_model(caps={"fit": 20})
    result = score(model, leads=CAP_LEADS, events=events_frame(Ev(1, 1, "web")), as_of=AS_OF)
    assert result.select(top_rules(pl.col("breakdown")))["breakdown"].to_list() == ["pricing:+20; title:+15; size:+10"]


# --- randomized: invariants and a plain-Python reference ------------------------------------------

ATTRIBUTES = {"title": ["vp", "director", "student", " VP ", ""], "employees": ["5", "50", "500", "abc"]}
TYPES = ["web", "form", "email_open", "video"]


def _random_test(rng: random.Random, values: list[str]) -> dict[str, Any]:
    kind = rng.choice(["eq", "ne", "in", "gt", "le", "present"])
    if kind in ("eq", "ne"):
        return {kind: rng.choice(values).strip() or "x"}
    if kind == "in":
        return {"in": rng.sample(values, 2)}
    if kind == "present":
        return {"present": rng.random() < 0.5}
    return {kind: rng.choice([10, 50, 100])}


def random_model(rng: random.Random) -> PointsModel:
    fit = [
        {"name": f"fit {i}", "when": {(a := rng.choice(list(ATTRIBUTES))): _random_test(rng, ATTRIBUTES[a])}}
        | {"points": rng.choice([-30, -5, 5, 12.5, 20, 1 / 3])}
        for i in range(rng.randint(0, 4))
    ]
    behaviour: list[dict[str, Any]] = []
    for i in range(rng.randint(1, 5)):
        rule: dict[str, Any] = {"name": f"beh {i}", "event": rng.choice(TYPES), "points": rng.choice([-15, 3, 7.7, 25])}
        if rng.random() < 0.4:
            rule["where"] = {"n": _random_test(rng, ["1", "30", "200", "x"])}
        if rng.random() < 0.3:
            rule["within_days"] = rng.choice([7, 30, 90])
        if rng.random() < 0.2:
            rule["include_machine"] = True
        if rng.random() < 0.2:
            rule["decay"] = False
        shape = rng.random()
        if shape < 0.35:
            rule["per"] = "occurrence"
            rule["max" if rule["points"] > 0 else "min"] = rule["points"] * rng.choice([2, 3])
        elif shape < 0.5:
            rule["count_at_least"] = rng.choice([2, 3])
        elif shape < 0.6:
            rule["total_at_least"] = {"n": rng.choice([50, 300])}
        behaviour.append(rule)
    combos = []
    if len(behaviour) >= 2 and rng.random() < 0.7:
        parts = rng.sample([r["name"] for r in behaviour], rng.choice([2, 2, 3]) if len(behaviour) > 2 else 2)
        combos.append({"name": "combo", "all_of": parts, "within_days": rng.choice([3, 14]), "points": 30})
    decay = rng.choice(
        [
            None,
            {"half_life_days": rng.choice([20, 60])},
            {"steps": [{"after_days": 14, "keep": 0.5}, {"after_days": 60, "keep": 0.1}]},
        ]
    )
    caps = {"fit": rng.choice([None, 25]), "behaviour": rng.choice([None, 40])}
    return points_model(
        fit=fit,
        behaviour=behaviour,
        combos=combos,
        decay=decay,
        caps=caps,
        scale=rng.choice([{"min": 0, "max": 100}, {"min": -50, "max": 60}]),
        manual_adjustments=rng.random() < 0.8,
    )


def random_data(rng: random.Random, leads: int) -> tuple[pl.DataFrame, list[Ev]]:
    rows = {name: [rng.choice([*values, None]) for _ in range(leads)] for name, values in ATTRIBUTES.items()}
    frame = pl.DataFrame({"lead_key": list(range(1, leads + 1)), **rows}, schema_overrides={"title": pl.Utf8})
    events = []
    for _ in range(rng.randint(0, leads * 8)):
        kind = rng.choice([*TYPES, "manual_adjustment"])
        props: dict[str, Any] = {}
        if kind == "manual_adjustment":
            props["points"] = rng.choice([-20, 5, 12.25])
        elif rng.random() < 0.8:
            props["n"] = rng.choice([1, 30, 200, "x"])
        events.append(
            Ev(
                rng.randint(1, leads),
                rng.choice([0, 1, 2.5, 7, 13, 14, 40, 90, 91, 200]),
                kind,
                props,
                rng.random() < 0.15,
            )
        )
    return frame, events


def _test_holds(test: FieldTest, raw: str | None) -> bool:
    value = None if raw is None else str(raw)
    text = None if value is None else value.strip().lower()
    try:
        number = float(value) if value is not None else None
    except ValueError:
        number = None
    known = value is not None and value.strip() != ""
    checks = []
    for expected, negate in ((test.eq, False), (test.ne, True)):
        if expected is not None:
            assert isinstance(expected, str)
            checks.append((text == expected.strip().lower()) != negate)
    if test.in_ is not None:
        checks.append(text in [str(v).strip().lower() for v in test.in_])
    if test.gt is not None:
        checks.append(number is not None and number > test.gt)
    if test.le is not None:
        checks.append(number is not None and number <= test.le)
    if test.present is not None:
        checks.append(known == test.present)
    return all(checks)


def _decay_factor(model: PointsModel, age: float, enabled: bool) -> float:
    if model.decay is None or not enabled:
        return 1.0
    if model.decay.half_life_days is not None:
        return 0.5 ** (age / model.decay.half_life_days)
    keep = [s.keep for s in model.decay.steps or [] if s.after_days <= age]
    return keep[-1] if keep else 1.0


def _rule_matches(rule: BehaviourRule, event: Ev) -> bool:
    if event.type not in rule.event_types or (event.machine and not rule.include_machine):
        return False
    return all(_test_holds(t, None if k not in event.props else str(event.props[k])) for k, t in rule.where.items())


def reference(model: PointsModel, lead: dict[str, Any], events: list[Ev]) -> tuple[float, dict[str, float]]:
    """The score of one lead computed by the definitions, row by row."""
    entries: dict[str, float] = {}

    def fits(rule: FitRule) -> bool:
        def holds(condition: dict[str, FieldTest]) -> bool:
            return all(_test_holds(t, lead.get(k)) for k, t in condition.items())

        return holds(rule.when) and (not rule.any_of or any(holds(c) for c in rule.any_of))

    for rule in model.fit:
        entries[rule.name] = round(rule.points if fits(rule) else 0.0, 2)
    for rule in model.behaviour:
        hits = [
            e for e in events if _rule_matches(rule, e) and (rule.within_days is None or e.days_ago <= rule.within_days)
        ]
        if rule.per == "occurrence":
            total = sum(rule.points * _decay_factor(model, e.days_ago, rule.decay) for e in hits)
            total = min(total, rule.max) if rule.max is not None else total
            total = max(total, rule.min) if rule.min is not None else total
        else:
            if rule.total_at_least is not None:
                ((prop, threshold),) = rule.total_at_least.items()
                amounts = [_number(e.props.get(prop)) for e in hits]
                reached = sum(a for a in amounts if a is not None) >= threshold
            else:
                reached = len(hits) >= (rule.count_at_least or 1)
            youngest = min((e.days_ago for e in hits), default=None)
            ok = reached and youngest is not None
            total = rule.points * _decay_factor(model, youngest, rule.decay) if ok and youngest is not None else 0.0
        entries[rule.name] = round(total, 2)
    by_name = {r.name: r for r in model.behaviour}
    for combo in model.combos:
        matched = [[e.days_ago for e in events if _rule_matches(by_name[n], e)] for n in combo.all_of]
        holding = [
            anchor
            for anchor in {a for ages in matched for a in ages}
            if all(any(anchor <= a <= anchor + combo.within_days for a in ages) for ages in matched)
        ]
        entries[combo.name] = round(
            combo.points * _decay_factor(model, min(holding), combo.decay) if holding else 0.0, 2
        )
    fit_sum = sum(entries[r.name] for r in model.fit)
    behaviour_sum = sum(entries[r.name] for r in [*model.behaviour, *model.combos])
    if model.caps.fit is not None and fit_sum > model.caps.fit:
        entries["cap: fit"] = round(model.caps.fit - fit_sum, 2)
    if model.caps.behaviour is not None and behaviour_sum > model.caps.behaviour:
        entries["cap: behaviour"] = round(model.caps.behaviour - behaviour_sum, 2)
    if model.manual_adjustments:
        manual = [_number(e.props.get("points")) for e in events if e.type == "manual_adjustment"]
        entries[MANUAL] = round(sum(m for m in manual if m is not None), 2)
    total = round(sum(entries.values()), 2)
    scale = model.scale or Scale()
    if total > scale.max:
        entries["scale: maximum"] = round(scale.max - total, 2)
    if total < scale.min:
        entries["scale: minimum"] = round(scale.min - total, 2)
    return round(sum(entries.values()), 2), {k: v for k, v in entries.items() if v != 0}


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def test_random_models_match_reference_and_breakdown_sums_to_score() -> None:
    rng = random.Random(20240601)
    for _ in range(40):
        model = random_model(rng)
        leads, events = random_data(rng, leads=12)
        result = run(model, events=events, leads=leads)
        assert set(result) == set(leads["lead_key"].to_list())
        scale = model.scale or Scale()
        for lead in leads.iter_rows(named=True):
            got = result[lead["lead_key"]]
            assert scale.min <= got.score <= scale.max
            assert set(got.points) <= {r.name for r in [*model.fit, *model.behaviour, *model.combos]} | SPECIAL
            expected_score, expected_points = reference(model, lead, [e for e in events if e.lead == lead["lead_key"]])
            assert set(got.points) == set(expected_points), (model, lead)
            for name, value in got.points.items():
                assert math.isclose(value, expected_points[name], abs_tol=0.0101), (name, model, lead)
            assert math.isclose(got.score, expected_score, abs_tol=0.05), (model, lead)


def test_non_finite_values_in_every_numeric_input_never_make_a_non_finite_score() -> None:
    """A store written before ingestion refused them may still hold inf and nan: they count as no number."""
    model = points_model(
        fit=[{"name": "big", "when": {"company_size": {"ge": 100}}, "points": 10}],
        behaviour=[
            {"name": "long", "event": "web", "where": {"duration_s": {"gt": 60}}, "points": 5, "per": "once"},
            {"name": "watched", "event": "web", "total_at_least": {"duration_s": 120}, "points": 7},
        ],
    )
    hostile = ["inf", "-inf", "nan", "1e400", float("inf"), float("nan")]
    events = [Ev(1, 1, "web"), Ev(2, 1, "web", {"duration_s": 90})]
    events += [Ev(1, 1, "web", {"duration_s": value}) for value in hostile]
    events += [Ev(1, 1, "manual_adjustment", {"points": value}) for value in hostile]
    events += [Ev(2, 1, "manual_adjustment", {"points": 3})]
    leads = leads_frame(1, 2, company_size=["inf", "150"])
    result = run(model, events=pl.DataFrame(events_frame(*events)), leads=leads)
    assert result[1].score == 0.0 and result[1].points == {}
    assert result[2].score == 18.0 and result[2].points == {"big": 10.0, "long": 5.0, MANUAL: 3.0}


@pytest.mark.parametrize("points", [math.inf, -math.inf, math.nan])
def test_a_model_with_non_finite_points_is_refused(points: float) -> None:
    with pytest.raises(ValueError, match="finite number"):
        points_model(behaviour=[{"name": "r", "event": "web", "points": points}])
