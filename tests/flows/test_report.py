"""The report: exact figures on a hand-built store (SQLite and PostgreSQL), the CLI, the Prefect artifacts,
and the HTML of a scored demo store rendered in headless Chromium (charts visible, no console errors)."""

import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from prefect import flow
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from flows.cli import app
from flows.database import engine_for
from flows.report import SECTIONS, build_sections, line_shape, render_html, report_task
from flows.scoring import score_portfolio
from stages.portfolio import load_portfolio
from store import reports
from store.funnel import funnel as store_funnel
from store.reports import LineShape
from store.tables import Journey, Lead, QualificationMilestone, ScoreSnapshot, StageTransition
from tests.browser import CHROMIUM, DevTools
from tests.flows.ops_demo import AS_OF, demo_portfolio, load_demo

T0 = datetime(2026, 10, 20, 6, 0, tzinfo=UTC)
WIDGETS = LineShape(
    "widgets",
    stages=["discovery", "evaluation", "purchase", "customer", "lost"],
    outcome_stages=["purchase", "customer"],
    bands=["cold", "warm", "hot"],
)


def _at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def _build_store(engine: Engine) -> None:
    """Four journeys: L1 reached purchase (the opportunity), L2 is in evaluation, L3 in discovery, L4 a customer."""
    journeys = [
        (1, "purchase", "active", 50.0, "warm"),
        (2, "evaluation", "active", 100.0, "hot"),
        (3, "discovery", "active", 10.0, "cold"),
        (4, "customer", "customer", None, None),
    ]
    transitions = [  # journey, from, to, day
        (1, "discovery", "evaluation", 1),
        (1, "evaluation", "purchase", 2),
        (2, "discovery", "evaluation", 1),
        (4, "discovery", "evaluation", 1),
        (4, "evaluation", "purchase", 2),
        (4, "purchase", "customer", 3),
    ]
    snapshots = [  # journey, stage, day, score, band
        (1, "discovery", 0, 30.0, "warm"),
        (1, "evaluation", 1.5, 60.0, "hot"),
        (1, "purchase", 2.5, 50.0, "warm"),
        (2, "discovery", 0, 20.0, "cold"),
        (2, "evaluation", 1.5, 100.0, "hot"),
        (3, "discovery", 0, 10.0, "cold"),
        (3, "discovery", 2.5, 10.0, "cold"),  # a snapshot that changed nothing shown: no mover
        (4, "evaluation", 1.5, 70.0, "hot"),
    ]
    milestones = [  # journey, qualification, reached at (UTC): 23:30 UTC on Oct 31 is Nov 1 in Paris
        (1, "MQL", datetime(2026, 10, 31, 23, 30, tzinfo=UTC)),
        (2, "MQL", datetime(2026, 11, 1, 10, 0, tzinfo=UTC)),
        (2, "SQL", datetime(2026, 11, 2, 8, 0, tzinfo=UTC)),
    ]
    with engine.begin() as conn:
        conn.execute(Lead.__table__.insert(), [{"key": k, "lead_id": f"L{k}", "attributes": {}} for k in range(1, 5)])
        conn.execute(
            Journey.__table__.insert(),
            [
                {"id": k, "lead_key": k, "product_line": "widgets", "stage": stage, "status": status, "score": score}
                | {"band": band, "opened_at": T0}
                for k, stage, status, score, band in journeys
            ],
        )
        conn.execute(
            StageTransition.__table__.insert(),
            [
                {"journey_id": j, "lead_key": j, "product_line": "widgets", "from_stage": a, "to_stage": b}
                | {"at": _at(day), "reason": "external", "run_id": "r"}
                for j, a, b, day in transitions
            ],
        )
        conn.execute(
            ScoreSnapshot.__table__.insert(),
            [
                {"journey_id": j, "lead_key": j, "product_line": "widgets", "stage": stage, "run_id": f"r{day}"}
                | {"as_of": _at(day), "score": score, "band": band, "breakdown": []}
                for j, stage, day, score, band in snapshots
            ],
        )
        conn.execute(
            QualificationMilestone.__table__.insert(),
            [
                {"journey_id": j, "lead_key": j, "product_line": "widgets", "qualification": q, "threshold": 40.0}
                | {"reached_at": at, "stage": "discovery", "score": 50.0, "run_id": "r", "breakdown": []}
                for j, q, at in milestones
            ],
        )


def test_report_figures_on_a_known_store(engine: Engine) -> None:
    _build_store(engine)

    histogram = reports.score_histogram(engine, 0, 100, 10)
    assert histogram.rows() == [
        ("widgets", "discovery", 1, 1),
        ("widgets", "evaluation", 9, 1),  # a score at the top of the scale is in the last bin
        ("widgets", "purchase", 5, 1),
    ]

    funnel = store_funnel(engine, [WIDGETS])
    assert funnel.select("stage", "now", "reached").rows() == [
        ("discovery", 1, 4),
        ("evaluation", 1, 3),
        ("purchase", 1, 2),
        ("customer", 1, 1),
        ("lost", 0, 0),
    ]
    assert funnel["conversion"].to_list() == [None, 0.75, pytest.approx(2 / 3), 0.5, 0.0]

    # L1 and L4 converted from "hot" (their band just before the opportunity); L2 is hot, L3 cold, none warm.
    conversion = reports.conversion_by_band(engine, [WIDGETS])
    assert conversion.rows() == [
        ("widgets", "cold", 1, 0, 0.0),
        ("widgets", "warm", 0, 0, None),
        ("widgets", "hot", 3, 2, pytest.approx(2 / 3)),
    ]
    no_outcome = LineShape("widgets", WIDGETS.stages, ["lost"], WIDGETS.bands)
    assert reports.conversion_by_band(engine, [no_outcome])["rate"].to_list() == [None, None, None]

    per_day = reports.qualifications_per_day(engine, "Europe/Paris")
    assert per_day.rows() == [("widgets", "MQL", date(2026, 11, 1), 2), ("widgets", "SQL", date(2026, 11, 2), 1)]
    assert reports.qualifications_per_day(engine, "UTC")["day"].to_list() == [
        date(2026, 10, 31),
        date(2026, 11, 1),
        date(2026, 11, 2),
    ]

    movers = reports.top_movers(engine, 10)
    assert movers.select("lead_id", "previous_stage", "stage", "previous", "score", "change").rows() == [
        ("L2", "discovery", "evaluation", 20.0, 100.0, 80.0),
        ("L1", "evaluation", "purchase", 60.0, 50.0, -10.0),
    ]
    assert movers["as_of"].to_list() == [_at(1.5), _at(2.5)]
    assert reports.top_movers(engine, 1, line="other").is_empty()


def test_line_shape_names_the_outcome_stages(tmp_path: Path) -> None:
    portfolio = load_portfolio(demo_portfolio(tmp_path, partition_size=1000))
    crm = line_shape(portfolio.line("crm-suite"))
    assert crm == LineShape(
        "crm-suite",
        ["discovery", "evaluation", "purchase", "customer", "lost"],
        ["purchase", "customer"],
        ["cold", "warm", "hot"],
    )
    assert line_shape(portfolio.line("analytics-cloud")).outcome_stages == ["purchase", "customer"]


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The demo portfolio (crm-suite with an opportunity stage and terminal stages) on generated data, scored
    twice a week apart; a few journeys then moved along the funnel and qualified, as the stages flow records."""
    root = tmp_path_factory.mktemp("report")
    portfolio = demo_portfolio(root / "portfolio", partition_size=1000)
    # No promotions: the journeys stay where the moves inserted below say they went.
    portfolio.write_text(re.sub(r"\n\s*promote_at: \d+", "", portfolio.read_text()))
    url = f"sqlite:///{root}/store.db"
    load_demo(portfolio, root / "data", url, leads=1_500, events=30_000)
    score_portfolio(str(portfolio), as_of=AS_OF - timedelta(days=7), database_url=url)
    score_portfolio(str(portfolio), as_of=AS_OF, database_url=url)
    engine = engine_for(url)
    with engine.begin() as conn:
        # Replace the milestones the runs recorded with a known set, so the figures are exact.
        conn.execute(text("DELETE FROM qualification_milestones"))
        top = conn.execute(
            text("SELECT id, lead_key FROM journeys WHERE product_line = 'crm-suite' ORDER BY score DESC, id LIMIT 40")
        ).all()
        for i, (journey, lead) in enumerate(top):
            moves = [("discovery", "evaluation")] + ([("evaluation", "purchase")] if i % 2 else [])
            for n, (a, b) in enumerate(moves):
                conn.execute(
                    StageTransition.__table__.insert(),
                    {"journey_id": journey, "lead_key": lead, "product_line": "crm-suite", "from_stage": a}
                    | {"to_stage": b, "at": AS_OF + timedelta(hours=1 + n), "reason": "threshold", "run_id": "x"},
                )
            conn.execute(
                QualificationMilestone.__table__.insert(),
                {"journey_id": journey, "lead_key": lead, "product_line": "crm-suite", "qualification": "MQL"}
                | {"threshold": 40.0, "reached_at": AS_OF - timedelta(days=i % 5), "stage": "discovery"}
                | {"score": 50.0, "run_id": "x", "breakdown": []},
            )
    yield portfolio, url
    engine_for.cache_clear()


def test_cli_report_writes_html_and_json(demo_store: tuple[Path, str], tmp_path: Path, monkeypatch: Any) -> None:
    portfolio, url = demo_store
    monkeypatch.setenv("LEADSCORE_DATABASE_URL", url)
    from store.settings import get_settings

    get_settings.cache_clear()
    try:
        out = tmp_path / "r.html"
        result = CliRunner().invoke(app, ["report", "--portfolio", str(portfolio), "--out", str(out), "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["out"] == str(out) and out.read_text().startswith("<!DOCTYPE html>")
        assert list(summary["sections"]) == [
            "score-distribution",
            "funnel",
            "qualifications",
            "conversion-by-band",
            "top-movers",
            "nurture",
            "nurture-emails",
            "nurture-uplift",
            "audiences",
            "model-review",
            "content",
        ]
        crm_funnel = [row for row in summary["sections"]["funnel"] if row["product line"] == "crm-suite"]
        assert [(r["stage"], r["reached"]) for r in crm_funnel][1:] == [
            ("evaluation", 40),
            ("purchase", 20),
            ("customer", 0),
            ("lost", 0),
        ]
        assert [r["conversion"] for r in crm_funnel][2] == "50.0%"
        rates = {(r["product line"], r["band"]): r["rate"] for r in summary["sections"]["conversion-by-band"]}
        assert rates[("analytics-cloud", "hot")] == "n/a"
        assert rates[("crm-suite", "hot")] != "n/a"
        assert sum(r["reached"] for r in summary["sections"]["qualifications"]) == 40

        bad = CliRunner().invoke(app, ["report", "--portfolio", str(portfolio), "--product-line", "nope"])
        assert bad.exit_code == 2 and "unknown product line 'nope'" in bad.output
        only = CliRunner().invoke(
            app, ["report", "-p", str(portfolio), "--product-line", "crm-suite", "--out", str(out), "--json"]
        )
        lines = {r["product line"] for r in json.loads(only.stdout)["sections"]["score-distribution"]}
        assert lines == {"crm-suite"}
    finally:
        get_settings.cache_clear()


def test_report_task_publishes_the_key_tables_as_artifacts(demo_store: tuple[Path, str], tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    portfolio, url = demo_store

    @flow
    def reporting() -> dict[str, int]:
        return report_task(str(portfolio), str(tmp_path / "r.html"), url)

    counts = reporting()
    assert counts["top-movers"] == 20 and counts["funnel"] == 10  # 5 stages per line
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["report-funnel", "report-top-movers"]))
        )
    latest = {a.key: a for a in sorted(artifacts, key=lambda a: a.created)}
    funnel = json.loads(latest["report-funnel"].data)
    assert len(funnel) == 10 and {"product line", "stage", "now", "reached", "conversion"} == set(funnel[0])
    assert len(json.loads(latest["report-top-movers"].data)) == 20


def test_labels_are_escaped(engine: Engine) -> None:
    _build_store(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE leads SET lead_id = '<script>alert(1)</script>' WHERE key = 2"))
    portfolio = load_portfolio(Path(__file__).resolve().parents[2] / "examples" / "demo" / "portfolio.yaml")
    data, sections = build_sections(portfolio, engine, sections=SECTIONS)
    html = render_html(data, sections)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- headless Chromium -----------------------------------------------------------------------------


CHART_CHECK = """(() => Array.from(document.querySelectorAll('svg.chart')).map(svg => {
  const box = svg.getBoundingClientRect(), style = getComputedStyle(svg);
  const marks = Array.from(svg.querySelectorAll('rect.bar, polyline.series, circle.point'))
    .filter(m => { const b = m.getBoundingClientRect(); return b.width > 0 || b.height > 0; });
  return {section: svg.closest('section').id, width: box.width, height: box.height,
          visible: style.display !== 'none' && style.visibility !== 'hidden', marks: marks.length};
}))()"""


@pytest.mark.slow
def test_report_renders_in_headless_chromium(demo_store: tuple[Path, str], tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed here (`apt-get install -y chromium`; .ci/run installs it)")
    portfolio, url = demo_store
    data, sections = build_sections(load_portfolio(portfolio), engine_for(url))
    out = tmp_path / "report.html"
    out.write_text(render_html(data, sections))
    expected = {section.key: len(section.charts) for section in sections}
    # Every section has something to draw on this store: distributions (2 lines × 1-3 stages), 2 funnels,
    # crm-suite's qualifications, crm-suite's conversion by band (analytics-cloud has no outcome: n/a), movers.
    assert expected["funnel"] == 2 and expected["qualifications"] == 1
    assert expected["conversion-by-band"] == 1 and expected["top-movers"] == 1
    assert expected["score-distribution"] >= 2

    browser = DevTools(tmp_path / "chromium-profile")
    try:
        browser.load(out.as_uri())
        charts = browser.evaluate(CHART_CHECK)
        problems = browser.problems()
        title = browser.evaluate("document.title")
        headings = browser.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
    finally:
        browser.close()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
    assert problems == []
    assert title == "leadscore report · acme-cloud-demo"
    assert headings == [section.title for section in sections]
    counted = pl.DataFrame(charts).group_by("section").len()
    assert dict(counted.iter_rows()) == {key: n for key, n in expected.items() if n}
    for chart in charts:
        assert chart["visible"] and chart["width"] > 100 and chart["height"] > 20, chart
        assert chart["marks"] >= 1, chart
