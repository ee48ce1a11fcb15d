"""Promoted number properties (``duration_s``, ``points``) are scored as numbers without formatting them
as text first; every test must still see them exactly as it would see their text."""

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import Engine

from models.breakdown import MANUAL
from models.engine import score
from models.spec import PointsModel
from stages.spec import BUILTIN_EVENT_TYPES
from store.db import make_engine
from store.ingest import ingest_events, ingest_leads
from store.reader import read_events
from tests.store.samples import write

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
MODEL = PointsModel.model_validate(
    {
        "behaviour": [
            {"name": "long visit", "event": "page_view", "where": {"duration_s": {"gt": 60}}, "points": 7},
            {"name": "exactly 30", "event": "page_view", "where": {"duration_s": {"eq": 30}}, "points": 3},
            {"name": "text 30.0", "event": "page_view", "where": {"duration_s": {"eq": "30.0"}}, "points": 2},
            {"name": "listed", "event": "page_view", "where": {"duration_s": {"in": [2.5, "abc"]}}, "points": 4},
            {"name": "starts with 1", "event": "page_view", "where": {"duration_s": {"matches": "^1"}}, "points": 5},
            {"name": "timed", "event": "page_view", "where": {"duration_s": {"present": True}}, "points": 1},
            {"name": "untimed", "event": "page_view", "where": {"duration_s": {"present": False}}, "points": -1},
            {"name": "pricing", "event": "page_view", "where": {"url": {"contains": "/PRICING"}}, "points": 6},
            {"name": "time on site", "event": "page_view", "total_at_least": {"duration_s": 100}, "points": 9},
        ],
        "manual_adjustments": True,
    }
)
EVENTS = """\
event_id,lead_id,type,occurred_at,url,duration_s,points,reason,author
a1,A,page_view,2026-10-01T00:00:00Z,/pricing,30,,,
a2,A,page_view,2026-10-02T00:00:00Z,/home,75.5,,,
a3,A,manual_adjustment,2026-10-03T00:00:00Z,,,12.5,fair,ann
b1,B,page_view,2026-10-01T00:00:00Z,/Pricing/plans,2.5,,,
b2,B,page_view,2026-10-02T00:00:00Z,/home,,,,
b3,B,manual_adjustment,2026-10-03T00:00:00Z,,,-4,typo,bob
c1,C,page_view,2026-10-01T00:00:00Z,/docs,1e3,,,
c2,C,page_view,2026-10-02T00:00:00Z,/docs,0.1,,,
"""


@pytest.fixture
def sqlite(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path}/p.db")
    ingest_leads(engine, write(tmp_path, "leads.csv", "lead_id\nA\nB\nC\n"))
    assert ingest_events(engine, write(tmp_path, "events.csv", EVENTS), event_types=set(BUILTIN_EVENT_TYPES)).inserted
    return engine


def test_number_columns_score_as_their_text_would(sqlite: Engine) -> None:
    events = read_events(sqlite, None, None, sorted(MODEL.event_types()), sorted(MODEL.property_keys()))
    assert events.schema["duration_s"] == pl.Float64 and events.schema["points"] == pl.Float64
    leads = pl.DataFrame({"lead_key": sorted(set(events["lead_key"].to_list()))})
    as_numbers = score(MODEL, leads=leads, events=events, as_of=AS_OF)
    texts = events.with_columns(pl.col("duration_s", "points").cast(pl.Utf8))
    assert_frame_equal(as_numbers, score(MODEL, leads=leads, events=texts, as_of=AS_OF))
    rules = {
        key: [entry["rule"] for entry in breakdown]
        for key, breakdown in zip(as_numbers["lead_key"], as_numbers["breakdown"], strict=True)
    }
    a, b, c = leads["lead_key"].to_list()
    assert rules[a] == ["long visit", "exactly 30", "text 30.0", "timed", "pricing", "time on site", MANUAL]
    assert rules[b] == ["listed", "timed", "untimed", "pricing", MANUAL]
    assert rules[c] == ["long visit", "starts with 1", "timed", "time on site"]
    assert as_numbers["score"].to_list() == [40.5, 6.0, 22.0]
