"""The demo portfolio and the demo-data generator: they load, they are reproducible, and they mean something.

The demo is a user's first example, so it must validate, use every kind of rule the grammar offers,
and score data whose true propensity the top-scored leads really have more of.
"""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from examples.generate import GeneratedData, generate, main
from models.engine import score
from models.spec import BehaviourRule, Condition, FieldTest, PointsModel
from stages.portfolio import Portfolio, load_portfolio
from stages.spec import BUILTIN_EVENT_TYPES

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo" / "portfolio.yaml"
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
LINES = ("crm-suite", "analytics-cloud")
CORE = ("lead_id", "email", "first_name", "last_name", "phone", "company", "city", "state", "zip", "country")
CORE += ("owner_email", "email_opt_in", "ads_opt_in")


@pytest.fixture(scope="module")
def portfolio() -> Portfolio:
    return load_portfolio(DEMO)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> GeneratedData:
    return generate(tmp_path_factory.mktemp("small"), leads=2000, events=40_000, seed=0, as_of=AS_OF)


def _csv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)


# --- the portfolio -------------------------------------------------------------------------------


def test_demo_portfolio_loads(portfolio: Portfolio) -> None:
    spec = portfolio.spec
    assert (spec.scale.min, spec.scale.max) == (0, 100)
    assert spec.timezone == "Europe/Paris"
    assert set(portfolio.product_lines) == set(LINES)
    for line in portfolio.product_lines.values():
        assert [s.name for s in line.stages] == ["discovery", "evaluation", "purchase", "customer", "lost"]
        assert [(s.spec.terminal, s.spec.status) for s in line.stages[3:]] == [(True, "customer"), (True, "lost")]
        assert [s.spec.entry for s in line.funnel] == ["carry", "reset", "reset"]
        discovery, evaluation, purchase = line.funnel
        assert discovery.spec.promote_at == 40
        assert evaluation.spec.promote_at is not None and 60 <= evaluation.spec.promote_at <= 70
        assert purchase.spec.promote_at is None
        assert set(line.spec.bands.ranges) == {"cold", "warm", "hot"}
        assert [name for name, _ in line.qualifications] == ["MQL", "SQL"]


def _models(portfolio: Portfolio) -> list[PointsModel]:
    return [stage.model for line in portfolio.product_lines.values() for stage in line.funnel]


def _tests(conditions: list[Condition]) -> list[FieldTest]:
    return [test for condition in conditions for test in condition.values()]


def test_demo_rules_cover_every_criterion(portfolio: Portfolio) -> None:
    models = _models(portfolio)
    fit = [rule for m in models for rule in m.fit]
    behaviour = [rule for m in models for rule in m.behaviour]
    conditions = [c for r in fit for c in [r.when, *(r.any_of or [])]] + [r.where for r in behaviour]
    used = {op for test in _tests(conditions) for op in test.model_fields_set}
    assert {"eq", "ne", "in_", "not_in", "lt", "le", "gt", "ge", "between", "matches", "contains", "present"} <= used

    def fit_rule(field: str, op: str) -> bool:
        return any(
            op in t.model_fields_set
            for r in fit
            for c in [r.when, *(r.any_of or [])]
            for f, t in c.items()
            if f == field
        )

    assert fit_rule("job_title", "matches")  # persona
    assert fit_rule("industry", "in_")
    assert fit_rule("company_size", "between") and fit_rule("company_size", "lt")
    assert fit_rule("budget", "ge")
    assert fit_rule("country", "not_in")
    assert any(r.points == -100 and "occupation" in r.when and r.when["occupation"].eq == "student" for r in fit)
    competitor = [r for r in fit if r.points == -50 and r.any_of]
    assert competitor and {"is_competitor", "email"} <= {f for r in competitor for c in r.any_of or [] for f in c}
    assert any({"email", "phone"} <= set(r.when) and all(t.present for t in r.when.values()) for r in fit)
    assert any(r.points < 0 and any(t.present is False for t in r.when.values()) for r in fit)  # missing field

    def rules(event: str) -> list[BehaviourRule]:
        return [r for r in behaviour if event in r.event_types]

    pricing = [r for r in rules("page_view") if "url" in r.where and r.where["url"].contains == "/pricing"]
    assert any(r.per == "occurrence" and r.max is not None and r.within_days for r in pricing)
    assert any(r.per == "once" and r.where for r in rules("asset_download"))  # white paper
    assert any((r.count_at_least or 0) > 3 for r in rules("asset_download"))
    assert any((r.count_at_least or 0) >= 10 and r.within_days == 30 for r in rules("page_view"))
    assert any(r.total_at_least == {"duration_s": 300} for r in rules("page_view"))
    assert any(r.where.get("duration_s") and r.where["duration_s"].gt == 300 for r in rules("page_view"))
    for event in ("webinar_register", "webinar_attend", "email_reply", "demo_request", "trial_start", "meeting_booked"):
        assert rules(event), event
    assert any(r.per == "occurrence" and r.max is not None for r in rules("email_click"))
    assert any(r.points == -20 for r in rules("unsubscribe"))
    opens = rules("email_open")
    assert any(r.include_machine for r in opens) and any(not r.include_machine for r in opens)
    assert any(isinstance(r.event, list) for r in behaviour)
    assert any(r.per == "occurrence" and r.points < 0 and r.min is not None for r in behaviour)

    combos = [c for m in models for c in m.combos]
    assert any(c.within_days == 3 and c.points == 15 and len(c.all_of) == 3 for c in combos)
    decays = [m.decay for m in models if m.decay]
    assert any(d.half_life_days for d in decays)
    assert any([(s.after_days, s.keep) for s in d.steps or []] == [(90, 0.5), (180, 0.25)] for d in decays)
    assert all(m.caps.fit is not None and m.caps.behaviour is not None for m in models)


def test_reset_stages_score_late_funnel_behaviour(portfolio: Portfolio) -> None:
    early = {"webinar_register", "email_open"}
    for line in portfolio.product_lines.values():
        for stage in line.funnel[1:]:
            events = {t for r in stage.model.behaviour for t in r.event_types}
            assert {"meeting_booked", "email_reply"} <= events, (line.name, stage.name)
            assert not events & early, (line.name, stage.name)


# --- the generator -------------------------------------------------------------------------------


def test_generator_is_deterministic(tmp_path: Path) -> None:
    def run(name: str, seed: int) -> GeneratedData:
        return generate(tmp_path / name, leads=300, events=6000, seed=seed, as_of=AS_OF, bad_rows=4)

    a, b, c = run("a", 7), run("b", 7), run("c", 8)
    for attr in ("leads", "events", "outcomes"):
        first, again, other = (getattr(d, attr).read_bytes() for d in (a, b, c))
        assert first == again, attr
        assert first != other, attr


def test_exact_row_counts(tmp_path: Path) -> None:
    data = generate(tmp_path, leads=500, events=7777, seed=3, as_of=AS_OF, bad_rows=6)
    leads, events, outcomes = _csv(data.leads), _csv(data.events), _csv(data.outcomes)
    assert (leads.height, events.height) == (506, 7783) == (data.lead_rows, data.event_rows)
    valid = leads.head(500)
    expected = valid.select(pl.col("product_interest").str.contains(";").cast(pl.Int64).sum() + pl.len()).item()
    assert outcomes.height == expected == data.outcome_rows
    assert outcomes.columns == ["lead_id", "product_line", "converted", "propensity", "converted_at"]

    bad_leads = leads.tail(6)
    assert bad_leads["lead_id"].null_count() == 3
    assert bad_leads.filter(pl.col("lead_id").is_not_null())["email"].str.contains("^[^@]+@[^@]+\\.[a-z]+$").sum() == 0
    bad = events.tail(6)
    assert bad["event_id"].null_count() == 2
    assert bad["lead_id"].null_count() == 1
    assert (~bad["occurred_at"].str.ends_with("Z")).sum() == 2  # naive timestamps
    assert bad["type"].is_in(list(BUILTIN_EVENT_TYPES)).not_().sum() == 1


def test_generated_values_are_well_formed(small: GeneratedData) -> None:
    leads, events, outcomes = _csv(small.leads), _csv(small.events), _csv(small.outcomes)
    assert leads["lead_id"].n_unique() == leads.height
    assert events["event_id"].n_unique() == events.height
    assert events["lead_id"].is_in(leads["lead_id"].implode()).all()

    assert events["occurred_at"].str.contains(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").all()
    times = events["occurred_at"].str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC")
    assert times.min() >= AS_OF - timedelta(days=365) and times.max() <= AS_OF
    assert times.is_sorted()
    properties = [json.loads(text) for text in events["properties"]]
    assert all(isinstance(p, dict) for p in properties)

    types = events["type"].value_counts(sort=True)
    assert types["type"][0] == "page_view"
    tagged = events["product_line"].is_not_null().mean()
    assert 0.5 < tagged < 0.75
    assert set(events["product_line"].drop_nulls()) == set(LINES)

    # Email pairs: every open and click belongs to a message that was sent; some opens are machines.
    messages = pl.DataFrame({"type": events["type"], "message_id": [p.get("message_id") for p in properties]})
    sent = set(messages.filter(pl.col("type") == "email_sent")["message_id"])
    followers = messages.filter(pl.col("type").is_in(["email_delivered", "email_open", "email_click"]))
    assert followers["message_id"].is_in(list(sent)).all()
    agents = [p.get("user_agent", "") for p, t in zip(properties, events["type"], strict=True) if t == "email_open"]
    assert any("GoogleImageProxy" in a for a in agents)
    assert _opens_within_a_second(events, properties) > 0
    adjustments = [p for p, t in zip(properties, events["type"], strict=True) if t == "manual_adjustment"]
    assert adjustments and all({"points", "reason", "author"} <= set(p) for p in adjustments)

    assert 0.65 < (leads["email_opt_in"] == "true").mean() < 0.75
    assert 0.45 < (leads["ads_opt_in"] == "true").mean() < 0.55
    assert set(leads["product_interest"]) == {"crm-suite", "analytics-cloud", "crm-suite;analytics-cloud"}
    names = pl.concat([leads["first_name"], leads["last_name"]])
    assert names.str.contains("[^\\x00-\\x7F]").any()  # accents survive
    assert leads["email"].drop_nulls().str.contains("[A-Z]").any()  # mixed case
    assert leads["country"].drop_nulls().str.contains("^[A-Za-z]{2}$").all()
    assert outcomes["propensity"].cast(pl.Float64).is_between(0, 1).all()
    assert outcomes.filter(pl.col("converted") == "1")["converted_at"].null_count() == 0


def _opens_within_a_second(events: pl.DataFrame, properties: list[dict]) -> int:
    frame = pl.DataFrame(
        {
            "type": events["type"],
            "at": events["occurred_at"].str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC"),
            "message_id": [p.get("message_id") for p in properties],
        }
    )
    delivered = frame.filter(pl.col("type") == "email_delivered").select("message_id", pl.col("at").alias("delivered"))
    opens = frame.filter(pl.col("type") == "email_open").join(delivered, on="message_id")
    return opens.filter((pl.col("at") - pl.col("delivered")) <= timedelta(seconds=1)).height


def test_every_event_type_is_known_to_the_portfolio(small: GeneratedData, portfolio: Portfolio) -> None:
    generated = set(_csv(small.events)["type"])
    assert generated <= portfolio.event_types
    used_by_models = {t for m in _models(portfolio) for t in m.event_types()}
    assert used_by_models <= generated  # every behaviour rule has data to fire on


# --- scoring the generated data ------------------------------------------------------------------


def _frames(data: GeneratedData) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Leads (core columns as text + an ``attributes`` JSON column, like the store), events, outcomes."""
    raw = _csv(data.leads).with_row_index("lead_key").with_columns(pl.col("lead_key").cast(pl.Int64))
    extra = [c for c in raw.columns if c not in {"lead_key", *CORE}]
    leads = raw.select("lead_key", *CORE, pl.struct(extra).struct.json_encode().alias("attributes"))
    keys = raw.select("lead_id", "lead_key")
    events = (
        _csv(data.events)
        .join(keys, on="lead_id", how="inner")
        .select(
            "lead_key",
            pl.col("occurred_at").str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC"),
            "type",
            pl.lit(False).alias("machine"),
            "properties",
            "product_line",
        )
    )
    outcomes = pl.read_csv(data.outcomes).join(keys, on="lead_id")
    return leads, events, outcomes


def test_scores_of_the_generated_data_track_the_true_propensity(small: GeneratedData, portfolio: Portfolio) -> None:
    leads, events, outcomes = _frames(small)
    for line in portfolio.product_lines.values():
        journeys = outcomes.filter(pl.col("product_line") == line.name)
        line_events = events.filter(pl.col("product_line").is_null() | (pl.col("product_line") == line.name))
        for stage in line.funnel:
            scores = score(
                stage.model,
                leads=leads,
                events=line_events,
                as_of=AS_OF,
                scale=portfolio.scale,
                journeys=journeys.select("lead_key", pl.lit(None).alias("score_from")),
            )
            assert scores.height == journeys.height
            assert scores["score"].is_between(0, 100).all()
            sums = scores["breakdown"].list.eval(pl.element().struct.field("points")).list.sum()
            assert ((sums - scores["score"]).abs() < 0.05).all()

            ranked = scores.join(journeys, on="lead_key").sort("score", "lead_key")
            decile = ranked.height // 10
            bottom = ranked.head(decile)["propensity"].mean()
            top = ranked.tail(decile)["propensity"].mean()
            assert top > 2 * bottom, (line.name, stage.name, top, bottom)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--leads", "50", "--events", "500", "--out", str(tmp_path), "--seed", "1", "--as-of", "2026-11-01T00:00:00Z"])
    printed = capsys.readouterr().out
    assert "500 rows" in printed
    assert _csv(tmp_path / "leads.csv").height == 50
    with pytest.raises(SystemExit):
        main(["--as-of", "2026-11-01T00:00:00"])  # naive: refused
