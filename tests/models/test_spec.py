"""The points-model grammar: valid files load, invalid ones fail naming file, line, path and problem."""

from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from pydantic import ValidationError

from models.files import SpecError, validate_file
from models.spec import Bands, BehaviourRule, FieldTest, PointsModel, Scale

VALID = """\
kind: points
name: enterprise mql
scale: {min: 0, max: 100}
bands:
  cold: [0, 40]
  warm: [40, 70]
  hot: [70, 100]
fit:
  - name: persona title
    when:
      title: {matches: '^(vp|chief)\\b'}
      country: {in: [US, CA]}
    points: 15
  - name: mid size
    any_of:
      - employees: {between: [100, 1000]}
      - revenue: {ge: 1000000}
    points: 10
behaviour:
  - name: pricing
    event: [web, app]
    where: {url: {contains: /pricing}}
    points: 10
    within_days: 30
  - name: opens
    event: email_open
    points: 1
    per: occurrence
    max: 5
  - name: binge
    event: video
    points: 8
    total_at_least: {duration_s: 300}
    decay: false
combos:
  - name: hot streak
    all_of: [pricing, binge]
    within_days: 7
    points: 20
decay:
  steps:
    - {after_days: 30, keep: 0.5}
    - {after_days: 90, keep: 0.2}
caps: {fit: 30, behaviour: 50}
manual_adjustments: false
"""


def write(tmp_path: Path, text: str, name: str = "model.yaml") -> Path:
    path = tmp_path / name
    path.write_text(dedent(text), encoding="utf-8")
    return path


def spec_error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as caught:
        validate_file(path, PointsModel)
    return caught.value


def test_valid_file_loads(tmp_path: Path) -> None:
    model = validate_file(write(tmp_path, VALID), PointsModel)
    assert model.name == "enterprise mql"
    assert [r.name for r in model.fit] == ["persona title", "mid size"]
    assert model.fit[0].when["country"].in_ == ["US", "CA"]
    assert model.fit[1].any_of is not None and model.fit[1].any_of[0]["employees"].between == (100, 1000)
    assert model.behaviour[0].event_types == ["web", "app"]
    assert model.behaviour[2].is_threshold and not model.behaviour[1].is_threshold
    assert model.decay is not None and model.decay.steps is not None and len(model.decay.steps) == 2
    assert model.caps.fit == 30 and model.caps.behaviour == 50
    assert model.event_types() == {"web", "app", "email_open", "video"}
    assert model.bands is not None and model.bands.band_of(70) == "hot"


def test_event_types_include_manual_adjustments_when_enabled() -> None:
    model = PointsModel.model_validate({"behaviour": [{"name": "r", "event": "web", "points": 1}]})
    assert model.event_types() == {"web", "manual_adjustment"}


INVALID: list[tuple[str, str, int, str, str]] = [
    (
        "unknown field",
        """\
        fit:
          - name: title
            when: {title: {eq: vp}}
            points: 10
            weight: 2
        """,
        5,
        "fit[0].weight",
        "unknown field 'weight'",
    ),
    (
        "unknown top-level field",
        """\
        name: m
        behavior: []
        """,
        2,
        "behavior",
        "unknown field 'behavior'",
    ),
    (
        "unknown operator",
        """\
        fit:
          - name: title
            when:
              title:
                equals: vp
            points: 10
        """,
        5,
        "fit[0].when.title.equals",
        "unknown field 'equals'",
    ),
    (
        "unknown operator in where",
        """\
        behaviour:
          - name: pricing
            event: web
            where:
              url: {startswith: /pricing}
            points: 10
        """,
        5,
        "behaviour[0].where.url.startswith",
        "unknown field 'startswith'",
    ),
    (
        "bad regex",
        """\
        fit:
          - name: title
            when:
              title:
                matches: "(vp"
            points: 10
        """,
        5,
        "fit[0].when.title.matches",
        "invalid regular expression '(vp'",
    ),
    (
        "regex the scorer cannot run",
        """\
        fit:
          - name: title
            when:
              title:
                matches: "(?<!s)vp"
            points: 10
        """,
        5,
        "fit[0].when.title.matches",
        "look-around",
    ),
    (
        "between reversed",
        """\
        fit:
          - name: size
            when:
              employees:
                between: [500, 50]
            points: 10
        """,
        5,
        "fit[0].when.employees",
        "between: lower bound 500.0 is above upper bound 50.0",
    ),
    (
        "empty field test",
        """\
        fit:
          - name: size
            when:
              employees: {eq: null}
            points: 10
        """,
        4,
        "fit[0].when.employees",
        "a field test needs at least one of",
    ),
    (
        "fit rule without condition",
        """\
        fit:
          - name: size
            points: 10
        """,
        2,
        "fit[0]",
        "fit rule 'size' needs 'when' or 'any_of'",
    ),
    (
        "duplicate rule names",
        """\
        fit:
          - name: title
            when: {title: {eq: vp}}
            points: 10
        behaviour:
          - name: pricing
            event: web
            points: 5
          - name: title
            event: web
            points: 5
        """,
        9,
        "behaviour[1].name",
        "rule name 'title' is used twice",
    ),
    (
        "combo naming unknown rule",
        """\
        behaviour:
          - name: pricing
            event: web
            points: 5
        combos:
          - name: hot
            all_of:
              - pricing
              - demo
            within_days: 7
            points: 10
        """,
        9,
        "combos[0].all_of[1]",
        "combo 'hot' names unknown behaviour rule 'demo'",
    ),
    (
        "combo of one rule",
        """\
        behaviour:
          - name: pricing
            event: web
            points: 5
        combos:
          - name: hot
            all_of: [pricing]
            within_days: 7
            points: 10
        """,
        7,
        "combos[0].all_of",
        "at least 2 items",
    ),
    (
        "per occurrence with count_at_least",
        """\
        behaviour:
          - name: visits
            event: web
            points: 5
            per: occurrence
            count_at_least: 3
        """,
        2,
        "behaviour[0]",
        "a threshold rule gives its points once; drop 'per: occurrence'",
    ),
    (
        "count and total",
        """\
        behaviour:
          - name: visits
            event: video
            points: 5
            count_at_least: 3
            total_at_least: {duration_s: 300}
        """,
        2,
        "behaviour[0]",
        "use count_at_least or total_at_least, not both",
    ),
    (
        "total of two properties",
        """\
        behaviour:
          - name: visits
            event: video
            points: 5
            total_at_least: {duration_s: 300, pages: 3}
        """,
        2,
        "behaviour[0]",
        "total_at_least names exactly one property",
    ),
    (
        "max on a once rule",
        """\
        behaviour:
          - name: visits
            event: web
            points: 5
            max: 20
        """,
        2,
        "behaviour[0]",
        "max/min cap the sum of a 'per: occurrence' rule",
    ),
    (
        "min above max",
        """\
        behaviour:
          - name: visits
            event: web
            points: 5
            per: occurrence
            min: 10
            max: 5
        """,
        2,
        "behaviour[0]",
        "min 10.0 is above max 5.0",
    ),
    (
        "no event type",
        """\
        behaviour:
          - name: visits
            event: []
            points: 5
        """,
        2,
        "behaviour[0]",
        "'event' names at least one event type",
    ),
    (
        "within_days not positive",
        """\
        behaviour:
          - name: visits
            event: web
            points: 5
            within_days: 0
        """,
        5,
        "behaviour[0].within_days",
        "greater than 0",
    ),
    (
        "bad per",
        """\
        behaviour:
          - name: visits
            event: web
            points: 5
            per: day
        """,
        5,
        "behaviour[0].per",
        "'once' or 'occurrence'",
    ),
    (
        "points not a number",
        """\
        behaviour:
          - name: visits
            event: web
            points: lots
        """,
        4,
        "behaviour[0].points",
        "valid number",
    ),
    (
        "overlapping bands",
        """\
        scale: {min: 0, max: 100}
        bands:
          cold: [0, 50]
          hot: [40, 100]
        """,
        3,
        "bands",
        "bands 'cold' and 'hot' overlap",
    ),
    (
        "gap between bands",
        """\
        scale: {min: 0, max: 100}
        bands:
          cold: [0, 40]
          hot: [50, 100]
        """,
        3,
        "bands",
        "gap between bands 'cold' and 'hot'",
    ),
    (
        "bands not covering the scale",
        """\
        scale: {min: 0, max: 100}
        bands:
          cold: [0, 40]
          hot: [40, 90]
        """,
        3,
        "bands",
        "bands cover [0.0, 90.0] but the scale is [0.0, 100.0]",
    ),
    (
        "scale reversed",
        """\
        scale:
          min: 100
          max: 0
        """,
        2,
        "scale",
        "scale min 100.0 must be below max 0.0",
    ),
    (
        "decay with both",
        """\
        decay:
          half_life_days: 30
          steps:
            - {after_days: 30, keep: 0.5}
        """,
        2,
        "decay",
        "decay takes either half_life_days or steps",
    ),
    (
        "decay with neither",
        """\
        behaviour:
          - name: visits
            event: web
            points: 5
        decay: {}
        """,
        5,
        "decay",
        "decay takes either half_life_days or steps",
    ),
    (
        "decay steps out of order",
        """\
        decay:
          steps:
            - {after_days: 90, keep: 0.2}
            - {after_days: 30, keep: 0.5}
        """,
        2,
        "decay",
        "decay steps must be in increasing after_days order",
    ),
    (
        "decay keep above one",
        """\
        decay:
          steps:
            - after_days: 30
              keep: 1.5
        """,
        4,
        "decay.steps[0].keep",
        "less than or equal to 1",
    ),
    (
        "invalid YAML",
        """\
        fit:
          - name: title
            when: {title: {eq: vp}
            points: 10
        """,
        4,
        "<top>",
        "not valid YAML",
    ),
]


@pytest.mark.parametrize(("text", "line", "where", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_model_names_file_line_and_path(tmp_path: Path, text: str, line: int, where: str, message: str) -> None:
    path = write(tmp_path, text)
    error = spec_error(path)
    assert error.file == str(path)
    shown = str(error).splitlines()
    assert any(s.startswith(f"{path}:{line}: {where}: ") and message in s for s in shown), shown
    assert any(p[0] == ("" if where == "<top>" else where) and p[1] == line and message in p[2] for p in error.problems)


def test_every_problem_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        fit:
          - name: title
            when: {title: {equals: vp}}
            points: ten
        behaviour:
          - name: web
            event: web
            points: 1
            per: sometimes
        """,
    )
    assert [(where, line) for where, line, _ in spec_error(path).problems] == [
        ("fit[0].when.title.equals", 3),
        ("fit[0].points", 4),
        ("behaviour[0].per", 9),
    ]


def test_missing_and_empty_files(tmp_path: Path) -> None:
    missing = spec_error(tmp_path / "nope.yaml")
    assert str(missing) == f"{tmp_path / 'nope.yaml'}: <top>: file not found"
    empty = spec_error(write(tmp_path, "# nothing\n"))
    assert str(empty).endswith(": <top>: the file is empty")


def test_field_test_values() -> None:
    assert FieldTest.model_validate({"eq": True}).eq is True
    assert FieldTest.model_validate({"eq": 5}).eq == 5.0
    assert FieldTest.model_validate({"eq": "5"}).eq == "5"
    assert FieldTest.model_validate({"in": ["a", 1]}).in_ == ["a", 1.0]
    assert FieldTest.model_validate({"present": False}).present is False
    with pytest.raises(ValidationError, match="at least one of"):
        FieldTest.model_validate({})


@pytest.mark.parametrize(
    "rule",
    [
        {"name": "r", "event": "web", "points": 1, "per": "occurrence", "min": -3, "max": 3},
        {"name": "r", "event": "web", "points": 1, "count_at_least": 1},
        {"name": "r", "event": ["a", "b"], "points": -1, "per": "occurrence", "min": -2, "decay": False},
    ],
)
def test_valid_behaviour_rules(rule: dict[str, Any]) -> None:
    assert BehaviourRule.model_validate(rule).name == "r"


def test_bands_are_half_open_with_a_closed_top() -> None:
    bands = Bands.model_validate({"cold": [0, 40], "warm": [40, 70], "hot": [70, 100]})
    assert [bands.band_of(s) for s in (0, 39.99, 40, 69.99, 70, 100)] == ["cold", "cold", "warm", "warm", "hot", "hot"]
    assert bands.band_of(-5) == "cold"
    assert bands.band_of(120) == "hot"
    bands.check_covers(Scale(min=0, max=100))
    with pytest.raises(ValueError, match="bands cover"):
        bands.check_covers(Scale(min=-10, max=100))
