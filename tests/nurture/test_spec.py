"""The nurture grammar: every mistake is reported with the portfolio file, its line and its path."""

import shutil
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from models.files import SpecError
from nurture.audiences import load_audiences
from nurture.spec import SendWindow, load_nurture
from stages.portfolio import load_portfolio
from tests.nurture.world import write_portfolio

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "portfolio.yaml"


def problems(tmp_path: Path, tracks: str, **kwargs: str) -> list[tuple[str, int | None, str]]:
    path = write_portfolio(tmp_path, tracks=tracks, **kwargs)
    with pytest.raises(SpecError) as caught:
        load_nurture(load_portfolio(path))
    assert caught.value.file == str(path)
    return caught.value.problems


def test_the_demo_nurture_section_is_valid() -> None:
    spec = load_nurture(load_portfolio(DEMO))
    assert list(spec.tracks) == ["crm-warm-up", "analytics-nudge"]
    assert spec.tracks["analytics-nudge"].target("end") == 4
    assert spec.frequency_cap is not None and (spec.frequency_cap.emails, spec.frequency_cap.per_days) == (2, 7)


def test_sections_come_from_the_portfolio_as_loaded_not_from_the_file_again(tmp_path: Path) -> None:
    shutil.copytree(DEMO.parent, tmp_path, dirs_exist_ok=True)
    portfolio = load_portfolio(tmp_path / "portfolio.yaml")
    portfolio.path.write_text("nurture: {send_window: {days: [someday]}}\n")  # changed after loading
    assert list(load_nurture(portfolio).tracks) == ["crm-warm-up", "analytics-nudge"]
    assert list(load_audiences(portfolio)) == ["crm-warm-up", "analytics-trialists", "nurture-retargeting"]


def test_grammar_errors_name_line_and_path(tmp_path: Path) -> None:
    tracks = """
    t:
      entry: {product_line: crm}
      steps:
        - email: first
        - wait: 3 days
        - branch: {if: opened, then: 0, else: nowhere}
        - {email: first, audience: readers}
      reentry: sometimes
"""
    assert problems(tmp_path, tracks) == [
        ("nurture.tracks.t.steps[1].wait", 27, "'3 days' is not a duration such as 30m, 12h, 3d or 2w"),
        (
            "nurture.tracks.t.steps[3]",
            29,
            "a step has exactly one of email, variants, wait, audience, leave_audience, branch; "
            "got ['email', 'audience']",
        ),
        ("nurture.tracks.t.reentry", 30, "re-entry is never, always or {after_days: N}; got 'sometimes'"),
    ]


def test_branches_jump_forward_to_known_steps(tmp_path: Path) -> None:
    tracks = """
    t:
      entry: {product_line: crm}
      steps:
        - email: first
        - branch: {if: clicked, then: 0, else: nowhere}
"""
    assert problems(tmp_path, tracks) == [
        ("nurture.tracks.t.steps[1].branch.then", 27, "a branch jumps forward: to a step after 1 (or 2, the end)"),
        ("nurture.tracks.t.steps[1].branch.else", 27, "no step named 'nowhere'"),
    ]


def test_cross_checks_against_the_portfolio_and_the_templates(tmp_path: Path) -> None:
    tracks = """
    t:
      entry: {product_line: crm, stages: [nowhere], bands: [tepid], qualification_not_reached: XQL}
      steps:
        - email: missing
        - audience: strangers
"""
    found = problems(tmp_path, tracks)
    assert found[:4] == [
        ("nurture.tracks.t.entry.stages", 24, "unknown stage 'nowhere'; stages: ['discovery', 'evaluation']"),
        ("nurture.tracks.t.entry.bands", 24, "unknown band 'tepid'; bands: ['cold', 'hot', 'warm']"),
        ("nurture.tracks.t.entry.qualification_not_reached", 24, "unknown qualification 'XQL'; known: ['MQL']"),
        ("nurture.tracks.t.steps[1].audience", 27, "unknown audience 'strangers'; declare it under nurture.audiences"),
    ]
    [(where, line, message)] = found[4:]
    assert (where, line) == ("nurture.tracks", 23)
    assert message.startswith("email/missing.txt.j2: template not found (searched ")


def test_a_template_using_an_unknown_field_fails_validation(tmp_path: Path) -> None:
    path = write_portfolio(tmp_path)
    (tmp_path / "templates" / "email" / "first.txt.j2").write_text(
        '{% extends "email/base.txt.j2" %}{% block subject %}Hi{% endblock %}\n{% block body %}\n{{ lead.nickname }}\n'
        "{% endblock %}"
    )
    with pytest.raises(SpecError) as caught:
        load_nurture(load_portfolio(path))
    [(where, _, message)] = caught.value.problems
    assert where == "nurture.tracks"
    assert (
        message == f"{tmp_path / 'templates' / 'email' / 'first.txt.j2'}:3: 'dict object' has no attribute 'nickname'"
    )


def test_sender_and_window_rules(tmp_path: Path) -> None:
    path = write_portfolio(tmp_path)
    text = path.read_text().replace('"https://acme.example/u?t={token}"', '"http://acme.example/u?t={tok}"')
    text = text.replace('start: "09:00", end: "17:00"', 'start: "17:00", end: "09:00"')
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_nurture(load_portfolio(path))
    assert [(where, message) for where, _, message in caught.value.problems] == [
        ("nurture.sender.unsubscribe_url", "the one-click unsubscribe URL must be https:// (RFC 8058)"),
        ("nurture.send_window", "end 09:00:00 must come after start 17:00:00 (windows stay within a day)"),
    ]


def test_send_window_next_opening_respects_days_and_zone() -> None:
    window = SendWindow(days=["mon", "wed"], start="09:00", end="12:00")
    paris = ZoneInfo("Europe/Paris")
    monday_10_utc = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # 11:00 Paris: open
    assert window.next_open(monday_10_utc, paris) == monday_10_utc
    assert window.next_open(datetime(2026, 11, 23, 11, 0, tzinfo=UTC), paris) == datetime(
        2026, 11, 25, 8, 0, tzinfo=UTC
    )
    assert window.next_open(datetime(2026, 11, 23, 7, 59, tzinfo=UTC), paris) == datetime(
        2026, 11, 23, 8, 0, tzinfo=UTC
    )
    summer = datetime(2026, 7, 1, 5, 0, tzinfo=UTC)  # a Wednesday, 07:00 in Paris (UTC+2)
    assert window.next_open(summer, paris) == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)


def test_last_open_is_the_window_minute_before_a_friday_evening() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from nurture.spec import SendWindow

    window = SendWindow(days=["mon", "tue", "wed", "thu", "fri"], start="09:00", end="17:00")
    paris = ZoneInfo("Europe/Paris")
    friday_evening = datetime(2026, 11, 27, 19, 30, tzinfo=UTC)  # 20:30 in Paris
    assert window.last_open(friday_evening, paris) == datetime(2026, 11, 27, 15, 59, tzinfo=UTC)
    sunday = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert window.last_open(sunday, paris) == datetime(2026, 11, 27, 15, 59, tzinfo=UTC)
    inside = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert window.last_open(inside, paris) == inside
