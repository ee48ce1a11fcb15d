"""Ingestion of leads, accounts, events and CRM stage updates from CSV and JSON Lines files.

Every row is validated by a Pydantic model, or by vectorised checks narrower than it (``columns`` for
CSV and JSON Lines events) that hand it every row they do not accept; a bad row is
rejected with its file, line, field and a readable reason (returned in the report and kept in
``ingest_rejects``), never silently dropped or half-stored. Re-ingesting any file is a no-op (events
are insert-or-ignore on ``event_id``, leads are upserted on ``lead_id`` only when their content
changed, rejects are unique per file line and content).

One module per concern: ``rows`` (the row models), ``reading`` (files into physical rows), ``csv_chunks``
(an events CSV's chunks as Polars columns where Polars reads them as the ``csv`` module would), ``split``
(rows into fields), ``validation``, ``report`` (report and reject ledger), ``machine`` (the
machine-activity rule), ``skeleton`` (the one chunk loop), ``staging`` (set-based appends), ``lookup``
and one module per kind of row.
"""

from store.ingest.events import ingest_events
from store.ingest.leads import ingest_accounts, ingest_leads
from store.ingest.machine import DEFAULT_PROXY_AGENTS, MachineRule
from store.ingest.properties import promoted_properties
from store.ingest.reading import Progress, Records
from store.ingest.report import IngestReport, Reject, write_rejects_csv
from store.ingest.rows import EventRow, LeadRow, StageUpdateRow, event_row_adapter
from store.ingest.stage_updates import ingest_stage_updates

__all__: list[str] = [
    "DEFAULT_PROXY_AGENTS",
    "EventRow",
    "IngestReport",
    "LeadRow",
    "MachineRule",
    "Progress",
    "Records",
    "Reject",
    "StageUpdateRow",
    "event_row_adapter",
    "ingest_accounts",
    "ingest_events",
    "ingest_leads",
    "ingest_stage_updates",
    "promoted_properties",
    "write_rejects_csv",
]
