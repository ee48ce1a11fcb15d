"""``leadscore demo``: days of the demo portfolio simulated on the embedded store, in the demo's own folder.

What a newcomer must see after it: hot leads in every line, the top band converting better than the
bottom one, a promotion that reset the score, nurture emails in the outbox and at least one lead coming
back after opening one, qualifications on more than one day, a trigger that re-armed and fired again for
the same journey, audiences losing members as well as gaining them, and the report showing nurture per
step and audience changes per day; and the same seed gives the same store.
"""

import base64
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from flows.cli import app
from flows.database import engine_for
from flows.demo import DEMO_PORTFOLIO, run_days, run_demo
from flows.report import line_shape
from nurture.report.sections import ReportScope, audiences_section
from stages.portfolio import load_portfolio
from store import reports
from store.settings import Settings, get_settings
from tests.flows.test_report import CHROMIUM, DevTools

# A fixed last day: which simulated days are weekdays (send window open) is part of the story.
SMALL = ["--days", "21", "--leads", "600", "--events", "12000", "--as-of", "2026-12-04T12:00:00Z"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The demo run through the CLI at a small size, from an empty folder, with no store configured."""
    root = tmp_path_factory.mktemp("demo-cli")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("LEADSCORE_DATABASE_URL", "LEADSCORE_OUTBOX_DIR", "LEADSCORE_SMTP_HOST"):
            patch.delenv(name, raising=False)
        patch.chdir(root)
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(app, ["demo", *SMALL], env={"COLUMNS": "200"})
        finally:
            get_settings.cache_clear()
    assert result.exit_code == 0, (result.output, result.exception)
    yield root, result.output


def _rows(folder: Path, sql: str) -> list[Any]:
    """Rows of the demo store in ``folder`` (or in its ``demo/`` sub-folder, where the CLI puts it)."""
    db = folder / "leadscore.db" if (folder / "leadscore.db").exists() else folder / "demo" / "leadscore.db"
    with engine_for(f"sqlite:///{db}").connect() as conn:
        return list(conn.execute(text(sql)))


def test_demo_writes_only_its_own_folder(demo: tuple[Path, str]) -> None:
    root, output = demo
    assert [path.name for path in root.iterdir()] == ["demo"]
    assert "rejected 4 (kept with reasons)" in output  # the generator's deliberately bad rows, on day one
    assert "simulated 21 days" in output
    # The guided tour names real leads of this store: one promoted and alerted, one that was nurtured.
    tour = output[output.index("What to try next") :]
    assert "leadscore explain LD-" in tour and "leadscore nurture preview LD-" in tour and "--as-of" in tour
    # How to start the service on the demo store, and one look-up of the toured lead.
    assert "leadscore api --port 8000 &" in tour
    assert 'curl -s -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/v1/leads/LD-' in tour
    html = (root / "demo" / "report.html").read_text()
    assert "Nurture performance" in html and "<svg" in html
    for section in ('id="nurture-emails"', 'id="audiences"', 'id="top-movers"'):
        assert section in html, section
    assert any((root / "demo" / "audiences").rglob("*.csv"))
    assert "LEADSCORE_OUTBOX_DIR" not in os.environ  # the demo tells the flows; it does not edit the environment


def test_hot_leads_in_every_line_and_stage(demo: tuple[Path, str]) -> None:
    """Discovery has its own bands (hot: close to promotion), so every funnel stage of each line has had hot
    journeys, and every line has hot journeys now."""
    hot = _rows(demo[0], "SELECT DISTINCT product_line, stage FROM score_snapshots WHERE band = 'hot' ORDER BY 1, 2")
    stages = ["discovery", "evaluation", "purchase"]
    assert hot == [(line, stage) for line in ("analytics-cloud", "crm-suite") for stage in stages]
    now = _rows(demo[0], "SELECT DISTINCT product_line FROM journeys WHERE band = 'hot' ORDER BY 1")
    assert [row[0] for row in now] == ["analytics-cloud", "crm-suite"]


def test_the_top_band_converts_better_than_the_bottom(demo: tuple[Path, str]) -> None:
    """Conversion (reaching the opportunity stage or a customer) by the band a journey was in before it,
    over both lines: the top bands convert more than the bottom ones (a small run has few hot journeys
    per line, so the lines are pooled)."""
    portfolio = load_portfolio(DEMO_PORTFOLIO)
    shapes = [line_shape(line) for line in portfolio.product_lines.values()]
    table = reports.conversion_by_band(engine_for(f"sqlite:///{demo[0] / 'demo' / 'leadscore.db'}"), shapes)
    assert set(table["band"]) == {"cold", "warm", "hot"}  # both demo lines name their bands alike
    pooled = table.group_by("band").agg(pl.col("journeys", "converted").sum())
    rate = {band: converted / journeys for band, journeys, converted in pooled.iter_rows()}
    assert rate["hot"] > rate["cold"], table


def test_a_promotion_reset_the_score(demo: tuple[Path, str]) -> None:
    promotions = _rows(
        demo[0],
        "SELECT from_stage, to_stage, score_before, score_after FROM stage_transitions "
        "WHERE reason = 'threshold' AND to_stage = 'evaluation'",
    )
    assert promotions
    assert all(before >= 40 and after < before for _, _, before, after in promotions)


def test_nurture_emails_went_out_and_brought_a_lead_back(demo: tuple[Path, str]) -> None:
    root = demo[0]
    assert any((root / "demo" / "outbox").rglob("*.eml"))
    # An opened nurture email (a human open carrying its Message-ID) followed by a higher score next run.
    returns = _rows(
        root,
        "SELECT COUNT(DISTINCT o.message_id) FROM outbox o "
        "JOIN events e ON e.message_id = o.message_id AND e.type = 'email_open' AND e.machine = 0 "
        "JOIN score_snapshots before ON before.lead_key = o.lead_key AND before.as_of <= e.occurred_at "
        "JOIN score_snapshots after ON after.journey_id = before.journey_id AND after.as_of > e.occurred_at "
        "AND after.stage = before.stage AND after.score > before.score "
        "WHERE o.kind = 'nurture'",
    )
    assert returns[0][0] >= 1


def test_qualifications_on_more_than_one_day(demo: tuple[Path, str]) -> None:
    """MQL and SQL per day are curves, not one dot: every line qualifies leads on several days."""
    per_day = reports.qualifications_per_day(
        engine_for(f"sqlite:///{demo[0] / 'demo' / 'leadscore.db'}"), "Europe/Paris"
    )
    days = per_day.group_by("product_line", "qualification").agg(pl.col("day").n_unique())
    assert days.height == 4 and days["day"].min() > 1, days  # (2 lines) × (MQL, SQL)


def test_a_trigger_re_armed_and_fired_again(demo: tuple[Path, str]) -> None:
    """ "trial is hot" fires when an evaluation score crosses 55 upward, re-arms when it falls back below, and
    fires again at the next crossing: at least one journey has two firings, at two different runs."""
    twice = _rows(
        demo[0],
        "SELECT journey_id, COUNT(DISTINCT run_id) FROM trigger_firings WHERE action = 'notify_owner' "
        "GROUP BY journey_id, trigger HAVING COUNT(DISTINCT run_id) >= 2",
    )
    assert twice


def test_audiences_gain_and_lose_members(demo: tuple[Path, str]) -> None:
    """The report's audience section counts every member its exports added and removed, day by day."""
    added, removed = _rows(demo[0], "SELECT SUM(added_count), SUM(removed_count) FROM audience_exports")[0]
    assert added > removed > 0
    engine = engine_for(f"sqlite:///{demo[0] / 'demo' / 'leadscore.db'}")
    scope = ReportScope(load_portfolio(DEMO_PORTFOLIO), [], datetime.now(UTC))
    section = audiences_section(scope, reports.audience_changes(engine, "Europe/Paris"))
    assert sum(row["added"] for row in section.rows) == added
    assert sum(row["removed"] for row in section.rows) == removed
    assert len({row["day"] for row in section.rows if row["removed"]}) > 1  # removes on several days
    assert [chart.title for chart in section.charts] == [
        f"{name}: adds and removes per day" for name in ("analytics-trialists", "crm-warm-up")
    ]


def test_runs_are_dated_at_business_hours_in_the_portfolio_zone() -> None:
    runs = run_days("Europe/Paris", datetime(2026, 12, 4).date(), 3)
    assert runs == [datetime(2026, 12, d, 9, tzinfo=UTC) for d in (2, 3, 4)]  # 10:00 in Paris, winter time


STORE_CONTENT = (
    "SELECT l.lead_id, s.product_line, s.stage, s.as_of, s.score, s.band FROM score_snapshots s "
    "JOIN leads l ON l.key = s.lead_key ORDER BY 1, 2, 4, 3",
    "SELECT l.lead_id, t.product_line, t.from_stage, t.to_stage, t.at, t.reason, t.score_before, t.score_after "
    "FROM stage_transitions t JOIN leads l ON l.key = t.lead_key ORDER BY 1, 2, 5, 4",
    "SELECT message_id, kind, to_address, subject FROM outbox ORDER BY message_id",
    "SELECT event_id, type, occurred_at, message_id FROM events ORDER BY event_id",
)


def _simulated(folder: Path) -> list[list[Any]]:
    """The store a small demo leaves, as comparable rows (no run ids, no wall-clock times)."""
    settings = Settings(database_url=f"sqlite:///{folder / 'leadscore.db'}", outbox_dir=folder / "outbox")
    as_of = datetime(2026, 12, 4, tzinfo=UTC)
    run_demo(folder, leads=200, events=3000, days=6, seed=7, as_of=as_of, settings=settings)
    return [_rows(folder, sql) for sql in STORE_CONTENT]


def test_the_same_seed_gives_the_same_store(tmp_path: Path) -> None:
    first, second = _simulated(tmp_path / "a"), _simulated(tmp_path / "b")
    assert all(first), [len(rows) for rows in first]  # scores, transitions, emails and events exist
    assert first == second


SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "demo-report.png"


@pytest.mark.slow
def test_the_demo_report_renders_and_is_photographed(demo: tuple[Path, str], tmp_path: Path) -> None:
    """The README's screenshot is this page: set LEADSCORE_UPDATE_SCREENSHOT=1 to write it to docs/."""
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed here (`apt-get install -y chromium`)")
    browser = DevTools(tmp_path / "chromium-profile")
    try:
        browser.call("Emulation.setDeviceMetricsOverride", width=1100, height=1400, deviceScaleFactor=1, mobile=False)
        browser.load((demo[0] / "demo" / "report.html").as_uri())
        marks = browser.evaluate("document.querySelectorAll('svg.chart rect.bar, svg.chart polyline.series').length")
        problems = browser.problems()
        shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
    finally:
        browser.close()
    assert problems == [] and marks > 10
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("LEADSCORE_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(png)
