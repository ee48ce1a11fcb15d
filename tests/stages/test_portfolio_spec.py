"""Funnel spec additions: terminal stages, dwell, carry fraction, opportunity stage, triggers; precise errors."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from models.files import SpecError
from stages.portfolio import load_portfolio
from tests.stages.helpers import line_spec, with_stage, write_portfolio

TRIGGERS = [
    {"name": "hot", "when": {"score": {"crosses_up": 80}}, "actions": [{"notify_owner": {"template": "owner_alert"}}]},
    {"name": "cold", "stage": "evaluation", "when": {"score": {"crosses_down": 20}}, "actions": [{"untag": "hot"}]},
    {"name": "mql", "when": {"qualification_reached": "MQL"}, "actions": [{"tag": "mql"}, {"enrol": "welcome"}]},
    {
        "name": "won",
        "when": {"stage_entered": "customer"},
        "actions": [
            {"exit": "welcome"},
            {"webhook": {"url": "https://crm.example.com/hook", "secret_env": "HOOK_KEY"}},
        ],
    },
]


def problems(tmp_path: Path, **overrides: Any) -> list[tuple[str, int | None, str]]:
    with pytest.raises(SpecError) as caught:
        load_portfolio(write_portfolio(tmp_path, line_spec(**overrides)))
    return caught.value.problems


def only(tmp_path: Path, **overrides: Any) -> tuple[str, str]:
    """The single problem's (path, message); it must carry a line number."""
    found = problems(tmp_path, **overrides)
    assert len(found) == 1, found
    where, line, message = found[0]
    assert line is not None
    return where, message


def test_a_full_funnel_loads(tmp_path: Path) -> None:
    portfolio = load_portfolio(write_portfolio(tmp_path, line_spec(triggers=TRIGGERS)))
    line = portfolio.line("w")
    assert [s.name for s in line.funnel] == ["discovery", "evaluation", "purchase"]
    assert [s.name for s in line.stages if s.terminal] == ["customer", "lost"]
    assert line.stage("lost").spec.status == "lost"
    assert line.next_stage("discovery") is not None and line.next_stage("discovery").name == "evaluation"  # type: ignore[union-attr]
    assert line.next_stage("purchase") is None and line.next_stage("customer") is None
    assert line.spec.opportunity_stage == "purchase"
    assert len(portfolio.models) == 3  # terminal stages have no model to score with
    assert [t.kind for t in line.triggers] == ["crosses_up", "crosses_down", "qualification_reached", "stage_entered"]
    assert [t.threshold for t in line.triggers] == [80, 20, None, None]
    assert [(a.kind, a.params) for a in line.triggers[3].actions] == [
        ("exit", {"track": "welcome"}),
        ("webhook", {"url": "https://crm.example.com/hook", "secret_env": "HOOK_KEY"}),
    ]


def test_dwell_and_carry_fraction_load(tmp_path: Path) -> None:
    stages = with_stage("discovery", model="visits.yaml", promote_at=30, min_dwell_days=2.5, carry_fraction=0.5)
    line = load_portfolio(write_portfolio(tmp_path, line_spec(stages=stages))).line("w")
    assert (line.stage("discovery").spec.min_dwell_days, line.stage("discovery").spec.carry_fraction) == (2.5, 0.5)


@pytest.mark.parametrize(
    ("stage", "fields", "where", "message"),
    [
        ("customer", {"terminal": True, "status": "customer", "promote_at": 50}, "stages.customer", "drop promote_at"),
        ("customer", {"terminal": True, "model": "visits.yaml", "status": "customer"}, "stages.customer", "drop model"),
        ("customer", {"terminal": True}, "stages.customer", "status: customer or lost"),
        ("customer", {"terminal": True, "status": "won"}, "stages.customer.status", "'customer' or 'lost'"),
        ("purchase", {"entry": "carry"}, "stages.purchase", "a funnel stage needs a model"),
        ("purchase", {"model": "visits.yaml", "status": "customer"}, "stages.purchase", "status belongs to terminal"),
        ("purchase", {"model": "visits.yaml", "promote_at": 90}, "stages.purchase.promote_at", "no next stage"),
        ("purchase", {"model": "visits.yaml", "min_dwell_days": 3}, "stages.purchase", "it needs promote_at"),
        (
            "purchase",
            {"model": "visits.yaml", "min_dwell_days": -1},
            "stages.purchase.min_dwell_days",
            "greater than or equal to 0",
        ),
        (
            "evaluation",
            {"model": "visits.yaml", "entry": "reset", "carry_fraction": 0.5},
            "stages.evaluation",
            "use entry: carry",
        ),
        (
            "evaluation",
            {"model": "visits.yaml", "carry_fraction": 1.5},
            "stages.evaluation.carry_fraction",
            "less than or equal to 1",
        ),
        (
            "evaluation",
            {"model": "visits.yaml", "promote_at": 120},
            "stages.evaluation.promote_at",
            "outside the scale",
        ),
    ],
)
def test_stage_errors(tmp_path: Path, stage: str, fields: dict[str, Any], where: str, message: str) -> None:
    found_where, found_message = only(tmp_path, stages=with_stage(stage, **fields))
    assert found_where == f"product_lines.w.{where}"
    assert message in found_message


def test_terminal_stages_come_last_and_never_first(tmp_path: Path) -> None:
    stages = line_spec()["stages"]
    first = {"lost": stages["lost"], **{k: v for k, v in stages.items() if k != "lost"}}
    assert only(tmp_path, stages=first) == (
        "product_lines.w.stages.lost",
        "the first stage is where journeys start; it cannot be terminal",
    )
    middle = {k: stages[k] for k in ["discovery", "customer", "evaluation", "purchase", "lost"]}
    assert only(tmp_path, stages=middle) == (
        "product_lines.w.stages.customer",
        "terminal stages come after every funnel stage",
    )


def test_unknown_opportunity_stage(tmp_path: Path) -> None:
    where, message = only(tmp_path, opportunity_stage="deal")
    assert (where, message.split(";")[0]) == ("product_lines.w.opportunity_stage", "unknown stage 'deal'")


def trigger(**fields: Any) -> dict[str, Any]:
    return {"name": "t", "when": {"score": {"crosses_up": 50}}, "actions": [{"tag": "x"}], **fields}


@pytest.mark.parametrize(
    ("fields", "where", "message"),
    [
        ({"when": {"score": {"crosses_up": 120}}}, "when.score.crosses_up", "must be above the scale minimum"),
        ({"when": {"score": {"crosses_down": 0}}}, "when.score.crosses_down", "must be above the scale minimum"),
        ({"when": {"score": {"crosses_up": 50, "crosses_down": 40}}}, "when.score", "exactly one of crosses_up"),
        ({"when": {"score": {"crosses_sideways": 50}}}, "when.score.crosses_sideways", "unknown field"),
        ({"when": {"qualification_reached": "SAL"}}, "when.qualification_reached", "unknown qualification 'SAL'"),
        ({"when": {"stage_entered": "deal"}}, "when.stage_entered", "unknown stage 'deal'"),
        ({"when": {"stage_entered": "purchase", "qualification_reached": "MQL"}}, "when", "exactly one of"),
        ({"when": {}}, "when", "got none"),
        ({"stage": "deal"}, "stage", "unknown stage 'deal'"),
        ({"stage": "customer"}, "stage", "is terminal"),
        ({"stage": "purchase", "when": {"stage_entered": "purchase"}}, "stage", "already names its stage"),
        ({"actions": []}, "actions", "at least 1 item"),
        ({"actions": [{"tag": "x", "untag": "y"}]}, "actions[0]", "exactly one of"),
        ({"actions": [{"send_sms": "x"}]}, "actions[0].send_sms", "unknown field"),
        ({"actions": [{"notify_owner": {"to": "not-an-address"}}]}, "actions[0].notify_owner.to", "not an email"),
        ({"actions": [{"webhook": {"url": "ftp://x"}}]}, "actions[0].webhook.url", "not an http(s) URL"),
        (
            {"actions": [{"webhook": {"url": "https://x", "secret_env": "s3cr3t!"}}]},
            "actions[0].webhook.secret_env",
            "environment variable",
        ),
    ],
)
def test_trigger_errors(tmp_path: Path, fields: dict[str, Any], where: str, message: str) -> None:
    found_where, found_message = only(tmp_path, triggers=[trigger(**fields)])
    assert found_where == f"product_lines.w.triggers[0].{where}"
    assert message in found_message


def test_trigger_names_are_unique_in_a_line(tmp_path: Path) -> None:
    assert only(tmp_path, triggers=[trigger(), trigger()]) == (
        "product_lines.w.triggers[1].name",
        "trigger name 't' is used twice; it keys the trigger's state",
    )


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        opportunity_stage="deal",
        triggers=[trigger(stage="deal"), trigger(name="u", when={"qualification_reached": "SAL"})],
    )
    assert [where for where, _, _ in found] == [
        "product_lines.w.opportunity_stage",
        "product_lines.w.triggers[0].stage",
        "product_lines.w.triggers[1].when.qualification_reached",
    ]
    text = str(SpecError(tmp_path / "portfolio.yaml", found))
    assert f"{tmp_path / 'portfolio.yaml'}:" in text and all(line for _, line, _ in found)


def test_a_template_given_as_a_path_is_refused(tmp_path: Path) -> None:
    action = {"notify_owner": {"template": "../../etc/passwd"}}
    where, message = only(tmp_path, triggers=[trigger(actions=[action])])
    assert where == "product_lines.w.triggers[0].actions[0].notify_owner.template"
    assert "'../../etc/passwd' is not a template name" in message


def test_a_model_outside_the_portfolio_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "portfolio"
    folder.mkdir()
    (tmp_path / "outside.yaml").write_text("kind: points\n")
    where, message = only(folder, stages=with_stage("purchase", model="../outside.yaml"))
    assert where == "product_lines.w.stages.purchase.model"
    assert message == f"model file '../outside.yaml' is outside the portfolio's folder {folder.resolve()}"


def test_an_unknown_time_zone_is_refused_when_the_portfolio_loads(tmp_path: Path) -> None:
    path = write_portfolio(tmp_path, line_spec())
    document = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({"timezone": "Mars/Olympus", **document}, sort_keys=False))
    with pytest.raises(SpecError) as caught:
        load_portfolio(path)
    ((where, line, message),) = caught.value.problems
    assert (where, line) == ("timezone", 1)
    assert "unknown time zone 'Mars/Olympus'" in message
