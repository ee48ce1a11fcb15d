"""The seam where a journey changes stage, and replays of the past, through real ``score_portfolio`` runs.

Line ``w``: discovery (carry, promote at 30) → evaluation (carry, promote at 60) → purchase (reset), then
customer and lost. Line ``g``: one stage with a trigger that fires, re-arms and fires again. Every pricing
view is worth 10 points and nothing decays, so every expected score is exact.
"""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import text

from flows.database import engine_for
from flows.ingestion import ingest_file
from flows.scoring import line_outcome, score_portfolio
from stages.portfolio import load_portfolio
from store import partitions
from store.outcomes import scored_outcomes
from store.queries import lead_history
from store.reports import LineShape, conversion_by_band
from tests.flows.test_funnel_flow import Hook, hook  # noqa: F401  (the fixture)

PORTFOLIO = """
scale: {min: 0, max: 100}
scoring: {partition_size: 1000}
product_lines:
  w:
    bands: {cold: [0, 30], warm: [30, 60], hot: [60, 100]}
    qualifications: {MQL: 30, SQL: 60}
    opportunity_stage: purchase
    stages:
      discovery: {model: m.yaml, promote_at: 30}
      evaluation: {model: m.yaml, promote_at: 60}
      purchase: {model: m.yaml, entry: reset}
      customer: {terminal: true, status: customer}
      lost: {terminal: true, status: lost}
    triggers:
      - name: sales ready
        when: {qualification_reached: SQL}
        actions: ACTIONS
  g:
    bands: {low: [0, 50], high: [50, 100]}
    stages:
      only: {model: m.yaml}
    triggers:
      - name: went hot
        when: {score: {crosses_up: 50}}
        actions: [{tag: hot}]
      - name: cooled
        when: {score: {crosses_down: 50}}
        actions: [{untag: hot}]
"""
MODEL = """
kind: points
behaviour:
  - {name: pricing page, event: page_view, where: {url: {contains: /pricing}}, points: 10, per: occurrence, max: 100}
"""
W = "w"


class Store:
    def __init__(self, folder: Path, url: str, actions: str = "[{tag: sales-ready}]") -> None:
        self.folder, self.url, self.files = folder, url, 0
        (folder / "portfolio.yaml").write_text(PORTFOLIO.replace("ACTIONS", actions))
        (folder / "m.yaml").write_text(MODEL)
        self.portfolio = load_portfolio(folder / "portfolio.yaml")

    def ingest(self, kind: str, text_: str) -> Any:
        self.files += 1
        path = self.folder / f"{kind}-{self.files}.csv"
        path.write_text(text_)
        return ingest_file(self.portfolio, kind, path, self.url)

    def leads(self, *rows: tuple[str, str]) -> None:
        body = "".join(f"{lead},{lead.lower()}@example.com,Ann,rep@acme.example,{line}\n" for lead, line in rows)
        self.ingest("leads", "lead_id,email,first_name,owner_email,product_interest\n" + body)

    def views(self, lead: str, line: str, day: int, n: int) -> None:
        rows = [
            f"{lead}-{line}-{day}-{i},{lead},page_view,2026-11-{day:02d}T12:00:00Z,{line},/pricing" for i in range(n)
        ]
        self.ingest("events", "event_id,lead_id,type,occurred_at,product_line,url\n" + "\n".join(rows) + "\n")

    def adjust(self, lead: str, line: str, day: int, points: int) -> None:
        self.ingest(
            "events",
            "event_id,lead_id,type,occurred_at,product_line,points,reason\n"
            f"{lead}-adj-{day},{lead},manual_adjustment,2026-11-{day:02d}T12:00:00Z,{line},{points},test\n",
        )

    def move(self, lead: str, stage: str, at: str) -> None:
        self.ingest("stage_updates", f"lead_id,product_line,stage,changed_at,source\n{lead},{W},{stage},{at},crm\n")

    def score(self, as_of: datetime, write: bool = True) -> dict[str, Any]:
        return score_portfolio(str(self.folder / "portfolio.yaml"), as_of=as_of, write=write, database_url=self.url)

    def journey(self, lead: str, line: str = W) -> dict[str, Any]:
        history = lead_history(engine_for(self.url), lead, line)
        assert history is not None
        return history["journeys"][0]

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with engine_for(self.url).connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]


def at(day: int, hour: int = 18) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def test_the_history_shows_the_state_that_crossed_and_conversion_counts_its_band(
    tmp_path: Path, database_url: str
) -> None:
    store = Store(tmp_path, database_url)
    store.leads(("A", W))
    store.views("A", W, 1, 2)
    store.score(at(1))  # discovery 20, cold
    store.views("A", W, 2, 4)
    store.score(at(2))  # discovery 60 → evaluation 60 → purchase (reset) 0

    journey = store.journey("A")
    assert [(s["stage"], s["score"], s["band"], s["qualification"], s["step"]) for s in journey["history"]] == [
        ("discovery", 20.0, "cold", None, 0),
        ("discovery", 60.0, "hot", "SQL", 0),
        ("evaluation", 60.0, "hot", "SQL", 1),
        ("purchase", 0.0, "cold", None, 2),
    ]
    assert journey["history"][1]["breakdown"] == [{"rule": "pricing page", "points": 60.0}]
    # The current level is the purchase stage's; the milestones reached are kept.
    assert (journey["qualification"], journey["milestones"]) == (None, ["MQL", "SQL"])

    shape = LineShape(W, ["discovery", "evaluation", "purchase", "customer", "lost"], ["purchase", "customer"],
                      ["cold", "warm", "hot"])  # fmt: skip
    bands = conversion_by_band(engine_for(database_url), [shape]).select("band", "journeys", "converted").rows()
    assert bands == [("cold", 0, 0), ("warm", 0, 0), ("hot", 1, 1)]  # it converted from evaluation at 60: hot

    store.move("A", "customer", "2026-11-03T09:00:00Z")
    store.score(at(3))
    outcomes = scored_outcomes(engine_for(database_url), at(1), at(4)).select("stage", "score", "band", "converted")
    assert outcomes.rows() == [
        ("discovery", 60.0, "hot", 1),
        ("evaluation", 60.0, "hot", 1),
        ("purchase", 0.0, "cold", 1),
    ]


def test_an_alert_and_a_webhook_describe_the_state_that_crossed(
    tmp_path: Path,
    database_url: str,
    hook: Hook,  # noqa: F811  (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from store.settings import get_settings

    monkeypatch.setenv("LEADSCORE_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.delenv("LEADSCORE_SMTP_HOST", raising=False)
    get_settings.cache_clear()
    store = Store(tmp_path, database_url, f'[{{notify_owner: {{}}}}, {{webhook: {{url: "{hook.url}"}}}}]')
    store.leads(("A", W))
    store.views("A", W, 1, 6)
    try:
        summary = store.score(at(1))  # SQL crossed in discovery at 60, then promoted to evaluation, purchase
    finally:
        get_settings.cache_clear()
    assert summary["actions"] == {"notify_owner": {"done": 1}, "webhook": {"done": 1}}
    assert store.journey("A")["stage"] == "purchase"

    (eml,) = (tmp_path / "outbox").rglob("*.eml")
    from email import message_from_bytes, policy

    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert message["Subject"].endswith("is hot at 60.0 on w")
    body = message.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    assert "Stage:         discovery\nScore:         60.0\nBand:          hot\nQualification: SQL\n" in body
    assert "Then:          promoted to purchase in the same run\n" in body
    assert "   +60.0  pricing page" in body

    payload = json.loads(hook.requests[0][1])
    assert {k: payload[k] for k in ("stage", "score", "band", "qualification", "promoted_to")} == {
        "stage": "discovery",
        "score": 60.0,
        "band": "hot",
        "qualification": "SQL",
        "promoted_to": "purchase",
    }
    assert payload["breakdown"] == [{"rule": "pricing page", "points": 60.0}]


def test_journeys_enter_at_the_time_the_data_gives(tmp_path: Path, database_url: str) -> None:
    store = Store(tmp_path, database_url)
    store.leads(("A", W))  # interest at ingestion (today, by the wall clock)
    store.views("A", W, 1, 1)  # its first event: 1 November
    journey = store.journey("A")
    assert journey["stage_entered_at"] == datetime(2026, 11, 1, 12, tzinfo=UTC)


def test_a_replay_uses_the_stage_positions_of_its_date(tmp_path: Path, database_url: str) -> None:
    store = Store(tmp_path, database_url)
    store.leads(("A", W), ("D", W))
    store.views("A", W, 1, 2)
    store.views("D", W, 1, 1)
    store.score(at(1))
    store.views("A", W, 2, 4)
    store.move("D", "lost", "2026-11-02T09:00:00Z")
    store.score(at(2))
    assert (store.journey("A")["stage"], store.journey("D")["stage"]) == ("purchase", "lost")
    store.leads(("N", W))  # opened after day 1 (now): no journey on day 1

    replay = store.score(at(1), write=False)
    assert replay["bands"] == {W: {"discovery/cold": 2}}
    assert (replay["run_id"], replay["changed"], replay["would_change"]) == (None, 0, 2)
    assert [(row["lead_id"], row["score"]) for row in replay["top"][f"{W}/discovery"]] == [("A", 20.0), ("D", 10.0)]


# --- ten days, run day by day, then replayed ----------------------------------------------------------


def _day(store: Store, day: int) -> None:
    """What arrives before the run of ``day`` (promotions with carry and reset, a CRM move backwards, a move
    to lost, a trigger that fires, re-arms and fires again)."""
    script: dict[int, list[Any]] = {
        1: [("views", "A", W, 3), ("views", "B", W, 4), ("views", "C", W, 1)],
        2: [("views", "E", "g", 5), ("views", "C", W, 1)],
        3: [("views", "A", W, 3)],  # A: SQL in evaluation, then purchase (reset)
        4: [("move", "B", "discovery", "2026-11-03T21:00:00Z"), ("adjust", "E", "g", -20)],
        5: [("views", "A", W, 2)],
        6: [("views", "B", W, 1), ("views", "E", "g", 2)],  # B earns its promotion back; E fires again
        7: [("move", "C", "lost", "2026-11-07T10:00:00Z")],
        8: [("views", "C", W, 2)],  # lost: not scored
        9: [("views", "D", W, 7)],  # D opens on day 9 and climbs to purchase
        10: [("views", "E", "g", 1)],
    }
    for what, *args in script[day]:
        if what == "views":
            store.views(args[0], args[1], day, args[2])
        elif what == "move":
            store.move(*args)
        else:
            store.adjust(args[0], args[1], day, args[2])


JOURNEY_SQL = (
    "SELECT j.id, j.stage, j.stage_entered_at, j.score_from, j.status, j.entered_by, j.score, j.band, j.qualification "
    "FROM journeys j WHERE j.opened_at <= :t ORDER BY j.id"
)
SNAPSHOT_SQL = (
    "SELECT journey_id, step, stage, score, band, qualification, CAST(breakdown AS TEXT) FROM score_snapshots "
    "WHERE run_id = :run ORDER BY journey_id, step"
)
FIRING_SQL = (
    "SELECT journey_id, trigger, step, action, stage, score, score_before, band, qualification, promoted_to "
    "FROM trigger_firings WHERE run_id = :run ORDER BY journey_id, trigger, step, action_index"
)
TRANSITION_SQL = (
    "SELECT journey_id, from_stage, to_stage, at, reason, score_before, score_after FROM stage_transitions "
    "WHERE run_id = :run ORDER BY journey_id, id"
)


def _micros(frame: pl.DataFrame, *names: str) -> pl.DataFrame:
    return frame.with_columns(pl.col(name).cast(pl.Datetime("us", "UTC")).dt.epoch("us") for name in names)


def _replayed(store: Store, day: int) -> dict[str, list[tuple[Any, ...]]]:
    """A read-only replay of the run of ``day``, in the shape of the stored rows above."""
    token, engine = uuid.uuid4().hex, engine_for(store.url)
    (key_range,) = partitions.lead_key_partitions(engine, 1000)
    parts = [
        line_outcome(engine, store.portfolio, line, key_range, at(day), read_token=token, replay=True)
        for line in (W, "g")
    ]
    partitions.shared_partition_reads.release(token)
    outcomes = [found[2] for found in parts if found is not None]
    journeys = pl.concat(
        [
            o.journeys.drop("score", "band", "qualification").join(
                pl.concat([o.scored.select("journey_id", "score", "band", "qualification"),
                           o.journeys.join(o.scored, on="journey_id", how="anti")
                           .select("journey_id", "score", "band", "qualification")]),
                on="journey_id",
            )
            for o in outcomes
        ]
    )  # fmt: skip
    journeys = _micros(journeys, "stage_entered_at", "score_from").sort("journey_id")
    snapshots = pl.concat([o.snapshots for o in outcomes]).sort("journey_id", "step")
    firings = pl.concat([o.fired.firings for o in outcomes]).sort("journey_id", "trigger", "step", "action_index")
    transitions = _micros(pl.concat([o.transitions for o in outcomes]), "at")
    breakdown = pl.col("breakdown").map_elements(lambda b: json.dumps(b.to_list()), return_dtype=pl.Utf8)
    return {
        "journeys": journeys.select(
            "journey_id", "stage", "stage_entered_at", "score_from", "status", "entered_by", "score", "band",
            "qualification",
        ).rows(),
        "snapshots": snapshots.select(
            "journey_id", "step", "stage", "score", "band", "qualification", breakdown
        ).rows(),
        "firings": firings.select(
            "journey_id", "trigger", "step", "action", "stage", "score", "score_before", "band", "qualification",
            "promoted_to",
        ).rows(),
        "transitions": transitions.sort("journey_id", maintain_order=True).select(
            "journey_id", "from_stage", "to_stage", "at", "reason", "score_before", "score_after"
        ).rows(),
    }  # fmt: skip


def _normalise(rows: list[tuple[Any, ...]], breakdown_at: int | None = None) -> list[tuple[Any, ...]]:
    """Stored JSON text as the same compact JSON the replay prints."""
    if breakdown_at is None:
        return rows
    return [(*r[:breakdown_at], json.dumps(json.loads(r[breakdown_at]))) for r in rows]


def test_ten_days_run_then_replayed_give_the_same_journeys_snapshots_and_firings(
    tmp_path: Path, database_url: str
) -> None:
    store = Store(tmp_path, database_url)
    store.leads(("A", W), ("B", W), ("C", W), ("D", ""), ("E", ""))  # D and E open with their first events
    stored: dict[int, dict[str, list[tuple[Any, ...]]]] = {}
    for day in range(1, 11):
        _day(store, day)
        run = store.score(at(day))["run_id"]
        stored[day] = {
            "journeys": store.rows(JOURNEY_SQL, t=int(at(day).timestamp() * 1_000_000)),
            "snapshots": _normalise(store.rows(SNAPSHOT_SQL, run=run), 6),
            "firings": store.rows(FIRING_SQL, run=run),
            "transitions": store.rows(TRANSITION_SQL, run=run),
        }

    # The story the ten days tell, as the store has it.
    a, b, c = store.journey("A"), store.journey("B"), store.journey("C")
    assert [(m["from_stage"], m["to_stage"], m["reason"]) for m in b["transitions"]] == [
        ("discovery", "evaluation", "threshold"),
        ("evaluation", "discovery", "external"),
        ("discovery", "evaluation", "threshold"),
    ]
    assert [(s["stage"], s["score"], s["step"]) for s in a["history"]] == [
        ("discovery", 30.0, 0), ("evaluation", 30.0, 1), ("evaluation", 60.0, 0), ("purchase", 0.0, 1),
        ("purchase", 20.0, 0),
    ]  # fmt: skip
    assert (c["stage"], c["status"], c["score"]) == ("lost", "lost", 20.0)
    e_firings = [row[1] for row in store.rows("SELECT f.journey_id, f.trigger FROM trigger_firings f "
                                              "JOIN journeys j ON j.id = f.journey_id WHERE j.product_line = 'g' "
                                              "ORDER BY f.fired_at, f.id")]  # fmt: skip
    assert e_firings == ["went hot", "cooled", "went hot"]
    assert store.journey("D")["stage"] == "purchase"

    for day in range(1, 11):
        replayed = _replayed(store, day)
        for kind in ("journeys", "snapshots", "firings", "transitions"):
            assert replayed[kind] == stored[day][kind], f"day {day}: {kind}"
