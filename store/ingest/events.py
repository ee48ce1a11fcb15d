"""Events: immutable facts, inserted once per ``event_id`` with their lead's key, promoted properties
and the machine-activity flag."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Connection, Engine, update

from store.bulk import insert_ignore, json_text
from store.identity_tables import ANONYMOUS_EVENTS
from store.ingest.columns import AcceptedEvents, EventColumns
from store.ingest.lookup import in_list, lookup
from store.ingest.machine import DEFAULT_PROXY_AGENTS, DELIVERY_TYPES, EMAIL_TYPES, MachineDetector, MachineRule
from store.ingest.reading import Progress, Raw, Records
from store.ingest.report import IngestReport, RepeatedIds
from store.ingest.rows import EVENT_FIELDS, EventRow, event_row_adapter
from store.ingest.skeleton import Ingestion, run_chunks
from store.ingest.split import CsvPlan, Splitter, csv_plan, split_event, split_event_cells
from store.ingest.staging import merge_ignoring_stored
from store.ingest.validation import Hints, event_hints, validate
from store.ingest.visitors import Visitors
from store.tables import PROMOTED_NUMBER_PROPERTIES, PROMOTED_TEXT_PROPERTIES, Event, Lead, from_micros, to_micros
from store.tombstones import ERASED_REASON, Erased

_LEAD_TABLE = Lead.__table__
_EVENT_TABLE = Event.__table__
_LEAD_CACHE_MAX = 1_000_000  # lead_id → key entries kept between chunks of an events file


def _promoted_text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _promoted_number(value: Any) -> float | None:
    try:
        return None if value is None or value == "" or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def promoted_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """The well-known properties as typed column values (scoring reads them without parsing JSON)."""
    values: dict[str, Any] = {key: _promoted_text(properties.get(key)) for key in PROMOTED_TEXT_PROPERTIES}
    values.update((key, _promoted_number(properties.get(key))) for key in PROMOTED_NUMBER_PROPERTIES)
    return values


def _promoted_columns(properties: list[dict[str, Any]]) -> list[list[Any]]:
    """``promoted_properties`` column by column: one pass per property instead of a dict per row."""
    columns = []
    for key in PROMOTED_TEXT_PROPERTIES:
        values = [p.get(key) for p in properties]
        columns.append([v if v.__class__ is str and v else _promoted_text(v) for v in values])
    for key in PROMOTED_NUMBER_PROPERTIES:
        columns.append([None if (v := p.get(key)) is None else _promoted_number(v) for p in properties])
    return columns


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


class _LeadKeys:
    """lead_id → lead key, looked up per chunk for the ids not seen yet (bounded between chunks)."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}

    def resolve(self, conn: Connection, lead_ids: Iterable[str]) -> dict[str, int]:
        if len(self.keys) > _LEAD_CACHE_MAX:
            self.keys.clear()
        missing = sorted(set(lead_ids) - self.keys.keys())
        if missing:
            self.keys.update(lookup(conn, _LEAD_TABLE.c.lead_id, missing, [_LEAD_TABLE.c.lead_id, _LEAD_TABLE.c.key]))
        return self.keys


def _refuse_unknown(run: Ingestion, row: Raw, lead_id: str, erased: Erased | None) -> None:
    """An event of no stored lead: an erased person's is refused without keeping its content."""
    if erased is not None and erased.match(lead_id) is not None:
        run.rejects.add(row, "lead_id", ERASED_REASON, redact=True)
    else:
        run.rejects.add(row, "lead_id", f"unknown lead_id {lead_id!r} (ingest leads first)")


@dataclass
class _RowByRowSteps:
    """The reference path: one row model and one event dict per row, ``INSERT … ON CONFLICT`` per chunk.
    Kept as what the columnar path is tested against."""

    adapter: TypeAdapter[list[EventRow]]
    hints: Hints
    detector: MachineDetector
    splitter: Splitter = field(default_factory=lambda: Splitter(EVENT_FIELDS))
    plan_names: list[str] | None = None
    plan: CsvPlan = field(default_factory=list)
    lead_keys: _LeadKeys = field(default_factory=_LeadKeys)
    erased: Erased | None = None

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
        lead_keys = self.lead_keys.resolve(conn, (m.lead_id for _, m in good if m.lead_id is not None))
        events: list[dict[str, Any]] = []
        explicit: list[bool] = []
        visitors = Visitors()
        for row, model in good:
            message_id = model.message_id
            if message_id is None:
                promoted = model.properties.get("message_id")
                if promoted is not None and promoted != "":
                    message_id = str(promoted)
            values = _values(
                model.occurred_at, model.event_id, model.type, model.product_line, model.machine, message_id,
                model.properties, now,
            )  # fmt: skip
            if model.lead_id is None:
                visitors.event(model.anonymous_id, values)  # type: ignore[arg-type]
                continue
            key = lead_keys.get(model.lead_id)
            if key is None:
                _refuse_unknown(run, row, model.lead_id, self.erased)
                continue
            events.append({"lead_key": key, **values})
            explicit.append(model.machine is not None)
            if model.anonymous_id is not None:
                visitors.link(model.anonymous_id, key, model.occurred_at)
            if model.product_line is not None:
                run.interests.add(key, model.product_line, model.occurred_at)
        run.report.accepted += len(events) + len(visitors.events)
        if run.ids is not None:
            run.ids.add([event["event_id"] for event in events + visitors.events])
        times = [to_micros(event["occurred_at"]) for event in events]
        late = self.detector.run(events, times, explicit, lambda ids: _stored_deliveries(conn, ids))
        # Clustered-key (lead) order turns random B-tree inserts into local ones: SQLite inserts ≈ 2×
        # faster; sorting on the lead alone is cheap (ints) and gives almost all of the locality.
        events.sort(key=itemgetter("lead_key"))
        run.report.inserted += insert_ignore(conn, _EVENT_TABLE, events)  # type: ignore[arg-type]
        run.report.inserted += visitors.write(conn)
        if late:
            run.report.updated += _flag_machine(conn, late)


# The events columns in the order the columnar path stages them.
_STAGED = (
    "lead_key",
    "occurred_at",
    "event_id",
    "type",
    "product_line",
    "machine",
    "message_id",
    *PROMOTED_TEXT_PROPERTIES,
    *PROMOTED_NUMBER_PROPERTIES,
    "properties",
    "ingested_at",
)


@dataclass
class _ColumnarSteps:
    """The fast path: columnar validation, column-wise event values, a staged append and one merge."""

    columns: EventColumns
    detector: MachineDetector
    lead_keys: _LeadKeys = field(default_factory=_LeadKeys)
    erased: Erased | None = None

    def prepare(self, rows: list[Raw], run: Ingestion) -> AcceptedEvents:
        return self.columns.accept(rows, run.rejects.add)

    def write(self, conn: Connection, accepted: AcceptedEvents, now: datetime, run: Ingestion) -> None:
        named = [lead_id for lead_id in accepted.lead_id if lead_id is not None]
        lead_keys = self.lead_keys.resolve(conn, named)
        keys = [None if lead_id is None else lead_keys.get(lead_id) for lead_id in accepted.lead_id]
        known = [i for i, key in enumerate(keys) if key is not None]
        visitors = self._visitors(accepted, keys, now)
        if len(known) + len(visitors.events) < len(keys):
            for i, key in enumerate(keys):
                if key is None and accepted.lead_id[i] is not None:
                    _refuse_unknown(run, accepted.rows[i], accepted.lead_id[i], self.erased)
        run.report.accepted += len(known) + len(visitors.events)
        if run.ids is not None:
            run.ids.add([accepted.event_id[i] for i in known] + [row["event_id"] for row in visitors.events])
        machine = [bool(accepted.machine[i]) for i in known]
        email = [n for n, i in enumerate(known) if accepted.type[i] in EMAIL_TYPES]
        if email:
            rows = [
                {
                    "event_id": accepted.event_id[known[n]],
                    "type": accepted.type[known[n]],
                    "message_id": accepted.message_id[known[n]],
                    "properties": accepted.properties[known[n]],
                    "machine": machine[n],
                }
                for n in email
            ]
            times = [accepted.at[known[n]] for n in email]
            explicit = [accepted.machine[known[n]] is not None for n in email]
            late = self.detector.run(rows, times, explicit, lambda ids: _stored_deliveries(conn, ids))
            for n, row in zip(email, rows, strict=True):
                machine[n] = row["machine"]
        else:
            late = []
        first: dict[tuple[int, str], int] = {}
        for i in known:
            line = accepted.product_line[i]
            if line is not None:
                pair, at = (keys[i], line), accepted.at[i]
                if pair not in first or at < first[pair]:
                    first[pair] = at
        for (key, line), at in first.items():
            run.interests.add(key, line, from_micros(at))
        properties = [accepted.properties[i] for i in known]
        ingested = to_micros(now)
        values = zip(
            [keys[i] for i in known],
            [accepted.at[i] for i in known],
            [accepted.event_id[i] for i in known],
            [accepted.type[i] for i in known],
            [accepted.product_line[i] for i in known],
            machine,
            [accepted.message_id[i] for i in known],
            *_promoted_columns(properties),
            [json_text(p) for p in properties],
            [ingested] * len(known),
            strict=True,
        )
        # Lead order (stable, like the reference) makes the merge's B-tree inserts local.
        staged = sorted(values, key=itemgetter(0))
        run.report.inserted += merge_ignoring_stored(conn, _EVENT_TABLE, _STAGED, staged)  # type: ignore[arg-type]
        run.report.inserted += visitors.write(conn)
        if late:
            run.report.updated += _flag_machine(conn, late)

    @staticmethod
    def _visitors(accepted: AcceptedEvents, keys: list[int | None], now: datetime) -> Visitors:
        """The chunk's anonymous events (rows without a lead) and links (rows with both ids): few, and all
        validated by the row model (the columnar checks send any ``anonymous_id`` there)."""
        visitors = Visitors()
        for i, anonymous_id in enumerate(accepted.anonymous_id):
            if anonymous_id is None:
                continue
            at = from_micros(accepted.at[i])
            if accepted.lead_id[i] is None:
                visitors.event(
                    anonymous_id,
                    _values(
                        at, accepted.event_id[i], accepted.type[i], accepted.product_line[i], accepted.machine[i],
                        accepted.message_id[i], accepted.properties[i], now,
                    ),
                )  # fmt: skip
            elif keys[i] is not None:
                visitors.link(anonymous_id, keys[i], at)  # type: ignore[arg-type]
        return visitors


def _values(
    at: datetime,
    event_id: str,
    kind: str,
    product_line: str | None,
    machine: bool | None,
    message_id: str | None,
    properties: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """An event's stored columns but its owner (``lead_key`` or ``anonymous_id``)."""
    return {
        "occurred_at": at,
        "event_id": event_id,
        "type": kind,
        "product_line": product_line,
        "machine": bool(machine),
        "message_id": message_id,
        "properties": properties,
        "ingested_at": now,
        **promoted_properties(properties),
    }


def ingest_events(
    engine: Engine,
    path: Path | Records,
    *,
    event_types: set[str] | frozenset[str],
    product_lines: set[str] | None = None,
    machine_window_seconds: float = 2.0,
    proxy_user_agents: tuple[str, ...] = DEFAULT_PROXY_AGENTS,
    chunk_size: int = 50_000,
    progress: Progress | None = None,
    row_by_row: bool = False,
    erased: Erased | None = None,
) -> IngestReport:
    """Insert events (ignore an ``event_id`` already stored: events are immutable).

    The lead must already exist (``lead_id`` → ``lead_key`` is looked up per chunk). ``message_id`` is
    promoted from the properties when the row has no column for it; CSV columns that are not event
    fields become properties. An explicit ``machine`` value on the row wins over detection.
    ``row_by_row`` takes the reference path the columnar one is tested against (same results, slower).
    An event of an ``erased`` person is refused without keeping its content.
    """
    types = frozenset(event_types)
    lines = None if product_lines is None else frozenset(product_lines)
    detector = MachineDetector(MachineRule(machine_window_seconds, proxy_user_agents))
    adapter, hints = event_row_adapter(types, lines), event_hints(types, product_lines)
    steps: _RowByRowSteps | _ColumnarSteps
    if row_by_row:
        steps = _RowByRowSteps(adapter, hints, detector, erased=erased)
    else:
        columns = EventColumns(adapter, hints, types, lines, Splitter(EVENT_FIELDS))
        steps = _ColumnarSteps(columns, detector, erased=erased)
    repeated = RepeatedIds("event_id", "events are immutable: the first one is kept")
    return run_chunks(
        engine,
        path,
        "events",
        _EVENT_TABLE,
        steps,  # type: ignore[arg-type]
        chunk_size=chunk_size,
        progress=progress,
        stamped=("event_id", "ingested_at"),
        ids=repeated,
        also_written_to=(ANONYMOUS_EVENTS,),
    )
