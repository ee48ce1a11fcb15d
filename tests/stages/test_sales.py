"""The portfolio's ``sales:`` section: reason codes, recycle tracks and the SLA of each qualification."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.files import SpecError
from stages.portfolio import load_portfolio
from stages.sales import SalesSpec

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "portfolio.yaml"
REACHED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def test_the_demo_declares_the_hand_off_and_each_qualification_has_its_deadline() -> None:
    sales = load_portfolio(DEMO).spec.sales
    assert sorted(sales.reject_reasons) == ["no-budget", "not-now", "wrong-persona"]
    assert sales.recycle_tracks == {"crm-suite": "crm-warm-up", "analytics-cloud": "analytics-nudge"}
    assert sales.due("MQL", REACHED) == datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    assert sales.due("SQL", REACHED) == datetime(2026, 12, 1, 17, 30, tzinfo=UTC)
    assert sales.due("PQL", REACHED) is None  # no SLA declared: never overdue


def test_a_bad_sla_names_its_place_in_the_file(tmp_path: Path) -> None:
    text = DEMO.read_text().replace("sla_hours: {MQL: 48, SQL: 8}", "sla_hours: {MQL: 0, SQL: 8}")
    for model in DEMO.parent.glob("models"):
        (tmp_path / "models").symlink_to(model)
    (tmp_path / "portfolio.yaml").write_text(text)
    with pytest.raises(SpecError, match=r"sales\.sla_hours\.MQL"):
        load_portfolio(tmp_path / "portfolio.yaml")
    assert SalesSpec().due("MQL", REACHED) is None
