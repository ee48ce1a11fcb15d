"""Store fixtures: a store loaded with the sample files (see samples.py)."""

from pathlib import Path

import pytest
from sqlalchemy import Engine

from stages.spec import BUILTIN_EVENT_TYPES
from store.ingest import ingest_events, ingest_leads
from tests.store.samples import EVENTS_JSONL, LEADS_CSV, PRODUCT_LINES, Loaded, lead_keys, write


@pytest.fixture
def loaded(engine: Engine, tmp_path: Path) -> Loaded:
    leads_path = write(tmp_path, "leads.csv", LEADS_CSV)
    events_path = write(tmp_path, "events.jsonl", EVENTS_JSONL)
    leads = ingest_leads(engine, leads_path, product_lines=PRODUCT_LINES)
    events = ingest_events(engine, events_path, event_types=set(BUILTIN_EVENT_TYPES), product_lines=PRODUCT_LINES)
    return Loaded(engine, leads_path, events_path, leads, events, lead_keys(engine))
