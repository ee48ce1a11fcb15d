"""Events: immutable facts, inserted once per ``event_id`` with their lead's key, promoted properties
and the machine-activity flag."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Connection, Engine, update

from store.bulk import insert_ignore
from store.ingest.lookup import in_list, lookup
from store.ingest.machine import DEFAULT_PROXY_AGENTS, DELIVERY_TYPES, MachineDetector, MachineRule
from store.ingest.reading import Progress, Raw
from store.ingest.report import IngestReport
from store.ingest.rows import EVENT_FIELDS, EventRow, event_row_adapter
from store.ingest.skeleton import Ingestion, run_chunks
from store.ingest.split import CsvPlan, Splitter, csv_plan, split_event, split_event_cells
from store.ingest.validation import Hints, event_hints, validate
from store.tables import PROMOTED_NUMBER_PROPERTIES, PROMOTED_TEXT_PROPERTIES, Event, Lead, to_micros

_LEAD_TABLE = Lead.__table__
_EVENT_TABLE = Event.__table__
_LEAD_CACHE_MAX = 1_000_000  # lead_id → key entries kept between chunks of an events file


def promoted_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """The well-known properties as typed column values (scoring reads them without parsing JSON)."""
    values: dict[str, Any] = {}
    for key in PROMOTED_TEXT_PROPERTIES:
        value = properties.get(key)
        values[key] = None if value is None or value == "" else str(value)
    for key in PROMOTED_NUMBER_PROPERTIES:
        value = properties.get(key)
        try:
            values[key] = None if value is None or value == "" or isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            values[key] = None
    return values


def _flag_machine(conn: Connection, event_ids: Sequence[str]) -> int:
    """Flag events of this run whose delivery came later in the file; returns how many changed."""
    condition, batch = in_list(conn, _EVENT_TABLE.c.event_id)
    stmt = update(_EVENT_TABLE).where(condition).where(_EVENT_TABLE.c.machine.is_(False)).values(machine=True)
    flagged = 0
    for start in range(0, len(event_ids), batch):
        flagged += conn.execute(stmt, {"wanted": list(event_ids[start : start + batch])}).rowcount
    return flagged


def _stored_deliveries(conn: Connection, message_ids: Sequence[str]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for message_id, occurred_at in lookup(
        conn,
        _EVENT_TABLE.c.message_id,
        message_ids,
        [_EVENT_TABLE.c.message_id, _EVENT_TABLE.c.occurred_at],
        _EVENT_TABLE.c.type.in_(DELIVERY_TYPES),
    ):
        found.setdefault(message_id, []).append(to_micros(occurred_at))
    return found


@dataclass
class _EventSteps:
    adapter: TypeAdapter[list[EventRow]]
    hints: Hints
    detector: MachineDetector
    splitter: Splitter = field(default_factory=lambda: Splitter(EVENT_FIELDS))
    plan_names: list[str] | None = None
    plan: CsvPlan = field(default_factory=list)
    lead_keys: dict[str, int] = field(default_factory=dict)

    def prepare(self, rows: list[Raw], run: Ingestion) -> list[tuple[Raw, EventRow]]:
        items: list[dict[str, Any]] = []
        for row in rows:
            if row.data is not None:
                items.append(split_event(self.splitter, row.data))
            else:
                if row.names is not self.plan_names:
                    self.plan_names, self.plan = row.names, csv_plan(self.splitter, row.names or [])
                items.append(split_event_cells(self.plan, row.values or []))
        good, bad = validate(self.adapter, items, self.hints)
        for index, (field_name, reason) in sorted(bad.items()):
            run.rejects.add(rows[index], field_name, reason)
        return [(rows[index], model) for index, model in good]

    def write(self, conn: Connection, good: list[tuple[Raw, EventRow]], now: datetime, run: Ingestion) -> None:
        lead_keys = self.lead_keys
        if len(lead_keys) > _LEAD_CACHE_MAX:
            lead_keys.clear()
        missing = sorted({m.lead_id for _, m in good} - lead_keys.keys())
        if missing:
            lead_keys.update(lookup(conn, _LEAD_TABLE.c.lead_id, missing, [_LEAD_TABLE.c.lead_id, _LEAD_TABLE.c.key]))
        events: list[dict[str, Any]] = []
        explicit: list[bool] = []
        for row, model in good:
            key = lead_keys.get(model.lead_id)
            if key is None:
                run.rejects.add(row, "lead_id", f"unknown lead_id {model.lead_id!r} (ingest leads first)")
                continue
            message_id = model.message_id
            if message_id is None:
                promoted = model.properties.get("message_id")
                if promoted is not None and promoted != "":
                    message_id = str(promoted)
            events.append(
                {
                    "lead_key": key,
                    "occurred_at": model.occurred_at,
                    "event_id": model.event_id,
                    "type": model.type,
                    "product_line": model.product_line,
                    "machine": bool(model.machine),
                    "message_id": message_id,
                    "properties": model.properties,
                    "ingested_at": now,
                    **promoted_properties(model.properties),
                }
            )
            explicit.append(model.machine is not None)
            if model.product_line is not None:
                run.interests.add(key, model.product_line, model.occurred_at)
        run.report.accepted += len(events)
        late = self.detector.run(events, explicit, lambda ids: _stored_deliveries(conn, ids))
        # Clustered-key (lead) order turns random B-tree inserts into local ones: SQLite inserts ≈ 2×
        # faster; sorting on the lead alone is cheap (ints) and gives almost all of the locality.
        events.sort(key=itemgetter("lead_key"))
        run.report.inserted += insert_ignore(conn, _EVENT_TABLE, events)  # type: ignore[arg-type]
        if late:
            run.report.updated += _flag_machine(conn, late)


def ingest_events(
    engine: Engine,
    path: Path,
    *,
    event_types: set[str] | frozenset[str],
    product_lines: set[str] | None = None,
    machine_window_seconds: float = 2.0,
    proxy_user_agents: tuple[str, ...] = DEFAULT_PROXY_AGENTS,
    chunk_size: int = 50_000,
    progress: Progress | None = None,
) -> IngestReport:
    """Insert events (ignore an ``event_id`` already stored: events are immutable).

    The lead must already exist (``lead_id`` → ``lead_key`` is looked up per chunk). ``message_id`` is
    promoted from the properties when the row has no column for it; CSV columns that are not event
    fields become properties. An explicit ``machine`` value on the row wins over detection.
    """
    types = frozenset(event_types)
    lines = None if product_lines is None else frozenset(product_lines)
    detector = MachineDetector(MachineRule(machine_window_seconds, proxy_user_agents))
    steps = _EventSteps(event_row_adapter(types, lines), event_hints(types, product_lines), detector)
    return run_chunks(engine, path, "events", _EVENT_TABLE, steps, chunk_size=chunk_size, progress=progress)  # type: ignore[arg-type]
