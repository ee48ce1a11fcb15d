"""The shapes named once in ``store.shapes`` are the ones the tables, the row models and the reads use."""

from datetime import UTC, datetime

import polars as pl
from sqlalchemy import Engine

from store.ingest import LeadRow
from store.scores import read_leads
from store.shapes import (
    AUDIENCE_LEAD_COLUMNS,
    LEAD_COLUMNS,
    LEAD_CONTACT_COLUMNS,
    STAGE_UPDATE_SCHEMA,
    UTC_US,
    empty_frame,
)
from store.stages import OPEN_FIRING_SCHEMA, read_pending_updates
from store.tables import Lead, StageUpdate


def test_lead_columns_are_the_leads_table_and_the_row_model() -> None:
    assert [column.name for column in Lead.__table__.columns][1:12] == list(LEAD_COLUMNS)
    assert list(LeadRow.model_fields)[:11] == list(LEAD_COLUMNS)
    assert "owner_email" not in AUDIENCE_LEAD_COLUMNS
    assert set(LEAD_CONTACT_COLUMNS) < set(LEAD_COLUMNS) and set(LEAD_CONTACT_COLUMNS) < set(OPEN_FIRING_SCHEMA)


def test_reads_return_the_named_shapes(engine: Engine) -> None:
    changed = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(Lead.__table__.insert(), [{"lead_id": "L1", "email": "a@x.io", "attributes": {}}])
        conn.execute(
            StageUpdate.__table__.insert(),
            [{"lead_key": 1, "product_line": "crm", "stage": "evaluation", "changed_at": changed, "source": "crm"}],
        )
    leads = read_leads(engine, (0, 10))
    assert leads.columns == ["lead_key", *LEAD_COLUMNS, "attributes"]
    assert leads.row(0, named=True)["email"] == "a@x.io"
    updates = read_pending_updates(engine, "crm", (0, 10))
    assert updates.schema == pl.Schema({"id": pl.Int64(), **STAGE_UPDATE_SCHEMA})
    assert updates.select("stage", "changed_at").rows() == [("evaluation", changed)]
    assert updates.schema["changed_at"] == UTC_US


def test_empty_frames_are_typed_and_each_its_own() -> None:
    """``empty_frame`` hands out a new empty frame of the schema each time, though it builds one per schema."""
    first = empty_frame(STAGE_UPDATE_SCHEMA)
    assert first.schema == pl.Schema(STAGE_UPDATE_SCHEMA) and first.is_empty()
    first.insert_column(0, pl.Series("extra", [], pl.Int64))  # changed in place by a caller
    again = empty_frame(STAGE_UPDATE_SCHEMA)
    assert again.schema == pl.Schema(STAGE_UPDATE_SCHEMA) and again is not first
    assert empty_frame({"n": pl.Int64}).schema == pl.Schema({"n": pl.Int64})
